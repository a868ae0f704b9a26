// Place in the data path: the local DynamoDB's process. Starts dynalite's
// server on 127.0.0.1 and prints the port it listens on, so the devstack can
// ask the OS for a free port (port 0) without a window in which another
// process takes it. dynalite's own command line turns port 0 into its
// default, 4567.
//
// Arguments: <dynalite index.js> <port, 0 for any> [LevelDB directory; none
// keeps the tables in memory].
// Tables are ACTIVE at once, not after DynamoDB's half second.
const [entry, port, path] = process.argv.slice(1);
const server = require(entry)({
  path,
  createTableMs: 0,
  deleteTableMs: 0,
  updateTableMs: 0,
});
server.on('error', (error) => {
  console.error(`dynalite: ${error.message}`);
  process.exit(1);
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(String(server.address().port));
});
