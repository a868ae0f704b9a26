// Query.ping: always `ok`, so a client can check its token. AppSync requires
// a Query type; this is its one field.
// https://docs.aws.amazon.com/appsync/latest/devguide/tutorial-local-resolvers-js.html

/**
 * @returns {*} the NONE data source request: its payload becomes the result
 */
export function request() {
  return { payload: 'ok' };
}

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {string} `ok`
 */
export function response(ctx) {
  return ctx.result;
}
