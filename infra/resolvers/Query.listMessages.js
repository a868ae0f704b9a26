// Query.listMessages: client --listMessages--> AppSync --Query--> ConversationsTable.
//
// The messages of one of the caller's conversations, oldest first: a Query of
// the partition <caller's sub>#<conversationId> for sort keys beginning with
// MSG# (MSG#<startedAt>#<turnId>#1 is a turn's prompt, ...#2 its answer), so
// turn claims and stored chunks in the same partition stay out. The partition
// key begins with ctx.identity.sub, never with an argument, and the id may not
// hold '#': another user's conversation id names an empty partition of the
// caller's own.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-query.html
import { util } from '@aws-appsync/utils';

const MAX_ID_CHARS = 128;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:';
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;

/**
 * Queries the conversation's messages in sort-key (time) order.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Query request
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    // "Not Authorized to access listMessages on type Query", errorType Unauthorized.
    util.unauthorized();
  }
  const conversationId = ctx.args.conversationId ?? '';
  checkId('conversationId', conversationId);
  const query = {
    operation: 'Query',
    query: {
      expression: '#pk = :pk AND begins_with(#sk, :prefix)',
      expressionNames: { '#pk': 'pk', '#sk': 'sk' },
      expressionValues: util.dynamodb.toMapValues({
        ':pk': `${owner}#${conversationId}`,
        ':prefix': 'MSG#',
      }),
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
 * The page as a MessageConnection.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the MessageConnection
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const conversationId = ctx.args.conversationId;
  const items = ctx.result.items.map((item) => ({
    conversationId,
    turnId: item.turnId,
    role: item.role,
    text: item.text,
    createdAt: item.createdAt,
    modelId: item.modelId ?? null,
    stopReason: item.stopReason ?? null,
    usage: item.usage ?? null,
    error: item.error ?? null,
  }));
  return { items, nextToken: ctx.result.nextToken ?? null };
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
