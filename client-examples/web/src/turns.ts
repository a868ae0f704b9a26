// Place in the data path: AppSync (onChunk, turnChunks, listMessages) ->
// **subscriber** (the page's model of a turn).
//
// One turn of the conversation as the page knows it, and the rule that makes
// the answer come out right whichever way its chunks came (live on `onChunk`
// or fetched again with `turnChunks`): chunks are put in `seq` order, a chunk
// seen twice (same `turnId` and `seq`) is dropped, a chunk that arrives early
// waits for the ones before it, and the turn ends on the terminal chunk
// (`done: true`), once. A turn read back from `listMessages` is built here too.
// Pure: no DOM, no network, so it can be tested on its own.

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

export interface ChunkError {
  errorType: string;
  message: string;
  retryable: boolean;
}

/** One `onChunk` payload, every field of the schema's `Chunk`. */
export interface Chunk {
  conversationId: string;
  turnId: string;
  owner: string;
  seq: number;
  text: string;
  done: boolean;
  stopReason?: string | null;
  usage?: Usage | null;
  error?: ChunkError | null;
}

/** What the page shows for a turn; also the `data-state` of its element. */
export type TurnState = 'streaming' | 'done' | 'cancelled' | 'error' | 'interrupted';

export interface Turn {
  turnId: string;
  /** The prompt, or null for a turn another tab or device started. */
  prompt: string | null;
  state: TurnState;
  /** The answer so far: the text of every chunk up to the first gap in `seq`. */
  text: string;
  stopReason: string | null;
  usage: Usage | null;
  /** Why the turn failed, in words for the user. */
  error: { message: string; retryable: boolean } | null;
  /** Chunks that arrived before an earlier `seq`, keyed by `seq`. */
  pending: Map<number, Chunk>;
  /** The `seq` the answer waits for next. */
  nextSeq: number;
}

export function newTurn(turnId: string, prompt: string | null): Turn {
  return {
    turnId,
    prompt,
    state: 'streaming',
    text: '',
    stopReason: null,
    usage: null,
    error: null,
    pending: new Map(),
    nextSeq: 0,
  };
}

export function isFinished(turn: Turn): boolean {
  return turn.state !== 'streaming';
}

/** The terminal states: nothing more comes for such a turn. */
export function isEnded(turn: Turn): boolean {
  return turn.state === 'done' || turn.state === 'cancelled' || turn.state === 'error';
}

/**
 * Takes one chunk of `turn`. Returns the text the answer grows by (possibly
 * empty); the turn's state, stop reason, usage and error change when the
 * terminal chunk comes into order. Repeats, chunks of another turn and chunks
 * after the end are ignored; a terminal chunk whose seq was already seen still
 * ends the turn. An `interrupted` turn whose chunks come after all
 * streams again.
 */
export function applyChunk(turn: Turn, chunk: Chunk): string {
  if (isEnded(turn) || chunk.turnId !== turn.turnId) return '';
  if (!Number.isInteger(chunk.seq)) return '';
  // A terminal chunk is never a repeat: a retry of a turn whose environment
  // died ends it after the last stored chunk, which may be a seq already seen.
  if (chunk.done && chunk.seq < turn.nextSeq) {
    finish(turn, chunk);
    turn.pending.clear();
    return '';
  }
  if (chunk.seq < turn.nextSeq || turn.pending.has(chunk.seq)) return '';
  turn.pending.set(chunk.seq, chunk);
  const before = turn.nextSeq;
  let added = '';
  for (let next = turn.pending.get(turn.nextSeq); next; next = turn.pending.get(turn.nextSeq)) {
    turn.pending.delete(turn.nextSeq);
    turn.nextSeq += 1;
    added += next.text;
    if (next.done) {
      finish(turn, next);
      turn.pending.clear();
      break;
    }
  }
  if (turn.state === 'interrupted' && turn.nextSeq > before) {
    turn.state = 'streaming';
    turn.error = null;
  }
  turn.text += added;
  return added;
}

/** What a stored answer (`listMessages`, role `assistant`) says of its end. */
export interface StoredEnd {
  stopReason?: string | null;
  usage?: Usage | null;
  error?: ChunkError | null;
}

/**
 * A turn read back from the store: its prompt, and when `answer` is given its
 * whole text and end (a finished turn). Without an answer the turn may still
 * be running: it stays `streaming` until its chunks say otherwise.
 */
export function storedTurn(turnId: string, prompt: string | null, answer: ({ text: string } & StoredEnd) | null): Turn {
  const turn = newTurn(turnId, prompt);
  if (answer) {
    turn.text = answer.text;
    finish(turn, {
      conversationId: '',
      turnId,
      owner: '',
      seq: 0,
      text: answer.text,
      done: true,
      stopReason: answer.stopReason ?? null,
      usage: answer.usage ?? null,
      error: answer.error ?? null,
    });
  }
  return turn;
}

function finish(turn: Turn, last: Chunk): void {
  turn.stopReason = last.stopReason ?? null;
  turn.usage = last.usage ?? null;
  if (last.error) {
    turn.state = 'error';
    turn.error = { message: last.error.message, retryable: last.error.retryable };
  } else if (last.stopReason === 'cancelled') {
    turn.state = 'cancelled';
  } else if (last.stopReason === 'error') {
    turn.state = 'error';
    turn.error = { message: 'The answer could not be completed.', retryable: true };
  } else {
    turn.state = 'done';
  }
}

/** Ends a turn whose `sendPrompt` was refused, or that never finished. */
export function failTurn(turn: Turn, state: 'error' | 'interrupted', message: string, retryable: boolean): void {
  if (isFinished(turn) && turn.state !== 'interrupted') return;
  turn.state = state;
  turn.error = { message, retryable };
  turn.pending.clear();
}

/** Words for a stop reason (Bedrock's, or the resolver's own). */
export function describeStopReason(reason: string | null): string {
  switch (reason) {
    case null:
      return '';
    case 'end_turn':
      return 'Finished';
    case 'max_tokens':
      return 'Stopped at the token limit';
    case 'stop_sequence':
      return 'Stopped at a stop sequence';
    case 'cancelled':
      return 'Stopped';
    case 'deadline':
      return 'Took too long and was cut off';
    case 'guardrail_intervened':
    case 'content_filtered':
      return 'Blocked by a content filter';
    case 'error':
      return 'Failed';
    default:
      return reason;
  }
}
