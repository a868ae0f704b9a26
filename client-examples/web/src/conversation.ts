// Place in the data path: AppSync (onChunk live; listMessages and turnChunks
// stored) -> **subscriber** (one open conversation).
//
// The conversation the page shows: its history read back with `listMessages`,
// its live chunks from `onChunk` (chat.ts), the chunks it missed fetched with
// `turnChunks` (recovery.ts), all merged into its turns (turns.ts) and drawn
// (view.ts). Sends prompts to this conversationId, so a follow-up continues
// it (the resolver gives the model the earlier turns), and stops them. Each
// turn ends once: `turnEnded` is called once per turn that ends while open.

import { ChatConnection, type ChatListener } from './chat';
import { ChatError, describeError } from './graphql';
import { isStale, turnsFromMessages } from './history';
import { Recovery, needsChunks, type RecoveryStats } from './recovery';
import { listAllMessages, turnChunksPage } from './store-api';
import { applyChunk, failTurn, isEnded, newTurn, type Chunk, type Turn } from './turns';
import type { Connect, Connection } from './transports';
import type { TurnsView } from './view';

/** AppSync: `onChunk`, `sendPrompt`, `cancelTurn` (chat.ts). */
const appsync: Connect = (conversationId: string, listener: ChatListener) =>
  new ChatConnection(conversationId, listener);

/** A stored prompt older than this without an answer is not running any more. */
const STALE_TURN_MS = 15 * 60_000;

export type HistoryState = 'loading' | 'loaded' | 'error';

export interface ConversationEvents {
  ready(ready: boolean): void;
  connectionState(state: string): void;
  problem(message: string | null): void;
  history(state: HistoryState, message?: string): void;
  /** A turn ended while the conversation was open; once per turn. */
  turnEnded(turn: Turn): void;
  /** Something the composer depends on changed (a turn started or ended). */
  changed(): void;
}

export interface SendOptions {
  maxTokens?: number;
  modelId?: string;
}

export class OpenConversation {
  private readonly turns = new Map<string, Turn>();
  /** Turn ids in the order they are shown. */
  private order: string[] = [];
  /** Turns this page started, newest last: Stop cancels the newest still streaming. */
  private readonly ownTurns: string[] = [];
  private readonly ended = new Set<string>();
  private readonly chat: Connection;
  private readonly recovery: Recovery;
  private isReady = false;
  private closed = false;

  constructor(
    readonly conversationId: string,
    private readonly view: TurnsView,
    private readonly events: ConversationEvents,
    connect: Connect = appsync,
  ) {
    this.chat = connect(conversationId, {
      chunk: chunk => this.onChunk(chunk),
      ready: ready => {
        this.isReady = ready;
        events.ready(ready);
      },
      acknowledged: () => this.onAcknowledged(),
      connectionState: state => events.connectionState(state),
      problem: message => events.problem(message),
      refused: (turnId, message) => this.onRefused(turnId, message),
    });
    this.recovery = new Recovery({
      turn: id => this.turns.get(id),
      fetchPage: (turnId, afterSeq, nextToken) => turnChunksPage(conversationId, turnId, afterSeq, nextToken),
      merged: turn => this.changedTurn(turn),
      failed: (_turn, error) => console.warn(`turnChunks failed (tried again): ${describeError(error)}`),
      gaveUp: turn => {
        failTurn(turn, 'interrupted', 'The rest of the answer did not arrive.', true);
        this.changedTurn(turn);
      },
    });
  }

  /** Subscribes and reads the history. */
  start(): void {
    this.view.clear();
    this.chat.start();
    void this.loadHistory();
  }

  close(): void {
    this.closed = true;
    this.recovery.stop();
    this.chat.close();
  }

  get ready(): boolean {
    return this.isReady;
  }

  /** `onChunk` payloads this conversation's subscription received. */
  get payloadsReceived(): number {
    return this.chat.payloadsReceived;
  }

  get recoveryStats(): RecoveryStats {
    return this.recovery.stats;
  }

  /** The turns in the order they are shown. */
  shownTurns(): Turn[] {
    return this.order.flatMap(id => this.turns.get(id) ?? []);
  }

  streamingOwnTurn(): string | undefined {
    return this.ownTurns.findLast(id => this.turns.get(id)?.state === 'streaming');
  }

  hasStreamingTurn(): boolean {
    return [...this.turns.values()].some(t => t.state === 'streaming');
  }

  /** Sends a prompt as a new turn of this conversation. */
  async send(prompt: string, options: SendOptions): Promise<void> {
    if (!this.isReady || this.closed) return;
    const turnId = crypto.randomUUID();
    const turn = newTurn(turnId, prompt);
    this.add(turn);
    this.ownTurns.push(turnId);
    this.view.render(turn);
    this.recovery.watch(turnId);
    this.events.changed();
    try {
      await this.chat.sendPrompt({ turnId, prompt, ...options });
    } catch (error) {
      const known = error instanceof ChatError;
      failTurn(turn, 'error', `Not sent: ${known ? error.message : 'the prompt could not be sent.'}`, known ? error.retryable : true);
      this.ended.add(turnId);
      this.recovery.forget(turnId);
      this.view.render(turn);
      this.events.changed();
    }
  }

  /** Asks AppSync to stop the newest of this page's running turns. Throws a `ChatError`. */
  async stop(): Promise<void> {
    const turnId = this.streamingOwnTurn();
    if (turnId) await this.chat.cancelTurn(turnId);
  }

  private add(turn: Turn): void {
    this.turns.set(turn.turnId, turn);
    this.order.push(turn.turnId);
  }

  private onChunk(chunk: Chunk): void {
    if (this.closed || chunk.conversationId !== this.conversationId) return;
    let turn = this.turns.get(chunk.turnId);
    if (!turn) {
      // A turn this page did not start: another tab or device of the same user.
      turn = newTurn(chunk.turnId, null);
      this.add(turn);
    }
    applyChunk(turn, chunk);
    this.recovery.afterChunk(turn);
    this.changedTurn(turn);
  }

  // A prompt the server refused after it was sent (another transport).
  private onRefused(turnId: string, message: string): void {
    const turn = this.turns.get(turnId);
    if (!turn) return;
    failTurn(turn, 'error', `Not sent: ${message}`, true);
    this.changedTurn(turn);
  }

  // A start_ack while turns run (after a reconnect, or one that came late):
  // what was published before it never reaches this subscription.
  private onAcknowledged(): void {
    for (const turn of this.turns.values()) if (needsChunks(turn)) this.recovery.recover(turn.turnId, 'ack');
  }

  private changedTurn(turn: Turn): void {
    if (this.closed) return;
    this.view.render(turn);
    if (isEnded(turn) && !this.ended.has(turn.turnId)) {
      this.ended.add(turn.turnId);
      this.recovery.forget(turn.turnId);
      this.events.turnEnded(turn);
    }
    this.events.changed();
  }

  private async loadHistory(): Promise<void> {
    this.events.history('loading');
    let messages;
    try {
      messages = await listAllMessages(this.conversationId);
    } catch (error) {
      if (!this.closed) this.events.history('error', `The earlier messages could not be loaded: ${describeError(error)}`);
      return;
    }
    if (this.closed) return;
    const order: string[] = [];
    const unfinished: string[] = [];
    for (const { turn: stored, startedAt } of turnsFromMessages(messages)) {
      const live = this.turns.get(stored.turnId);
      let turn = stored;
      if (live) {
        // Chunks of this turn came live before the history: keep what is
        // further along, and the prompt from the store.
        if (isEnded(stored) && !isEnded(live)) Object.assign(live, stored);
        else live.prompt ??= stored.prompt;
        turn = live;
      }
      this.turns.set(turn.turnId, turn);
      order.push(turn.turnId);
      if (isEnded(turn)) {
        this.ended.add(turn.turnId);
      } else if (isStale(startedAt, Date.now(), STALE_TURN_MS)) {
        failTurn(turn, 'interrupted', 'This answer was never completed.', true);
      } else {
        unfinished.push(turn.turnId);
      }
    }
    const stored = new Set(order);
    this.order = [...order, ...this.order.filter(id => !stored.has(id))];
    this.view.showAll(this.shownTurns());
    this.events.history('loaded');
    // A turn without its answer may still be running: catch it up (and let
    // Stop cancel it, as if this page had sent it).
    for (const id of unfinished) {
      if (!this.ownTurns.includes(id)) this.ownTurns.push(id);
      this.recovery.recover(id, 'history');
      this.recovery.watch(id);
    }
    this.events.changed();
  }
}
