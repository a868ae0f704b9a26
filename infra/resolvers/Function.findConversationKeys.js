// Function.findConversationKeys, the first function of Mutation.deleteConversation:
// AppSync --Query (keys only)--> ConversationsTable.
//
// Reads the keys of up to 25 items of the partition <caller's sub>#<conversationId>
// (messages, stored chunks, turn claims): the next function deletes the first
// 24 (BatchDeleteItem takes 25 keys, and the conversation item is the 25th),
// and a 25th found means items remain after this call. Asking for one more
// than is deleted makes `remaining` exact: a Query that stops at its limit
// returns a nextToken even when nothing follows. The before handler has
// checked the caller and the id; the key is built from ctx.identity.sub.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-query.html
import { util } from '@aws-appsync/utils';

// Keys one call deletes besides the conversation item (BatchDeleteItem's limit is 25):
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-batch-delete-item.html
const KEYS_PER_CALL = 24;

/**
 * Queries the partition's keys, strongly consistent, so that keys deleted by
 * a previous call are not seen again.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Query request
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    util.unauthorized();
  }
  return {
    operation: 'Query',
    query: {
      expression: '#pk = :pk',
      expressionNames: { '#pk': 'pk' },
      expressionValues: util.dynamodb.toMapValues({ ':pk': `${owner}#${ctx.args.conversationId}` }),
    },
    projection: {
      expression: '#pk, #sk',
      expressionNames: { '#pk': 'pk', '#sk': 'sk' },
    },
    consistentRead: true,
    limit: KEYS_PER_CALL + 1,
  };
}

/**
 * The keys to delete now, and whether more remain (also kept in the stash).
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} `{keys: [{pk, sk}], remaining}`
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const items = ctx.result.items;
  const remaining = items.length > KEYS_PER_CALL;
  ctx.stash.remaining = remaining;
  return {
    keys: items.slice(0, KEYS_PER_CALL).map((item) => ({ pk: item.pk, sk: item.sk })),
    remaining,
  };
}
