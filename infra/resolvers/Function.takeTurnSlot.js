// Function.takeTurnSlot, the second function of Mutation.sendPrompt (and the
// fourth, as TakeTurnSlotAgain): AppSync --UpdateItem--> ConversationsTable, the
// caller's quota item (its shape: Function.readQuota.js).
//
// Enforces the caller's limits before any Lambda runs, with one atomic
// conditional update:
// - TooManyTurns when the caller already has maxTurnsInFlight turns in flight;
// - QuotaExceeded when today's tokens have reached dailyTokens (a turn started
//   below the budget may end above it; the next one is refused);
// - TooManyConversations when the prompt would start a new conversation and
//   the caller already keeps maxConversations.
// Otherwise it takes the turn's slot (slots.<conversationId>#<turnId> =
// now + slotSeconds), adds the conversation to the caller's set, drops expired
// slots, and starts a new day's count when the day has changed.
// The condition re-checks on the item as written what readQuota saw, so two
// prompts at once can never both take the last slot. When another request
// changed the item in between, the write is refused and the pipeline reads and
// tries once more (ReadQuotaAgain, TakeTurnSlotAgain); a prompt that loses both
// races is refused as TooManyTurns by Function.invokeTurn.
//
// A prompt that repeats a turn still in flight (same conversation, same turn
// id) takes no second slot: the turn holds one already, and the Lambda
// streams it once.
//
// Condition expressions and update expressions on map elements:
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html
// https://docs.aws.amazon.com/appsync/latest/devguide/js-aws-appsync-resolver-reference-dynamodb-updateitem.html
// util.error(message, errorType, data, errorInfo):
// https://docs.aws.amazon.com/appsync/latest/devguide/built-in-util-js.html
import { util, runtime } from '@aws-appsync/utils';

/**
 * Refuses the prompt, or builds the conditional update that takes its slot.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the UpdateItem request
 */
export function request(ctx) {
  const quota = ctx.stash.quota;
  // Ids never contain '#'.
  const slot = `${ctx.stash.conversationId}#${ctx.stash.turnId}`;
  if (ctx.stash.slotTaken) {
    runtime.earlyReturn(ctx.prev.result);
  }
  if (quota.live.some((held) => held.key === slot)) {
    // A repeat of a turn in flight: its slot is already held.
    ctx.stash.slotTaken = true;
    runtime.earlyReturn(ctx.prev.result);
  }
  refuseOverLimit(quota);

  // The item no longer expires (earlier versions set a TTL on it): it counts
  // the caller's conversations, which are kept.
  const update = { set: [], remove: ['#expires'], names: { '#expires': 'expiresAt' }, values: {} };
  const condition = { terms: [], names: {}, values: {} };
  takeConversation(ctx.stash.conversationId, quota, update, condition);
  update.names['#slots'] = 'slots';
  condition.names['#slots'] = 'slots';
  if (quota.hasSlots) {
    update.names['#turn'] = slot;
    update.set.push('#slots.#turn = :until');
    update.values[':until'] = quota.now + quota.slotSeconds;
    // The count after the expired slots go and this one comes stays within
    // the limit: size(slots) - expired + 1 <= max. An expired slot of this
    // very turn is overwritten rather than removed.
    condition.values[':room'] = quota.maxTurnsInFlight + quota.expired.length;
    condition.terms.push('size(#slots) < :room');
    quota.expired.forEach((expiredSlot, i) => {
      const name = expiredSlot === slot ? '#turn' : `#e${i}`;
      condition.names[name] = expiredSlot;
      condition.terms.push(`attribute_exists(#slots.${name})`);
      if (expiredSlot !== slot) {
        update.names[name] = expiredSlot;
        update.remove.push(`#slots.${name}`);
      }
    });
  } else {
    const first = {};
    first[slot] = quota.now + quota.slotSeconds;
    update.set.push('#slots = :slots');
    update.values[':slots'] = first;
    condition.terms.push('attribute_not_exists(#slots)');
  }
  condition.names['#day'] = 'quotaDay';
  if (quota.day === quota.today) {
    condition.names['#used'] = 'tokensUsed';
    condition.values[':today'] = quota.today;
    condition.values[':budget'] = quota.dailyTokens;
    condition.terms.push('#day = :today AND #used < :budget');
  } else {
    // A new day: the count starts again from zero.
    update.names['#day'] = 'quotaDay';
    update.names['#used'] = 'tokensUsed';
    update.set.push('#day = :today', '#used = :zero');
    update.values[':today'] = quota.today;
    update.values[':zero'] = 0;
    if (quota.day === null) {
      condition.terms.push('attribute_not_exists(#day)');
    } else {
      condition.values[':seenDay'] = quota.day;
      condition.terms.push('#day = :seenDay');
    }
  }
  return {
    operation: 'UpdateItem',
    key: util.dynamodb.toMapValues({ pk: ctx.identity.sub, sk: 'QUOTA' }),
    update: {
      expression: `SET ${update.set.join(', ')} REMOVE ${update.remove.join(', ')} ADD #convs :conv`,
      expressionNames: update.names,
      // A string set, which toMapValues would write as a list.
      expressionValues: {
        ...util.dynamodb.toMapValues(update.values),
        ':conv': util.dynamodb.toStringSet([ctx.stash.conversationId]),
      },
    },
    condition: {
      expression: condition.terms.map((term) => `(${term})`).join(' AND '),
      expressionNames: condition.names,
      expressionValues: util.dynamodb.toMapValues(condition.values),
    },
  };
}

/**
 * Adds to the update and its condition what the caller's set of conversations
 * needs: the conversation joins the set (ADD, with the update), and the
 * condition re-checks on the item as written that it is already in the set or
 * that the set has room.
 * @param {string} conversationId the prompt's conversation
 * @param {*} quota ctx.stash.quota
 * @param {*} update the update being built
 * @param {*} condition the condition being built
 */
function takeConversation(conversationId, quota, update, condition) {
  update.names['#convs'] = 'conversations';
  condition.names['#convs'] = 'conversations';
  condition.values[':convId'] = conversationId;
  condition.values[':maxConvs'] = quota.maxConversations;
  condition.terms.push(
    'attribute_not_exists(#convs) OR contains(#convs, :convId) OR size(#convs) < :maxConvs',
  );
}

/**
 * Marks the slot taken; a refused condition means the item changed since it
 * was read, and the next read and attempt see the change.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the item as written, or null
 */
export function response(ctx) {
  if (!ctx.error) {
    ctx.stash.slotTaken = true;
    return ctx.result;
  }
  if (ctx.error.type !== 'DynamoDB:ConditionalCheckFailedException') {
    util.error('Your usage could not be checked just now; please try again.', 'ServiceUnavailable');
  }
  return null;
}

/**
 * Fails the request when a limit is reached, with when it frees up in errorInfo.
 * @param {*} quota ctx.stash.quota
 */
function refuseOverLimit(quota) {
  if (quota.live.length >= quota.maxTurnsInFlight) {
    util.error(
      `You have ${quota.live.length} answers in progress, the most you can have at once. ` +
        'Send again when one has finished.',
      'TooManyTurns',
      null,
      { limit: quota.maxTurnsInFlight, resetAt: quota.slotFreeAt },
    );
  }
  if (!quota.hasConversation && quota.conversations.length >= quota.maxConversations) {
    util.error(
      `You have ${quota.conversations.length} conversations, the most you can keep. ` +
        'Delete one to start another.',
      'TooManyConversations',
      null,
      { limit: quota.maxConversations, resetAt: null },
    );
  }
  if (quota.tokensUsedToday >= quota.dailyTokens) {
    util.error(
      `You have used today's ${quota.dailyTokens} tokens. Your quota resets at ${quota.tokensResetAt}.`,
      'QuotaExceeded',
      null,
      { limit: quota.dailyTokens, resetAt: quota.tokensResetAt },
    );
  }
}
