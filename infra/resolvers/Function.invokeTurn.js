// Function.invokeTurn, the last function of Mutation.sendPrompt:
// AppSync --Invoke(Event)--> resolver Lambda.
//
// Runs once the turn holds one of the caller's in-flight slots
// (Function.takeTurnSlot.js); invokes the resolver Lambda asynchronously with
// the checked prompt, its turn id and the caller's identity. The answer itself
// arrives on onChunk; the Lambda frees the slot when the turn ends.
//
// APPSYNC_JS runtime: https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// Asynchronous Lambda invocation from a JS resolver:
// https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-lambda-js.html
import { util } from '@aws-appsync/utils';

/**
 * The Invoke request, with invocationType 'Event'.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {import('@aws-appsync/utils').LambdaRequest} the Invoke request
 */
export function request(ctx) {
  if (!ctx.stash.slotTaken) {
    // Two attempts lost to other prompts of the same user sent at that moment.
    util.error(
      'Too many prompts at once; send again in a moment.',
      'TooManyTurns',
      null,
      { limit: ctx.stash.quota?.maxTurnsInFlight ?? null, resetAt: null },
    );
  }
  const input = ctx.stash.input;
  return {
    operation: 'Invoke',
    invocationType: 'Event',
    payload: {
      arguments: { input },
      identity: ctx.identity,
      source: null,
      // Headers stay out: they carry the caller's token.
      request: { headers: {}, domainName: ctx.request?.domainName ?? null },
      prev: null,
      stash: {},
      // Without `variables`: they would repeat the whole prompt.
      info: {
        fieldName: ctx.info.fieldName,
        parentTypeName: ctx.info.parentTypeName,
        variables: {},
        selectionSetList: ctx.info.selectionSetList,
        selectionSetGraphQL: ctx.info.selectionSetGraphQL,
      },
    },
  };
}

/**
 * An asynchronous Invoke has no result.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} null
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  return null;
}
