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
// It reports every (re)acknowledgement: chunks published while the socket was
// down, or before the acknowledgement, never arrive here, and the caller
// fetches them with `turnChunks` (recovery.ts).

import { CONNECTION_STATE_CHANGE, type GraphQLSubscription } from 'aws-amplify/api';
import { Hub } from 'aws-amplify/utils';
import { describeError, graphqlClient, request } from './graphql';
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
  /**
   * AppSync acknowledged the subscription (`start_ack`), the first time or
   * again after a reconnect: chunks published before this were not delivered.
   */
  acknowledged(): void;
  /** Amplify's connection state, as its Hub reports it. */
  connectionState(state: string): void;
  /** A subscription failure in words, or null once it works again. */
  problem(message: string | null): void;
  /** A prompt the server refused after it was sent (other transports only). */
  refused?(turnId: string, message: string): void;
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

  private readonly client = graphqlClient();
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
        this.listener.acknowledged();
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
    await request<{ sendPrompt: Turn }>(SEND_PROMPT, { input: { conversationId: this.conversationId, ...input } });
  }

  /** Asks AppSync to stop one of the user's running turns. Throws a `ChatError`. */
  async cancelTurn(turnId: string): Promise<void> {
    await request<{ cancelTurn: Turn | null }>(CANCEL_TURN, { conversationId: this.conversationId, turnId });
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
