// Query.myQuota: client --myQuota--> AppSync pipeline: Function.readQuota
// (GetItem) --> ConversationsTable, the caller's quota item.
//
// The caller's own use and limits, as sendPrompt enforces them: turns in flight
// (slots not yet expired), today's tokens, the conversations kept, the limits
// of the caller's Cognito groups, and when each frees up. The key is built from ctx.identity.sub, so a
// caller sees only their own quota.
//
// APPSYNC_JS runtime: https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// Pipeline resolvers: https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html
import { util } from '@aws-appsync/utils';

/**
 * Checks the caller before readQuota runs.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} an empty object
 */
export function request(ctx) {
  if (!ctx.identity?.sub) {
    util.unauthorized();
  }
  return {};
}

/**
 * The Quota, from readQuota's summary.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Quota
 */
export function response(ctx) {
  const quota = ctx.stash.quota;
  return {
    turnsInFlight: quota.live.length,
    maxTurnsInFlight: quota.maxTurnsInFlight,
    nextSlotFreeAt: quota.slotFreeAt,
    tokensUsedToday: quota.tokensUsedToday,
    dailyTokens: quota.dailyTokens,
    tokensResetAt: quota.tokensResetAt,
    conversations: quota.conversations.length,
    maxConversations: quota.maxConversations,
  };
}
