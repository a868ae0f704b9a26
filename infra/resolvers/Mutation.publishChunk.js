// Mutation.publishChunk: resolver Lambda --publishChunk (SigV4)--> AppSync --onChunk--> subscribers.
//
// A local (NONE data source) resolver: the chunk the Lambda sends is the
// mutation's result, and AppSync hands that result to every onChunk
// subscription whose filter it passes. The schema allows only IAM callers.
// https://docs.aws.amazon.com/appsync/latest/devguide/tutorial-local-resolvers-js.html

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the NONE data source request: its payload becomes the result
 */
export function request(ctx) {
  return { payload: ctx.args.input };
}

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the chunk
 */
export function response(ctx) {
  return ctx.result;
}
