// Subscription.onChunk: AppSync --onChunk--> the owner's subscriptions only.
//
// Runs when a client subscribes. The enhanced filter keeps every chunk whose
// `owner` is not the subscriber's own `sub` away from it, whatever
// conversationId it asks for.
// https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-enhanced-filtering.html
import { util, extensions } from '@aws-appsync/utils';

/**
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the NONE data source request
 */
export function request(ctx) {
  if (!ctx.identity?.sub) {
    // "Not Authorized to access onChunk on type Subscription", errorType Unauthorized.
    util.unauthorized();
  }
  return { payload: null };
}

/**
 * Sets the owner filter. The conversationId argument is repeated in the
 * filter so that it holds whether or not AppSync also applies the
 * subscription's arguments once a resolver sets a filter.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {null} subscriptions resolve to null
 */
export function response(ctx) {
  extensions.setSubscriptionFilter(
    util.transform.toSubscriptionFilter({
      owner: { eq: ctx.identity.sub },
      conversationId: { eq: ctx.args.conversationId },
    }),
  );
  return null;
}
