// Place in the data path: AppSync -> **subscriber** (the wire: subscribe, send, cancel).
//
// One conversation's connection to AppSync through Amplify:
//   - subscribes to `onChunk(conversationId)` and reports "ready" only once
//     AppSync has acknowledged the subscription (`start_ack`, Hub 'api' event
//     'Subscription ack'): a prompt sent before that could stream into nothing;
//   - follows Amplify's connection state (Hub 'ConnectionStateChange'). Amplify
//     reconnects a dropped socket by itself; if the subscription errors or
//     completes anyway, this module subscribes again with backoff (1 s, 2 s, 4 s,
//     up to 10 s) and waits for the new `start_ack`;
//   - sends `sendPrompt` with a client-chosen turnId, and `cancelTurn`.

import { CONNECTION_STATE_CHANGE, generateClient, type GraphQLQuery, type GraphQLResult, type GraphQLSubscription } from 'aws-amplify/api';
import { Hub } from 'aws-amplify/utils';
import type { Chunk } from './turns';

// The same documents as the Rust client (src/client.rs).
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

const CANCEL_TURN = `mutation CancelTurn($conversationId: ID!, $turnId: ID!) {
  cancelTurn(conversationId: $conversationId, turnId: $turnId) { conversationId turnId owner }
}`;

const SUBSCRIPTION_ACK = 'Subscription ack';

// States in which the socket is gone or not yet open: the subscription needs a
// new start_ack before a prompt may be sent.
const SOCKET_DOWN = new Set(['Connecting', 'ConnectionDisrupted', 'ConnectionDisruptedPendingNetwork', 'Disconnected']);
// States in which the socket is open but a prompt should wait (the browser is offline).
const PAUSED = new Set(['ConnectedPendingNetwork']);

export interface ChatListener {
  chunk(chunk: Chunk): void;
  /** Whether a prompt may be sent now (subscribed, acknowledged, connected). */
  ready(ready: boolean): void;
  /** Amplify's connection state, as its Hub reports it. */
  connectionState(state: string): void;
  /** A subscription failure in words, or null once it works again. */
  problem(message: string | null): void;
}

/** What `sendPrompt` and `cancelTurn` return. */
interface Turn {
  conversationId: string;
  turnId: string;
  owner: string;
}

export interface PromptInput {
  turnId: string;
  prompt: string;
  maxTokens?: number;
  modelId?: string;
}

export class ChatConnection {
  /** Every `onChunk` payload received, whoever's turn it is. */
  payloadsReceived = 0;

  private readonly client = generateClient();
  private subscription: { unsubscribe(): void } | null = null;
  private stopHub: (() => void) | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private acked = false;
  private state = 'Disconnected';
  private wasReady = false;
  private closed = false;

  constructor(
    readonly conversationId: string,
    private readonly listener: ChatListener,
  ) {}

  start(): void {
    this.stopHub = Hub.listen('api', ({ payload }) => {
      const data = payload.data as
        | { connectionState?: string; query?: string; variables?: { conversationId?: string } }
        | undefined;
      if (payload.event === CONNECTION_STATE_CHANGE && data?.connectionState) {
        this.state = data.connectionState;
        if (SOCKET_DOWN.has(this.state)) this.acked = false;
        this.listener.connectionState(this.state);
        this.updateReady();
      } else if (
        payload.event === SUBSCRIPTION_ACK &&
        data?.query?.includes('onChunk') &&
        data.variables?.conversationId === this.conversationId
      ) {
        this.acked = true;
        this.attempt = 0;
        this.listener.problem(null);
        this.updateReady();
      }
    });
    this.subscribe();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.stopHub?.();
    this.acked = false;
    this.updateReady();
  }

  /** Starts a turn; the answer arrives on the subscription. Throws a `ChatError`. */
  async sendPrompt(input: PromptInput): Promise<void> {
    await settle(
      this.client.graphql<GraphQLQuery<{ sendPrompt: Turn }>>({
        query: SEND_PROMPT,
        variables: { input: { conversationId: this.conversationId, ...input } },
      }),
    );
  }

  /** Asks AppSync to stop one of the user's running turns. Throws a `ChatError`. */
  async cancelTurn(turnId: string): Promise<void> {
    await settle(
      this.client.graphql<GraphQLQuery<{ cancelTurn: Turn | null }>>({
        query: CANCEL_TURN,
        variables: { conversationId: this.conversationId, turnId },
      }),
    );
  }

  private subscribe(): void {
    this.retryTimer = null;
    this.acked = false;
    this.updateReady();
    const variables = { conversationId: this.conversationId };
    this.subscription = this.client
      .graphql<GraphQLSubscription<{ onChunk: Chunk | null }>>({ query: ON_CHUNK, variables })
      .subscribe({
        next: ({ data }) => {
          this.payloadsReceived += 1;
          if (data?.onChunk) this.listener.chunk(data.onChunk);
        },
        error: (error: unknown) => {
          this.listener.problem(`The live connection failed: ${describeError(error)}`);
          this.resubscribe();
        },
        complete: () => this.resubscribe(),
      });
  }

  private resubscribe(): void {
    this.subscription = null;
    this.acked = false;
    this.updateReady();
    if (this.closed || this.retryTimer) return;
    const delay = Math.min(1000 * 2 ** this.attempt, 10_000);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.subscribe(), delay);
  }

  private updateReady(): void {
    const ready = !this.closed && this.acked && !SOCKET_DOWN.has(this.state) && !PAUSED.has(this.state);
    if (ready !== this.wasReady) {
      this.wasReady = ready;
      this.listener.ready(ready);
    }
  }
}

// A mutation's result, or a `ChatError` whose message can be shown as is.
async function settle<T>(request: Promise<GraphQLResult<T>>): Promise<T> {
  try {
    const result = await request;
    if (result.errors?.length) throw result;
    return result.data;
  } catch (error) {
    throw new ChatError(describeError(error), !isInvalidRequest(error));
  }
}

// A request AppSync refused as invalid: sending it again as is cannot help.
function isInvalidRequest(error: unknown): boolean {
  const errors = (error as { errors?: { errorType?: string }[] })?.errors;
  return Array.isArray(errors) && errors.some(e => /Validation|BadRequest|MalformedHttpRequest/i.test(e.errorType ?? ''));
}

/** A failed request, with a message fit to show the user. */
export class ChatError extends Error {
  constructor(
    message: string,
    /** False when the same request would be refused again. */
    readonly retryable = true,
  ) {
    super(message);
  }
}

// Amplify rejects with `{ data, errors: [{ message, errorType }] }` for GraphQL
// errors, or with an `Error` for everything else.
function describeError(error: unknown): string {
  const errors = (error as { errors?: { message?: string; errorType?: string }[] })?.errors;
  const first = Array.isArray(errors) ? errors[0] : undefined;
  const type = first?.errorType ?? (error as { name?: string })?.name ?? '';
  const message = first?.message ?? (error as { message?: string })?.message ?? '';
  if (/unauthori[sz]ed|NotAuthorized|NoValidAuthTokens/i.test(type) || /unauthori[sz]ed/i.test(message)) {
    return 'You are not signed in any more. Sign in again.';
  }
  if (/Throttl|TooManyRequests|LimitExceeded/i.test(type)) {
    return 'Too many requests right now. Wait a moment and try again.';
  }
  if (/network|failed to fetch|connection/i.test(message) && !type.endsWith('Exception')) {
    return 'Could not reach the server. Check your connection and try again.';
  }
  if (message) return message.length > 300 ? `${message.slice(0, 300)}…` : message;
  return 'Something went wrong. Try again.';
}
