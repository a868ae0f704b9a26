// Mutation.sendPrompt: client --sendPrompt--> AppSync pipeline:
//   Function.readQuota (GetItem) -> Function.takeTurnSlot (UpdateItem), each
//   run again once if another prompt of the same user raced it ->
//   Function.invokeTurn --Invoke(Event)--> resolver Lambda.
//
// The before handler (request) checks the prompt and fills in the turn id and
// owner; the functions enforce the caller's quotas (turns in flight, daily
// tokens) and start the turn; the after handler (response) answers with the
// turn at once. The answer itself arrives on onChunk. A refused prompt costs no
// Lambda invocation and no model call. The devstack runs these files as they
// are, so the local tests hold them to their limits, messages and payload.
//
// APPSYNC_JS runtime: no try/catch/throw, no regex literals, no classic for loops:
// https://docs.aws.amazon.com/appsync/latest/devguide/supported-features.html
// Pipeline resolvers (before handler -> functions -> after handler):
// https://docs.aws.amazon.com/appsync/latest/devguide/resolver-reference-overview-js.html
import { util } from '@aws-appsync/utils';

// The limits of sendPrompt; the resolver Lambda enforces the same (src/limits.rs,
// checked equal by its tests).
const MAX_ID_CHARS = 128;
const MAX_PROMPT_CHARS = 32000;
const MAX_SYSTEM_CHARS = 32000;
const MAX_TOKENS = 8192;

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:';

// What Rust's `str::trim` removes (Unicode White_Space), so that "blank" means
// the same here as in the devstack and the Lambda.
const WHITE_SPACE =
  '\t\n\u000b\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005' +
  '\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';

/**
 * Checks the caller and the input before any function runs.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} an empty object, the first function's ctx.prev.result
 */
export function request(ctx) {
  const owner = ctx.identity?.sub;
  if (!owner) {
    // "Not Authorized to access sendPrompt on type Mutation", errorType Unauthorized.
    util.unauthorized();
  }
  const input = ctx.args.input ?? {};
  validatePrompt(input, allowedModels(ctx.env?.ALLOWED_MODEL_IDS));

  const turnId = typeof input.turnId === 'string' ? input.turnId : util.autoId();
  ctx.stash.input = { ...input, turnId };
  ctx.stash.conversationId = input.conversationId;
  ctx.stash.turnId = turnId;
  ctx.stash.owner = owner;
  return {};
}

/**
 * The turn, built from the stash: an asynchronous Invoke has no result.
 * @param {import('@aws-appsync/utils').Context} ctx the context
 * @returns {*} the Turn
 */
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  return {
    conversationId: ctx.stash.conversationId,
    turnId: ctx.stash.turnId,
    owner: ctx.stash.owner,
  };
}

/**
 * The model ids a prompt may name: the comma-separated ALLOWED_MODEL_IDS.
 * @param {string | undefined} raw the variable's value
 * @returns {string[]} the ids, trimmed, without empty entries
 */
function allowedModels(raw) {
  const ids = [];
  for (const part of (raw ?? '').split(',')) {
    const id = part.trim();
    if (id !== '') {
      ids.push(id);
    }
  }
  return ids;
}

/**
 * Fails the request with a ValidationException naming the first problem,
 * in the order and words of the devstack's `validate_prompt`.
 * @param {*} input the SendPromptInput
 * @param {string[]} allowed the allowed model ids
 */
function validatePrompt(input, allowed) {
  checkId('conversationId', input.conversationId ?? '');
  if (typeof input.turnId === 'string') {
    checkId('turnId', input.turnId);
  }

  const prompt = typeof input.prompt === 'string' ? input.prompt : '';
  if (isBlank(prompt) || longerThan(prompt, MAX_PROMPT_CHARS)) {
    invalid(`prompt must be 1 to ${MAX_PROMPT_CHARS} characters and not blank.`);
  }
  if (typeof input.system === 'string' && longerThan(input.system, MAX_SYSTEM_CHARS)) {
    invalid(`system must be at most ${MAX_SYSTEM_CHARS} characters.`);
  }
  const model = input.modelId;
  if (typeof model === 'string' && !allowed.includes(model)) {
    invalid(`modelId '${model}' is not available; use one of: ${allowed.join(', ')}.`);
  }
  const maxTokens = input.maxTokens;
  if (
    maxTokens !== undefined &&
    maxTokens !== null &&
    !(
      typeof maxTokens === 'number' &&
      maxTokens % 1 === 0 &&
      maxTokens >= 1 &&
      maxTokens <= MAX_TOKENS
    )
  ) {
    invalid(`maxTokens must be between 1 and ${MAX_TOKENS}.`);
  }
  const temperature = input.temperature;
  if (
    temperature !== undefined &&
    temperature !== null &&
    !(typeof temperature === 'number' && temperature >= 0 && temperature <= 1)
  ) {
    invalid('temperature must be between 0 and 1.');
  }
}

/**
 * 1 to 128 of A-Z a-z 0-9 - _ . : (all ASCII, so UTF-16 length = characters).
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
    invalid(`${name} must be 1 to ${MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.`);
  }
}

/**
 * True when `s` is empty or only white space.
 * @param {string} s the text
 * @returns {boolean} whether it is blank
 */
function isBlank(s) {
  for (const c of s) {
    if (!WHITE_SPACE.includes(c)) {
      return false;
    }
  }
  return true;
}

/**
 * Whether `s` has more than `limit` Unicode characters (code points), as Rust's
 * `chars().count() > limit`. A string's length counts UTF-16 units: one or two
 * a character. So only a length between `limit` and `2 * limit` is walked.
 * @param {string} s the text
 * @param {number} limit the most characters allowed
 * @returns {boolean} whether `s` is too long
 */
function longerThan(s, limit) {
  if (s.length <= limit) {
    return false;
  }
  if (s.length > 2 * limit) {
    return true;
  }
  let n = 0;
  for (const _c of s) {
    n = n + 1;
    if (n > limit) {
      return true;
    }
  }
  return false;
}

/**
 * Fails the request with errorType ValidationException.
 * @param {string} message what is wrong, safe to show the user
 */
function invalid(message) {
  util.error(message, 'ValidationException');
}
