// Mutation.deleteConversation: client --deleteConversation--> AppSync pipeline:
//   Function.findConversationKeys (Query) -> Function.deleteConversationKeys
//   (BatchDeleteItem, or DeleteItem) -> Function.forgetConversation (UpdateItem
//   of the caller's quota item) --> ConversationsTable.
//
// The before handler (request) checks the caller and the id; the functions
// build every key from ctx.identity.sub, so a caller deletes only their own
// items. One call deletes up to 24 items of the conversation's partition
// (messages, stored chunks, turn claims) and the conversation item itself;
// `remaining` tells the client to call again. The call that leaves nothing
// also takes the conversation out of the caller's count of conversations. A
// conversation with nothing left at all, stored or counted, is NotFound. The after handler (response) returns the last
// function's result.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// Pipeline resolvers (before handler -> functions -> after handler):
// https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html
import { util } from '@aws-appsync/utils';

const MAX_ID_CHARS = 128;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:';

/**
 * Checks the caller and the conversation id before any function runs.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} an empty object, the first function's ctx.prev.result
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    // "Not Authorized to access deleteConversation on type Mutation", errorType Unauthorized.
    util.unauthorized();
  }
  checkId('conversationId', ctx.args.conversationId ?? '');
  return {};
}

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the DeleteConversationResult of the last function
 */
export function response(ctx) {
  return ctx.prev.result;
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
