// Function.deleteConversationKeys, the second function of Mutation.deleteConversation:
// AppSync --BatchDeleteItem (or DeleteItem)--> ConversationsTable.
//
// Deletes the keys the previous function found and the conversation item
// (pk = caller's sub, sk = CONV#<conversationId>) in one BatchDeleteItem, in
// the table named by the API variable CONVERSATIONS_TABLE. When the partition
// is already empty it deletes only the conversation item, with a DeleteItem,
// whose result (the deleted item, or null) tells whether there was one
// (ctx.stash.deletedNothing when not; Function.forgetConversation decides
// whether that is NotFound). Keys DynamoDB left unprocessed keep `remaining`
// true, so the client's next call deletes them.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-batch-delete-item.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-deleteitem.html
import { util } from '@aws-appsync/utils';

/**
 * BatchDeleteItem of the found keys and the conversation item, or a
 * DeleteItem of the conversation item alone.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the BatchDeleteItem or DeleteItem request
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    util.unauthorized();
  }
  const conversationKey = util.dynamodb.toMapValues({
    pk: owner,
    sk: `CONV#${ctx.args.conversationId}`,
  });
  const keys = ctx.prev.result.keys;
  if (keys.length === 0) {
    ctx.stash.conversationOnly = true;
    return { operation: 'DeleteItem', key: conversationKey };
  }
  const table = ctx.env.CONVERSATIONS_TABLE;
  if (!table) {
    util.error('The API variable CONVERSATIONS_TABLE is not set.', 'InternalFailure');
  }
  const tables = {};
  tables[table] = keys
    .map((key) => util.dynamodb.toMapValues({ pk: key.pk, sk: key.sk }))
    .concat([conversationKey]);
  return { operation: 'BatchDeleteItem', tables };
}

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the DeleteConversationResult
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const conversationId = ctx.args.conversationId;
  if (ctx.stash.conversationOnly) {
    ctx.stash.deletedNothing = util.isNull(ctx.result);
    return { conversationId, remaining: false };
  }
  const unprocessedKeys = ctx.result.unprocessedKeys ?? {};
  const unprocessed = unprocessedKeys[ctx.env.CONVERSATIONS_TABLE] ?? [];
  const remaining = ctx.stash.remaining === true || unprocessed.length > 0;
  ctx.stash.remaining = remaining;
  return { conversationId, remaining };
}
