// Drives the devstack with the real Amplify JS v6 client (`aws-amplify`), as a
// web or React Native app would: `Amplify.configure`, `generateClient()`,
// `client.graphql(...)` for queries, mutations and subscriptions.
//
// Run by `tests/amplify.rs`, which installs the pinned `aws-amplify` and sets:
//   GRAPHQL_URL            the API's GraphQL URL (`https://HOST:PORT/graphql`)
//   REGION                 the API's region
//   TOKEN                  a Cognito ID token (the custom token provider's token)
//   ACCESS_KEY_ID, SECRET_ACCESS_KEY   IAM credentials (scenario `iam`)
//   PROMPT, MAX_TOKENS, CONVERSATION_ID, TURN_ID, OWNER   per scenario
//
// Usage: node run.mjs <scenario>, scenario one of
//   stream       userPool: subscribe onChunk, wait for start_ack, sendPrompt, collect the turn
//   iam          IAM: subscribe onCancel, cancelTurn as the user, then an IAM `ping` (refused)
//   auth-errors  userPool with a bad TOKEN: the subscription and a query both fail
//
// Everything it observes goes to stdout as one JSON object a line, each with an
// `event` field; Amplify's own log lines go to stderr.
//
// The API is the devstack's HTTPS listener (Node trusts its CA through
// NODE_EXTRA_CA_CERTS), so Amplify opens its real `wss://` socket unchanged.
// The WebSocket class Amplify uses is only wrapped to record every URL and
// subprotocol list Amplify opens (printed as `socket` events).

import { Amplify } from 'aws-amplify';
import { generateClient } from 'aws-amplify/api';
import { decodeJWT } from 'aws-amplify/auth';
import { Hub } from 'aws-amplify/utils';

const ON_CHUNK = `subscription OnChunk($conversationId: ID!) {
  onChunk(conversationId: $conversationId) {
    conversationId turnId owner seq text done stopReason
    usage { inputTokens outputTokens totalTokens }
    error { errorType message retryable }
  }
}`;

const SEND_PROMPT = `mutation SendPrompt($input: SendPromptInput!) {
  sendPrompt(input: $input) { conversationId turnId owner }
}`;

const ON_CANCEL = `subscription OnCancel($turnId: ID!, $owner: ID!) {
  onCancel(turnId: $turnId, owner: $owner) { conversationId turnId owner }
}`;

const CANCEL_TURN = `mutation CancelTurn($conversationId: ID!, $turnId: ID!) {
  cancelTurn(conversationId: $conversationId, turnId: $turnId) { conversationId turnId owner }
}`;

const PING = `query Ping { ping }`;

const TIMEOUT_MS = 60_000;

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function env(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`run.mjs: ${name} is not set`);
  }
  return value;
}

// ---------------------------------------------------------------------------
// The WebSocket Amplify opens (see the header comment).

const NativeWebSocket = globalThis.WebSocket;
if (typeof NativeWebSocket !== 'function') {
  throw new Error('run.mjs: this Node has no global WebSocket (Node 22+, or Node 20/21 with --experimental-websocket)');
}
class RecordingWebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    const requested = String(url);
    const list = protocols === undefined ? [] : [].concat(protocols);
    emit('socket', {
      url: requested.split('?')[0],
      hasQuery: requested.includes('?'),
      protocols: list.map(p => (p.startsWith('header-') ? 'header-…' : p)),
      header: headerObject(list),
    });
    super(url, protocols);
  }
}
globalThis.WebSocket = RecordingWebSocket;

// The auth header object a `header-<base64url>` subprotocol carries, with the
// secret parts replaced by their names.
function headerObject(protocols) {
  const encoded = protocols.find(p => p.startsWith('header-'));
  if (!encoded) return null;
  const json = Buffer.from(encoded.slice('header-'.length), 'base64url').toString('utf8');
  const object = JSON.parse(json);
  const shown = {};
  for (const [k, v] of Object.entries(object)) {
    shown[k] = k === 'host' ? v : `<${typeof v}>`;
  }
  return shown;
}

// ---------------------------------------------------------------------------
// Amplify configuration: the API, plus custom token and credentials providers
// (no Cognito hosted config: the devstack's tokens and keys are handed over as is).

function configure(defaultAuthMode) {
  const token = process.env.TOKEN;
  const accessKeyId = process.env.ACCESS_KEY_ID;
  const secretAccessKey = process.env.SECRET_ACCESS_KEY;
  const auth = {};
  if (token) {
    auth.tokenProvider = {
      getTokens: async () => ({ accessToken: decodeJWT(token), idToken: decodeJWT(token) }),
    };
  }
  if (accessKeyId && secretAccessKey) {
    auth.credentialsProvider = {
      getCredentialsAndIdentityId: async () => ({
        credentials: { accessKeyId, secretAccessKey },
        identityId: 'devstack-identity',
      }),
      clearCredentialsAndIdentityId: () => {},
    };
  }
  Amplify.configure(
    { API: { GraphQL: { endpoint: env('GRAPHQL_URL'), region: env('REGION'), defaultAuthMode } } },
    { Auth: auth },
  );
  return generateClient();
}

// Hub's `api` channel: every connection state change is printed; `Subscription
// ack` (dispatched when AppSync's `start_ack` arrives) resolves the waiters.
const acked = [];
const ackWaiters = [];
Hub.listen('api', ({ payload }) => {
  if (payload.event === 'ConnectionStateChange') {
    emit('connectionState', { state: payload.data.connectionState });
  } else if (payload.event === 'Subscription ack') {
    emit('startAck', { variables: payload.data.variables });
    acked.push(payload.data.variables);
    for (const waiter of ackWaiters.splice(0)) waiter();
  }
});

function untilAck(variables) {
  const matches = () => acked.some(v => JSON.stringify(v) === JSON.stringify(variables));
  return new Promise((resolve, reject) => {
    const check = () => (matches() ? resolve() : ackWaiters.push(check));
    check();
    setTimeout(() => reject(new Error('no start_ack in time')), TIMEOUT_MS).unref();
  });
}

// A subscription as a queue of results, so the scenario reads it in order.
function subscribe(client, query, variables, authMode) {
  const items = [];
  const waiters = [];
  const push = item => {
    items.push(item);
    for (const waiter of waiters.splice(0)) waiter();
  };
  const subscription = client.graphql({ query, variables, ...(authMode && { authMode }) }).subscribe({
    next: value => push({ data: value.data }),
    error: error => push({ error: describe(error) }),
  });
  const next = () =>
    new Promise((resolve, reject) => {
      const take = () => (items.length ? resolve(items.shift()) : waiters.push(take));
      take();
      setTimeout(() => reject(new Error('no subscription message in time')), TIMEOUT_MS).unref();
    });
  return { next, unsubscribe: () => subscription.unsubscribe() };
}

// What a rejected `client.graphql` or a subscription error carries.
function describe(error) {
  if (error && Array.isArray(error.errors)) {
    return {
      errors: error.errors.map(e => ({
        message: e.message,
        errorType: e.errorType ?? null,
        originalError: e.originalError ? String(e.originalError.name ?? e.originalError) : null,
      })),
    };
  }
  return { thrown: String(error?.name ?? 'Error'), message: String(error?.message ?? error) };
}

async function graphql(client, request) {
  try {
    return { data: (await client.graphql(request)).data };
  } catch (error) {
    return { error: describe(error) };
  }
}

// ---------------------------------------------------------------------------

async function stream() {
  const client = configure('userPool');
  const conversationId = env('CONVERSATION_ID');
  const turnId = env('TURN_ID');
  const variables = { conversationId };
  const subscription = subscribe(client, ON_CHUNK, variables);
  await untilAck(variables);
  const sent = await graphql(client, {
    query: SEND_PROMPT,
    variables: {
      input: { conversationId, turnId, prompt: env('PROMPT'), maxTokens: Number(env('MAX_TOKENS')) },
    },
  });
  emit('sendPrompt', sent);
  if (sent.error) throw new Error('sendPrompt failed');
  const chunks = new Map();
  for (;;) {
    const message = await subscription.next();
    if (message.error) {
      emit('subscriptionError', message.error);
      throw new Error('the subscription failed');
    }
    const chunk = message.data.onChunk;
    emit('chunk', { chunk });
    if (chunk.turnId !== turnId) continue;
    chunks.set(chunk.seq, chunk);
    const done = [...chunks.values()].find(c => c.done);
    if (done && [...Array(done.seq + 1).keys()].every(seq => chunks.has(seq))) break;
  }
  subscription.unsubscribe();
  const ordered = [...chunks.values()].sort((a, b) => a.seq - b.seq);
  emit('summary', {
    text: ordered.map(c => c.text).join(''),
    seqs: ordered.map(c => c.seq),
    done: ordered.filter(c => c.done).length,
    stopReason: ordered[ordered.length - 1].stopReason,
    usage: ordered[ordered.length - 1].usage,
  });
}

async function iam() {
  const client = configure('iam');
  const conversationId = env('CONVERSATION_ID');
  const turnId = env('TURN_ID');
  const variables = { turnId, owner: env('OWNER') };
  const subscription = subscribe(client, ON_CANCEL, variables);
  await untilAck(variables);
  // cancelTurn is Cognito-only: the same client, the user's token.
  const cancelled = await graphql(client, {
    query: CANCEL_TURN,
    variables: { conversationId, turnId },
    authMode: 'userPool',
  });
  emit('cancelTurn', cancelled);
  const message = await subscription.next();
  emit('onCancel', message);
  subscription.unsubscribe();
  // Query.ping has no @aws_iam: IAM is refused.
  emit('iamPing', await graphql(client, { query: PING }));
  emit('userPoolPing', await graphql(client, { query: PING, authMode: 'userPool' }));
}

async function authErrors() {
  const client = configure('userPool');
  const variables = { conversationId: env('CONVERSATION_ID') };
  const subscription = subscribe(client, ON_CHUNK, variables);
  const first = await subscription.next();
  emit('subscription', first);
  subscription.unsubscribe();
  emit('ping', await graphql(client, { query: PING }));
}

const scenarios = { stream, iam, 'auth-errors': authErrors };
const name = process.argv[2];
if (!scenarios[name]) {
  throw new Error(`run.mjs: unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`);
}
try {
  await scenarios[name]();
  emit('end');
  process.exit(0);
} catch (error) {
  emit('failed', { message: String(error?.stack ?? error) });
  process.exit(1);
}
