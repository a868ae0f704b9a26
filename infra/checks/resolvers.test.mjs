// Runs infra/resolvers/*.js under Node against a stand-in for AppSync's
// `@aws-appsync/utils` and checks that they do what the devstack's built-in
// resolvers (devstack/src/appsync/resolvers.rs) do: the same limits and error
// texts, the same Invoke payload, the same owner filter.
//
// The stand-in follows the documented behaviour of the utilities used:
// util.error / util.unauthorized end the handler with an error, util.autoId
// returns a UUID, util.transform.toSubscriptionFilter builds the filterGroup form:
// https://docs.aws.amazon.com/appsync/latest/devguide/built-in-util-js.html
// https://docs.aws.amazon.com/appsync/latest/devguide/extensions-js.html
//
// Usage: node --test resolvers.test.mjs   (env REPO = repo root, PAYLOAD_OUT =
// where to write a sendPrompt Invoke payload for tests/infra.rs to parse with
// the Lambda's own event types)

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const repo = process.env.REPO ?? process.cwd();
const ALLOWED = 'scripted, smollm2';
const SUB = '7d8ca528-4931-4254-9273-ea5ee853f271';
const GENERATED_ID = '0f8fad5b-d9cb-469f-a165-70867728950e';

/** An AppSync error raised by util.error / util.unauthorized. */
function appsyncError(message, errorType) {
  const e = new Error(message);
  e.errorType = errorType;
  return e;
}

/** The stand-in for `@aws-appsync/utils`, bound to one resolver call. */
function appsyncUtils(state) {
  const util = {
    error: (message, errorType) => {
      throw appsyncError(message, errorType);
    },
    unauthorized: () => {
      throw appsyncError(
        `Not Authorized to access ${state.info.fieldName} on type ${state.info.parentTypeName}`,
        'Unauthorized',
      );
    },
    autoId: () => GENERATED_ID,
    transform: {
      toSubscriptionFilter: (obj) => ({
        filterGroup: [
          {
            filters: Object.entries(obj).flatMap(([fieldName, ops]) =>
              Object.entries(ops).map(([operator, value]) => ({ fieldName, operator, value })),
            ),
          },
        ],
      }),
    },
  };
  const extensions = {
    setSubscriptionFilter: (filter) => {
      state.filter = filter;
    },
  };
  return { util, extensions, runtime: {} };
}

/** Loads a resolver with its `@aws-appsync/utils` import bound to `utils`. */
async function load(name, utils) {
  const path = join(repo, 'infra/resolvers', `${name}.js`);
  let src = readFileSync(path, 'utf8');
  const importLine = /^import \{([^}]*)\} from '@aws-appsync\/utils';$/m;
  const m = src.match(importLine);
  if (m) {
    src = src.replace(importLine, `const {${m[1]}} = globalThis.__appsyncUtils;`);
  }
  globalThis.__appsyncUtils = utils;
  // A fresh module per load (the query string makes the URL unique).
  return import(`data:text/javascript;charset=utf-8,${encodeURIComponent(src)}#${Math.random()}`);
}

function cognito(sub = SUB) {
  return {
    sub,
    issuer: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example',
    username: sub,
    claims: { sub, token_use: 'id', email: 'alice@example.com' },
    sourceIp: ['192.0.2.1'],
    defaultAuthStrategy: 'ALLOW',
    groups: null,
  };
}

const IAM = {
  accountId: 'example-account',
  userArn: 'arn:aws:sts::example-account:assumed-role/r/s',
  username: 'AROAEXAMPLE:s',
  sourceIp: ['192.0.2.2'],
  cognitoIdentityPoolId: null,
  cognitoIdentityId: null,
  cognitoIdentityAuthType: null,
  cognitoIdentityAuthProvider: null,
};

/**
 * Runs a resolver's request handler, the NONE data source (payload -> result)
 * unless `result` is given, and its response handler, as AppSync does.
 */
async function run(name, { args = {}, identity = cognito(), env = {}, result } = {}) {
  const [parentTypeName, fieldName] = name.split('.');
  const state = {
    info: {
      fieldName,
      parentTypeName,
      variables: { input: args.input ?? null },
      selectionSetList: ['conversationId', 'turnId', 'owner'],
      selectionSetGraphQL: '{ conversationId turnId owner }',
    },
  };
  const mod = await load(name, appsyncUtils(state));
  const ctx = {
    args,
    arguments: args,
    identity,
    source: null,
    stash: {},
    prev: null,
    env: { ALLOWED_MODEL_IDS: 'scripted,smollm2', ...env },
    request: { headers: { authorization: 'a-token' }, domainName: null },
    info: state.info,
    error: undefined,
    result: undefined,
  };
  let request;
  try {
    request = mod.request(ctx);
  } catch (e) {
    return { error: { message: e.message, errorType: e.errorType }, state };
  }
  ctx.result = result !== undefined ? result : request?.payload;
  try {
    return { request, response: mod.response(ctx), state, ctx };
  } catch (e) {
    return { request, error: { message: e.message, errorType: e.errorType }, state };
  }
}

const ID_MESSAGE = (name) =>
  `${name} must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'.`;
const PROMPT_MESSAGE = 'prompt must be 1 to 32000 characters and not blank.';

test('sendPrompt invokes the Lambda asynchronously with the AppSync event shape', async () => {
  const input = { conversationId: 'c-1', prompt: 'hi' };
  const { request, response, error } = await run('Mutation.sendPrompt', {
    args: { input },
    result: null, // an Event invoke has no result
  });
  assert.equal(error, undefined);
  assert.equal(request.operation, 'Invoke');
  assert.equal(request.invocationType, 'Event');
  const p = request.payload;
  assert.deepEqual(p.arguments, { input: { conversationId: 'c-1', prompt: 'hi', turnId: GENERATED_ID } });
  assert.deepEqual(p.identity, cognito());
  assert.equal(p.source, null);
  assert.equal(p.prev, null);
  assert.deepEqual(p.stash, {});
  assert.deepEqual(p.request, { headers: {}, domainName: null }, 'no caller token in the payload');
  assert.equal(p.info.fieldName, 'sendPrompt');
  assert.equal(p.info.parentTypeName, 'Mutation');
  assert.deepEqual(p.info.variables, {}, 'the prompt is not sent twice');
  assert.deepEqual(response, { conversationId: 'c-1', turnId: GENERATED_ID, owner: SUB });
  if (process.env.PAYLOAD_OUT) {
    writeFileSync(process.env.PAYLOAD_OUT, JSON.stringify(p, null, 2));
  }
});

test('sendPrompt keeps a client-chosen turnId and every valid bound', async () => {
  const input = {
    conversationId: 'conv-1_a.b:c',
    prompt: 'hi',
    turnId: 't:1',
    modelId: 'scripted',
    system: 's'.repeat(32000),
    maxTokens: 8192,
    temperature: 0,
  };
  const { request, response, error } = await run('Mutation.sendPrompt', { args: { input }, result: null });
  assert.equal(error, undefined);
  assert.deepEqual(request.payload.arguments.input, input);
  assert.deepEqual(response, { conversationId: 'conv-1_a.b:c', turnId: 't:1', owner: SUB });
  for (const extra of [{ maxTokens: 1 }, { temperature: 1 }, { temperature: 0.5 }, { modelId: null }]) {
    const r = await run('Mutation.sendPrompt', { args: { input: { ...input, ...extra } }, result: null });
    assert.equal(r.error, undefined, JSON.stringify(extra));
  }
});

test('sendPrompt refuses each limit with the devstack message and ValidationException', async () => {
  const base = { conversationId: 'c', prompt: 'hi' };
  const cases = [
    [{ prompt: '   ' }, PROMPT_MESSAGE],
    [{ prompt: '' }, PROMPT_MESSAGE],
    [{ prompt: ' \n\t\u0085\u00a0\u2003\u3000' }, PROMPT_MESSAGE],
    [{ prompt: 'x'.repeat(32001) }, PROMPT_MESSAGE],
    [{ prompt: '\u{1F600}'.repeat(32001) }, PROMPT_MESSAGE],
    [{ prompt: 'x'.repeat(64001) }, PROMPT_MESSAGE],
    [{ conversationId: 'c d' }, ID_MESSAGE('conversationId')],
    [{ conversationId: '' }, ID_MESSAGE('conversationId')],
    [{ conversationId: 'x'.repeat(129) }, ID_MESSAGE('conversationId')],
    [{ conversationId: 'é' }, ID_MESSAGE('conversationId')],
    [{ turnId: 't/1' }, ID_MESSAGE('turnId')],
    [{ turnId: '' }, ID_MESSAGE('turnId')],
    [{ system: 's'.repeat(32001) }, 'system must be at most 32000 characters.'],
    [{ modelId: 'gpt' }, `modelId 'gpt' is not available; use one of: ${ALLOWED}.`],
    [{ modelId: '' }, `modelId '' is not available; use one of: ${ALLOWED}.`],
    [{ maxTokens: 0 }, 'maxTokens must be between 1 and 8192.'],
    [{ maxTokens: 8193 }, 'maxTokens must be between 1 and 8192.'],
    [{ maxTokens: 1.5 }, 'maxTokens must be between 1 and 8192.'],
    [{ temperature: -0.1 }, 'temperature must be between 0 and 1.'],
    [{ temperature: 1.5 }, 'temperature must be between 0 and 1.'],
  ];
  for (const [overrides, message] of cases) {
    const { error, request } = await run('Mutation.sendPrompt', { args: { input: { ...base, ...overrides } } });
    assert.equal(request, undefined, JSON.stringify(overrides).slice(0, 80));
    assert.deepEqual(error, { message, errorType: 'ValidationException' }, JSON.stringify(overrides).slice(0, 80));
  }
});

test('sendPrompt checks in the devstack order: ids, prompt, system, model, maxTokens, temperature', async () => {
  const all = { conversationId: 'c d', turnId: 't/1', prompt: ' ', system: 's'.repeat(32001), modelId: 'x', maxTokens: 0, temperature: 2 };
  const expected = [
    ['conversationId', ID_MESSAGE('conversationId')],
    ['turnId', ID_MESSAGE('turnId')],
    ['prompt', PROMPT_MESSAGE],
    ['system', 'system must be at most 32000 characters.'],
    ['modelId', `modelId 'x' is not available; use one of: ${ALLOWED}.`],
    ['maxTokens', 'maxTokens must be between 1 and 8192.'],
    ['temperature', 'temperature must be between 0 and 1.'],
  ];
  const input = { ...all };
  for (const [field, message] of expected) {
    const { error } = await run('Mutation.sendPrompt', { args: { input } });
    assert.equal(error?.message, message);
    input[field] = { conversationId: 'c', turnId: 't', prompt: 'p', system: 's', modelId: 'scripted', maxTokens: 1, temperature: 1 }[field];
  }
  assert.equal((await run('Mutation.sendPrompt', { args: { input }, result: null })).error, undefined);
});

test('sendPrompt counts characters as Rust does (code points, Unicode White_Space)', async () => {
  const ok = async (prompt) => (await run('Mutation.sendPrompt', { args: { input: { conversationId: 'c', prompt } }, result: null })).error;
  assert.equal(await ok('é'.repeat(32000)), undefined);
  assert.equal(await ok('\u{1F600}'.repeat(32000)), undefined, '32000 characters in 64000 UTF-16 units');
  assert.equal(await ok('\ufeff'), undefined, 'U+FEFF is not White_Space, so not blank');
  assert.equal(await ok('\u200b'), undefined, 'U+200B is not White_Space, so not blank');
});

test('sendPrompt reads ALLOWED_MODEL_IDS from the API environment', async () => {
  const input = { conversationId: 'c', prompt: 'p', modelId: 'amazon.nova-micro-v1:0' };
  const env = { ALLOWED_MODEL_IDS: ' anthropic.claude-3-haiku-20240307-v1:0 , amazon.nova-micro-v1:0' };
  assert.equal((await run('Mutation.sendPrompt', { args: { input }, env, result: null })).error, undefined);
  const none = await run('Mutation.sendPrompt', { args: { input }, env: { ALLOWED_MODEL_IDS: '' } });
  assert.equal(none.error.message, "modelId 'amazon.nova-micro-v1:0' is not available; use one of: .");
});

test('sendPrompt needs a user: no sub is Unauthorized, as AppSync words it', async () => {
  const input = { conversationId: 'c', prompt: 'p' };
  for (const identity of [null, IAM, { resolverContext: {} }]) {
    const { error } = await run('Mutation.sendPrompt', { args: { input }, identity });
    assert.deepEqual(error, { message: 'Not Authorized to access sendPrompt on type Mutation', errorType: 'Unauthorized' });
  }
});

test('sendPrompt reports a failed Invoke', async () => {
  const state = { info: { fieldName: 'sendPrompt', parentTypeName: 'Mutation' } };
  const mod = await load('Mutation.sendPrompt', appsyncUtils(state));
  const ctx = { stash: {}, error: { message: 'Rate exceeded', type: 'Lambda:TooManyRequestsException' } };
  assert.throws(() => mod.response(ctx), { message: 'Rate exceeded', errorType: 'Lambda:TooManyRequestsException' });
});

test('publishChunk returns its input unchanged', async () => {
  const input = { conversationId: 'c', turnId: 't', owner: SUB, seq: 0, text: 'Hello', done: false, stopReason: null, usage: null, error: null };
  const { request, response } = await run('Mutation.publishChunk', { args: { input }, identity: IAM });
  assert.deepEqual(request, { payload: input });
  assert.deepEqual(response, input);
});

test('cancelTurn names the caller as owner and checks both ids', async () => {
  const { response } = await run('Mutation.cancelTurn', { args: { conversationId: 'c', turnId: 't-1' } });
  assert.deepEqual(response, { conversationId: 'c', turnId: 't-1', owner: SUB });
  for (const [args, name] of [
    [{ conversationId: 'c d', turnId: 't' }, 'conversationId'],
    [{ conversationId: 'c', turnId: '' }, 'turnId'],
    [{ conversationId: 'c', turnId: 'x'.repeat(129) }, 'turnId'],
  ]) {
    const { error } = await run('Mutation.cancelTurn', { args });
    assert.deepEqual(error, { message: ID_MESSAGE(name), errorType: 'ValidationException' });
  }
  const { error } = await run('Mutation.cancelTurn', { args: { conversationId: 'c', turnId: 't' }, identity: IAM });
  assert.deepEqual(error, { message: 'Not Authorized to access cancelTurn on type Mutation', errorType: 'Unauthorized' });
});

test('onChunk filters to the subscriber\'s own chunks of the conversation', async () => {
  const { response, state, error } = await run('Subscription.onChunk', { args: { conversationId: 'c-1' } });
  assert.equal(error, undefined);
  assert.equal(response, null);
  assert.deepEqual(state.filter, {
    filterGroup: [
      {
        filters: [
          { fieldName: 'owner', operator: 'eq', value: SUB },
          { fieldName: 'conversationId', operator: 'eq', value: 'c-1' },
        ],
      },
    ],
  });
  const denied = await run('Subscription.onChunk', { args: { conversationId: 'c-1' }, identity: IAM });
  assert.deepEqual(denied.error, { message: 'Not Authorized to access onChunk on type Subscription', errorType: 'Unauthorized' });
});

test('onCancel subscribes without a filter; ping answers ok', async () => {
  const cancel = await run('Subscription.onCancel', { args: { turnId: 't', owner: SUB }, identity: IAM });
  assert.deepEqual(cancel.request, { payload: null });
  assert.equal(cancel.response, null);
  assert.equal(cancel.state.filter, undefined);
  assert.equal((await run('Query.ping')).response, 'ok');
});
