// Function.forgetConversation, the third function of Mutation.deleteConversation:
// AppSync --UpdateItem--> ConversationsTable, the caller's quota item (its
// shape: Function.readQuota.js).
//
// Once nothing of the conversation is left, takes it out of the caller's set
// of conversations, so that it no longer counts against QUOTA_MAX_CONVERSATIONS.
// The update is conditional on the set holding it: a conversation in the set
// with no stored items (its only turn failed before anything was written)
// is still found, and deleted, here; one neither stored nor in the set is
// NotFound. While items remain, the next call forgets it.
//
// APPSYNC_JS runtime: https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-updateitem.html
// DELETE from a set in an update expression:
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html
import { util, runtime } from '@aws-appsync/utils';

/**
 * Removes the conversation from the caller's set, or passes the previous
 * result on while items remain.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the UpdateItem request
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    util.unauthorized();
  }
  if (ctx.stash.remaining === true) {
    runtime.earlyReturn(ctx.prev.result);
  }
  return {
    operation: 'UpdateItem',
    key: util.dynamodb.toMapValues({ pk: owner, sk: 'QUOTA' }),
    update: {
      expression: 'DELETE #convs :conv',
      expressionNames: { '#convs': 'conversations' },
      expressionValues: { ':conv': util.dynamodb.toStringSet([ctx.args.conversationId]) },
    },
    condition: {
      expression: 'contains(#convs, :convId)',
      expressionNames: { '#convs': 'conversations' },
      expressionValues: util.dynamodb.toMapValues({ ':convId': ctx.args.conversationId }),
    },
  };
}

/**
 * The DeleteConversationResult; NotFound when there was nothing to delete
 * anywhere.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the DeleteConversationResult
 */
export function response(ctx) {
  const counted = !ctx.error;
  if (ctx.error && ctx.error.type !== 'DynamoDB:ConditionalCheckFailedException') {
    util.error(ctx.error.message, ctx.error.type);
  }
  if (ctx.stash.deletedNothing === true && !counted) {
    util.error('Conversation not found', 'NotFound');
  }
  return { conversationId: ctx.args.conversationId, remaining: false };
}
