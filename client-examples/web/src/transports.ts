// Place in the data path: client --POST--> Lambda function URL --Server-Sent
// Events--> **subscriber**; client --message--> API Gateway WebSocket API
// --PostToConnection--> **subscriber** (the page's other two transports).
//
// The same relay behind two more front doors, with the shape of
// `ChatConnection` (chat.ts), so the conversation, its turns, history and
// recovery stay as they are:
//   - FunctionUrlConnection: each prompt is one `fetch` POST with the user's
//     ID token; the answer is the response body, read as an event stream
//     (one `data:` line per chunk). Ready at once: there is nothing to
//     subscribe to. Stop is `POST {url}/cancel`.
//   - WebSocketApiConnection: one WebSocket per open conversation, opened
//     with `?token=<ID token>` (a browser cannot send headers on it); each
//     prompt and Stop is a message (`sendPrompt`, `cancelTurn`), chunks come
//     back as `{"type":"chunk"}` messages. A dropped socket is opened again
//     with backoff, and every reopening is reported as `acknowledged`, so
//     the conversation fetches what it missed with `turnChunks`.
// Both send the page's own turnId, so chunks are matched to turns as on AppSync.

import { fetchAuthSession } from 'aws-amplify/auth';
import type { ChatListener, PromptInput } from './chat';
import { ChatError } from './graphql';
import type { Chunk } from './turns';

/** What the conversation needs of a transport (ChatConnection has it too). */
export interface Connection {
  readonly payloadsReceived: number;
  start(): void;
  close(): void;
  sendPrompt(input: PromptInput): Promise<void>;
  cancelTurn(turnId: string): Promise<void>;
}

async function idToken(): Promise<string> {
  const session = await fetchAuthSession();
  const token = session.tokens?.idToken?.toString();
  if (!token) throw new ChatError('You are not signed in any more. Sign in again.', false);
  return token;
}

/** A refusal body `{errorType, message}` as a `ChatError`. */
async function refusal(response: Response): Promise<ChatError> {
  const body = (await response.json().catch(() => ({}))) as { errorType?: string; message?: string };
  const retryable = response.status === 429 || response.status >= 500;
  return new ChatError(body.message ?? `HTTP ${response.status}`, retryable, body.errorType ?? null);
}

/** Splits an event stream's text into the `data` of each whole event; the rest stays in `buffer`. */
export function takeEvents(buffer: string): { data: string[]; rest: string } {
  const data: string[] = [];
  const normalized = buffer.replace(/\r\n?/g, '\n');
  const blocks = normalized.split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    const lines = block
      .split('\n')
      .filter(line => line.startsWith('data:'))
      .map(line => line.slice(5).replace(/^ /, ''));
    if (lines.length) data.push(lines.join('\n'));
  }
  return { data, rest };
}

export class FunctionUrlConnection implements Connection {
  payloadsReceived = 0;
  private closed = false;
  private readonly streams = new Set<AbortController>();

  constructor(
    readonly conversationId: string,
    private readonly url: string,
    private readonly listener: ChatListener,
  ) {}

  start(): void {
    this.listener.connectionState('Connected');
    this.listener.ready(true);
  }

  close(): void {
    this.closed = true;
    for (const stream of this.streams) stream.abort();
    this.listener.ready(false);
  }

  /** POSTs the prompt; resolves once the stream has started, then reads it in the background. */
  async sendPrompt(input: PromptInput): Promise<void> {
    const abort = new AbortController();
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${await idToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ conversationId: this.conversationId, ...input }),
      signal: abort.signal,
    }).catch(() => {
      throw new ChatError('Could not reach the server. Check your connection and try again.');
    });
    if (!response.ok || !response.body) throw await refusal(response);
    this.streams.add(abort);
    void this.read(response.body).finally(() => this.streams.delete(abort));
  }

  async cancelTurn(turnId: string): Promise<void> {
    const response = await fetch(new URL('cancel', this.url.endsWith('/') ? this.url : `${this.url}/`), {
      method: 'POST',
      headers: { authorization: `Bearer ${await idToken()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ conversationId: this.conversationId, turnId }),
    });
    if (!response.ok) throw await refusal(response);
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    // Decoded as a stream: a character split across two reads stays whole.
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.closed) break;
        const { data, rest } = takeEvents(buffer + decoder.decode(value, { stream: true }));
        buffer = rest;
        for (const json of data) this.deliver(json);
      }
    } catch {
      // The stream broke: the turn's watchdog fetches the rest (turnChunks).
    }
  }

  private deliver(json: string): void {
    try {
      const chunk = JSON.parse(json) as Chunk;
      this.payloadsReceived += 1;
      this.listener.chunk(chunk);
    } catch {
      console.warn('an event that is not a chunk was ignored');
    }
  }
}

export class WebSocketApiConnection implements Connection {
  payloadsReceived = 0;
  private socket: WebSocket | null = null;
  private closed = false;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly conversationId: string,
    private readonly url: string,
    private readonly listener: ChatListener,
  ) {}

  start(): void {
    void this.open();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.socket?.close(1000);
    this.socket = null;
    this.listener.ready(false);
  }

  async sendPrompt(input: PromptInput): Promise<void> {
    this.send({ action: 'sendPrompt', input: { conversationId: this.conversationId, ...input } });
  }

  async cancelTurn(turnId: string): Promise<void> {
    this.send({ action: 'cancelTurn', conversationId: this.conversationId, turnId });
  }

  private send(message: unknown): void {
    if (this.socket?.readyState !== WebSocket.OPEN) {
      throw new ChatError('Could not reach the server. Check your connection and try again.');
    }
    this.socket.send(JSON.stringify(message));
  }

  private async open(): Promise<void> {
    this.retryTimer = null;
    this.listener.connectionState('Connecting');
    let token: string;
    try {
      token = await idToken();
    } catch (error) {
      this.listener.problem((error as Error).message);
      return;
    }
    if (this.closed) return;
    const url = new URL(this.url);
    url.searchParams.set('token', token);
    const socket = new WebSocket(url.href);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.listener.connectionState('Connected');
      this.listener.problem(null);
      this.listener.ready(true);
      this.listener.acknowledged();
    };
    socket.onmessage = event => this.receive(String(event.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.listener.ready(false);
      this.listener.connectionState('Disconnected');
      if (this.closed) return;
      const delay = Math.min(1000 * 2 ** this.attempt, 10_000);
      this.attempt += 1;
      this.retryTimer = setTimeout(() => void this.open(), delay);
    };
  }

  private receive(text: string): void {
    let message: { type?: string; chunk?: Chunk; turnId?: string; message?: string };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      return;
    }
    if (message.type === 'chunk' && message.chunk) {
      this.payloadsReceived += 1;
      this.listener.chunk(message.chunk);
    } else if (message.type === 'error') {
      const words = message.message ?? 'The server refused the message.';
      if (message.turnId && this.listener.refused) this.listener.refused(message.turnId, words);
      else this.listener.problem(words);
    }
  }
}

/** The transports the page can use. */
export type TransportName = 'appsync' | 'function-url' | 'websocket';

/** Makes a conversation's connection. */
export type Connect = (conversationId: string, listener: ChatListener) => Connection;

/** The connection maker for `name`, given the URLs config.json names; null when it names none. */
export function connectFor(
  name: TransportName,
  urls: { functionUrl?: string; webSocketUrl?: string },
): Connect | null {
  if (name === 'function-url' && urls.functionUrl) {
    const url = urls.functionUrl;
    return (id, listener) => new FunctionUrlConnection(id, url, listener);
  }
  if (name === 'websocket' && urls.webSocketUrl) {
    const url = urls.webSocketUrl;
    return (id, listener) => new WebSocketApiConnection(id, url, listener);
  }
  return null;
}
