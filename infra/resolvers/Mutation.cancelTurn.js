// Mutation.cancelTurn: client --cancelTurn--> AppSync --onCancel(turnId, owner)--> resolver Lambda.
//
// A local (NONE data source) resolver. The result names the caller as owner,
// so it only matches the resolver Lambda's onCancel subscription for a turn
// the caller owns: nobody can stop another user's turn.
// https://docs.aws.amazon.com/appsync/latest/devguide/tutorial-local-resolvers-js.html
import { util } from '@aws-appsync/utils';

const MAX_ID_CHARS = 128;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:';

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the NONE data source request: its payload becomes the result
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    // "Not Authorized to access cancelTurn on type Mutation", errorType Unauthorized.
    util.unauthorized();
  }
  const conversationId = ctx.args.conversationId ?? '';
  const turnId = ctx.args.turnId ?? '';
  checkId('conversationId', conversationId);
  checkId('turnId', turnId);
  return { payload: { conversationId, turnId, owner } };
}

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Cancellation
 */
export function response(ctx) {
  return ctx.result;
}

/**
 * 1 to 128 of A-Z a-z 0-9 - _ . :, else a ValidationException.
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
