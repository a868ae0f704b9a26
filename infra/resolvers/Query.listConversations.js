// Query.listConversations: client --listConversations--> AppSync --Query (index byUpdatedAt)--> ConversationsTable.
//
// The caller's conversations, most recently updated first: one Query of the
// caller's own partition (pk = their Cognito sub, sk = CONV#<id>) on the local
// secondary index byUpdatedAt, newest first. The key is built from
// ctx.identity only, never from an argument, so nobody reaches another user's
// conversations. The devstack runs this file as is against its local DynamoDB.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// The Query request object and its result ({items, nextToken, scannedCount}):
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-query.html
import { util } from '@aws-appsync/utils';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;

/**
 * Queries the caller's conversations on byUpdatedAt, newest first.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Query request
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    // "Not Authorized to access listConversations on type Query", errorType Unauthorized.
    util.unauthorized();
  }
  const query = {
    operation: 'Query',
    index: 'byUpdatedAt',
    query: {
      expression: '#pk = :pk',
      expressionNames: { '#pk': 'pk' },
      expressionValues: util.dynamodb.toMapValues({ ':pk': owner }),
    },
    scanIndexForward: false,
    limit: pageLimit(ctx.args.limit),
  };
  if (ctx.args.nextToken) {
    query.nextToken = ctx.args.nextToken;
  }
  return query;
}

/**
 * The page as a ConversationConnection.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the ConversationConnection
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const items = ctx.result.items.map((item) => ({
    conversationId: item.conversationId,
    title: item.title,
    createdAt: item.createdAt,
    updatedAt: item.updatedAt,
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
