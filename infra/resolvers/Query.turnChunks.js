// Query.turnChunks: client --turnChunks--> AppSync --Query--> ConversationsTable.
//
// Recovery: the stored chunks of one of the caller's turns with seq greater
// than afterSeq, in order, for a client that missed live chunks on onChunk
// (e.g. ones published right after its start_ack). The resolver Lambda keeps
// each chunk for 24 hours under CHUNK#<turnId>#<seq, 10 digits> in the
// partition <caller's sub>#<conversationId>; a BETWEEN on the sort key takes
// the seqs after afterSeq, and a filter drops chunks past their expiresAt,
// which DynamoDB's TTL deletes only eventually:
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html
// The partition key begins with ctx.identity.sub, never with an argument, so
// a caller only ever recovers their own turns.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-query.html
import { util } from '@aws-appsync/utils';

const MAX_ID_CHARS = 128;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:';
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;
// Chunk sort keys carry seq zero-padded to this many digits.
const SEQ_DIGITS = '0000000000';
const LAST_SEQ = '9999999999';

/**
 * Queries the turn's chunks from afterSeq + 1 on.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Query request
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    // "Not Authorized to access turnChunks on type Query", errorType Unauthorized.
    util.unauthorized();
  }
  const conversationId = ctx.args.conversationId ?? '';
  const turnId = ctx.args.turnId ?? '';
  checkId('conversationId', conversationId);
  checkId('turnId', turnId);
  const afterSeq = ctx.args.afterSeq ?? -1;
  if (!(typeof afterSeq === 'number' && afterSeq % 1 === 0 && afterSeq >= -1)) {
    util.error('afterSeq must be -1 or more.', 'ValidationException');
  }
  const prefix = `CHUNK#${turnId}#`;
  const query = {
    operation: 'Query',
    query: {
      expression: '#pk = :pk AND #sk BETWEEN :from AND :to',
      expressionNames: { '#pk': 'pk', '#sk': 'sk' },
      expressionValues: util.dynamodb.toMapValues({
        ':pk': `${owner}#${conversationId}`,
        ':from': prefix + padSeq(afterSeq + 1),
        ':to': prefix + LAST_SEQ,
      }),
    },
    filter: {
      expression: '#expiresAt > :now',
      expressionNames: { '#expiresAt': 'expiresAt' },
      expressionValues: util.dynamodb.toMapValues({ ':now': util.time.nowEpochSeconds() }),
    },
    scanIndexForward: true,
    limit: pageLimit(ctx.args.limit),
  };
  if (ctx.args.nextToken) {
    query.nextToken = ctx.args.nextToken;
  }
  return query;
}

/**
 * The page as a ChunkConnection; every chunk names the caller as its owner.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the ChunkConnection
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const conversationId = ctx.args.conversationId;
  const owner = ctx.identity.sub;
  const items = ctx.result.items.map((item) => ({
    conversationId,
    turnId: item.turnId ?? ctx.args.turnId,
    owner,
    seq: item.seq,
    text: item.text,
    done: item.done,
    stopReason: item.stopReason ?? null,
    usage: item.usage ?? null,
    error: item.error ?? null,
  }));
  return { items, nextToken: ctx.result.nextToken ?? null };
}

/**
 * `seq` as the 10 digits of a chunk's sort key (GraphQL Int has at most 10).
 * @param {number} seq a non-negative integer
 * @returns {string} the zero-padded digits
 */
function padSeq(seq) {
  const digits = `${seq}`;
  return SEQ_DIGITS.slice(digits.length) + digits;
}

/**
 * `limit`, 1 to 100, or 50 when absent; else a ValidationException.
 * @param {*} limit the argument
 * @returns {number} the page size
 */
function pageLimit(limit) {
  if (limit === undefined || limit === null) {
    return DEFAULT_LIMIT;
  }
  if (!(typeof limit === 'number' && limit % 1 === 0 && limit >= 1 && limit <= MAX_LIMIT)) {
    util.error(`limit must be between 1 and ${MAX_LIMIT}.`, 'ValidationException');
  }
  return limit;
}

/**
 * 1 to 128 of A-Z a-z 0-9 - _ . : (so never '#', the key separator), else a
 * ValidationException.
 * @param {string} name the argument's name, for the message
 * @param {*} id the value
 */
function checkId(name, id) {
  let ok = typeof id === 'string' && id.length >= 1 && id.length <= MAX_ID_CHARS;
  if (ok) {
    for (const c of id) {
      if (!ID_ALPHABET.includes(c)) {
        ok = false;
        break;
      }
    }
  }
  if (!ok) {
    util.error(
      `${name} must be 1 to ${MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.`,
      'ValidationException',
    );
  }
}
