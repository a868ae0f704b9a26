// Function.readQuota, the first function of Mutation.sendPrompt and Query.myQuota
// (and the third of sendPrompt, as ReadQuotaAgain): AppSync --GetItem-->
// ConversationsTable, the caller's quota item.
//
// The quota item is {pk: <sub>, sk: 'QUOTA'}:
//   slots      map of <conversationId>#<turnId> (a turn: the same turn id in
//              two conversations is two turns) -> epoch seconds until which that
//              turn holds one of the caller's in-flight slots (the resolver
//              Lambda removes it when the turn ends; a turn whose environment
//              died frees it by expiry)
//   quotaDay   the UTC day (YYYY-MM-DD) that tokensUsed counts
//   tokensUsed input plus output tokens of that day's turns, as Bedrock's
//              ConverseStream metadata reported them (the Lambda adds them)
//   conversations  string set of the caller's conversation ids: added by
//              takeTurnSlot with a conversation's first turn, removed by
//              deleteConversation once nothing of it is left
// The item does not expire: it counts conversations that are kept until their
// user deletes them. Its sort key is not CONV#..., and it has no updatedAt, so
// the conversation lists never see it.
//
// The response puts in ctx.stash.quota what the next steps need: the limits that
// apply to the caller, the turns in flight, the expired slots, today's tokens,
// and when each limit frees up. Limits come from ctx.env:
//   QUOTA_MAX_TURNS_IN_FLIGHT, QUOTA_DAILY_TOKENS  the default limits
//   QUOTA_MAX_CONVERSATIONS  conversations a user may keep (default 1000)
//   QUOTA_GROUPS  "group:turns:tokens,..." limits by Cognito group; a user in
//                 listed groups gets the most generous of theirs, others the default
//   TURN_SLOT_SECONDS  how long a slot lasts when its turn never ends
//
// APPSYNC_JS runtime: no try/catch/throw/continue/while, no classic for loops,
// no `in`, `++` or regex literals:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-getitem.html
import { util, runtime } from '@aws-appsync/utils';

const SECONDS_PER_DAY = 86400;

/**
 * Reads the caller's quota item, strongly consistent. Skipped (the result
 * passed on) once an earlier step has taken the turn's slot.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the GetItem request
 */
export function request(ctx) {
  if (ctx.stash.slotTaken) {
    runtime.earlyReturn(ctx.prev.result);
  }
  const owner = ctx.identity?.sub;
  if (!owner) {
    util.unauthorized();
  }
  return {
    operation: 'GetItem',
    key: util.dynamodb.toMapValues({ pk: owner, sk: 'QUOTA' }),
    consistentRead: true,
  };
}

/**
 * Summarises the item (absent for a user who never sent a prompt) into ctx.stash.quota.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the item, or null
 */
export function response(ctx) {
  if (ctx.error) {
    util.error('Your usage could not be checked just now; please try again.', 'ServiceUnavailable');
  }
  const limits = limitsFor(ctx.identity?.groups ?? [], ctx.env ?? {});
  ctx.stash.quota = summarise(ctx.result ?? null, limits, util.time.nowEpochSeconds());
  const conversationId = ctx.stash.conversationId;
  ctx.stash.quota.hasConversation =
    typeof conversationId === 'string' && ctx.stash.quota.conversations.includes(conversationId);
  return ctx.result ?? null;
}

/**
 * The limits of a user in `groups`.
 * @param {string[]} groups the caller's Cognito groups
 * @param {*} env ctx.env
 * @returns {{maxTurnsInFlight: number, dailyTokens: number, maxConversations: number, slotSeconds: number}} the limits
 */
function limitsFor(groups, env) {
  let chosen = null;
  for (const entry of (env.QUOTA_GROUPS ?? '').split(',')) {
    const limit = groupLimit(entry.trim());
    if (limit !== null && groups.includes(limit.group)) {
      chosen = chosen === null ? limit : more(chosen, limit);
    }
  }
  return {
    maxTurnsInFlight: chosen?.maxTurnsInFlight ?? whole(env.QUOTA_MAX_TURNS_IN_FLIGHT, 3),
    dailyTokens: chosen?.dailyTokens ?? whole(env.QUOTA_DAILY_TOKENS, 200000),
    maxConversations: whole(env.QUOTA_MAX_CONVERSATIONS, 1000),
    slotSeconds: whole(env.TURN_SLOT_SECONDS, 900),
  };
}

/**
 * One "group:turns:tokens" entry (the group name may itself hold ':'), or null.
 * @param {string} entry the entry
 * @returns {*} {group, maxTurnsInFlight, dailyTokens} or null
 */
function groupLimit(entry) {
  const tokensAt = entry.lastIndexOf(':');
  const turnsAt = tokensAt > 0 ? entry.lastIndexOf(':', tokensAt - 1) : -1;
  if (turnsAt <= 0) {
    return null;
  }
  const turns = whole(entry.substring(turnsAt + 1, tokensAt), -1);
  const tokens = whole(entry.substring(tokensAt + 1), -1);
  if (turns < 0 || tokens < 0) {
    return null;
  }
  return { group: entry.substring(0, turnsAt), maxTurnsInFlight: turns, dailyTokens: tokens };
}

/**
 * The more generous of two limits, each limit on its own.
 * @param {*} a limits
 * @param {*} b limits
 * @returns {*} the larger of each
 */
function more(a, b) {
  return {
    group: a.group,
    maxTurnsInFlight: Math.max(a.maxTurnsInFlight, b.maxTurnsInFlight),
    dailyTokens: Math.max(a.dailyTokens, b.dailyTokens),
  };
}

/**
 * A whole number of decimal digits, or `fallback`.
 * @param {*} text the variable's value
 * @param {number} fallback when it is not one
 * @returns {number} the number
 */
function whole(text, fallback) {
  const s = typeof text === 'string' ? text.trim() : '';
  if (s.length === 0 || s.length > 15) {
    return fallback;
  }
  let n = 0;
  for (const c of s) {
    const digit = '0123456789'.indexOf(c);
    if (digit < 0) {
      return fallback;
    }
    n = n * 10 + digit;
  }
  return n;
}

/**
 * What the quota item says now.
 * @param {*} item the quota item, or null
 * @param {*} limits from limitsFor
 * @param {number} now epoch seconds
 * @returns {*} the summary the next steps read
 */
function summarise(item, limits, now) {
  const slots = item !== null && typeof item.slots === 'object' && item.slots !== null ? item.slots : null;
  const live = [];
  const expired = [];
  for (const key of Object.keys(slots ?? {})) {
    const until = slots[key];
    if (typeof until === 'number' && until > now) {
      live.push({ key, until });
    } else {
      expired.push(key);
    }
  }
  const dayStart = now - (now % SECONDS_PER_DAY);
  const today = util.time.epochMilliSecondsToISO8601(dayStart * 1000).substring(0, 10);
  const day = typeof item?.quotaDay === 'string' ? item.quotaDay : null;
  const used = typeof item?.tokensUsed === 'number' ? item.tokensUsed : 0;
  const conversations = Array.isArray(item?.conversations) ? item.conversations : [];
  let firstFree = null;
  for (const slot of live) {
    firstFree = firstFree === null ? slot.until : Math.min(firstFree, slot.until);
  }
  return {
    ...limits,
    now,
    today,
    day,
    hasSlots: slots !== null,
    conversations,
    live,
    expired,
    tokensUsedToday: day === today ? used : 0,
    tokensResetAt: util.time.epochMilliSecondsToISO8601((dayStart + SECONDS_PER_DAY) * 1000),
    slotFreeAt: firstFree === null ? null : util.time.epochMilliSecondsToISO8601(firstFree * 1000),
  };
}
