// Place in the data path: AppSync (turnChunks) -> **subscriber** (catching a
// turn up on what `onChunk` did not deliver).
//
// AppSync delivers a chunk only to the subscriptions acknowledged when it is
// published: chunks published while the socket was down, or before a
// (re)subscription's `start_ack`, never arrive, and one can be lost in
// between. The resolver Lambda stores every chunk beside publishing it (at
// most ~100 ms later), so the page asks `turnChunks(conversationId, turnId,
// afterSeq)` for the chunks after the highest `seq` it has without a hole,
// following `nextToken`, and merges them with the live ones by `seq`
// (turns.ts drops a repeat by `(turnId, seq)`), so the answer completes
// exactly once whichever way its chunks came. It fetches:
//   - `ack`:     when the subscription is acknowledged (again) while a turn
//                runs: after a reconnect, or a start_ack that came late;
//   - `history`: for a turn read back from the store without its answer;
//   - `gap`:     when a live chunk leaves a hole in `seq` that is still there
//                a moment later; again with backoff while the hole persists;
//   - `stall`:   when a running turn has made no progress for a while (its
//                last chunks may be the ones lost); again with backoff.
// A turn without progress for `giveUpMs` is handed back (`gaveUp`) to be
// marked interrupted; its chunks are still taken if they come after all.
//
// The merging functions are pure; `Recovery` only adds timers and the fetch it
// is given, so both can be tested without a network.

import { followPages, type Page } from './paging';
import { applyChunk, type Chunk, type Turn } from './turns';

export type RecoveryReason = 'ack' | 'history' | 'gap' | 'stall';

/** The highest `seq` the turn has with none missing below it (-1: none yet). */
export function contiguousSeq(turn: Turn): number {
  return turn.nextSeq - 1;
}

/** Whether chunks after a missing `seq` are waiting for it. */
export function hasGap(turn: Turn): boolean {
  return turn.pending.size > 0;
}

/** Whether more chunks of the turn may come: it runs, or was given up on too early. */
export function needsChunks(turn: Turn): boolean {
  return turn.state === 'streaming' || turn.state === 'interrupted';
}

/** What merging a batch of chunks did. */
export interface Merged {
  /** The text the answer grew by. */
  added: string;
  /** Chunks that were new to the turn (repeats and other turns' chunks left out). */
  taken: number;
}

/**
 * Merges chunks fetched with `turnChunks` (or any batch) into `turn`, in `seq`
 * order; repeats of what it has, live or fetched, are dropped.
 */
export function mergeChunks(turn: Turn, chunks: readonly Chunk[]): Merged {
  let added = '';
  let taken = 0;
  for (const chunk of [...chunks].sort((a, b) => a.seq - b.seq)) {
    const isNew =
      needsChunks(turn) && chunk.turnId === turn.turnId && chunk.seq >= turn.nextSeq && !turn.pending.has(chunk.seq);
    added += applyChunk(turn, chunk);
    if (isNew) taken += 1;
  }
  return { added, taken };
}

/** One page of `turnChunks`: the turn's chunks with `seq` above `afterSeq`. */
export type FetchChunkPage = (turnId: string, afterSeq: number, nextToken: string | null) => Promise<Page<Chunk>>;

/** Every stored chunk of the turn after `afterSeq`, following `nextToken`. */
export function fetchChunksAfter(fetchPage: FetchChunkPage, turnId: string, afterSeq: number): Promise<Chunk[]> {
  return followPages(nextToken => fetchPage(turnId, afterSeq, nextToken));
}

/** What `Recovery` needs of the page. */
export interface RecoveryHost {
  /** The page's turn with this id, if it has one. */
  turn(turnId: string): Turn | undefined;
  fetchPage: FetchChunkPage;
  /** Fetched chunks changed the turn: draw it (and finish it if it ended). */
  merged(turn: Turn, added: string): void;
  /** A fetch failed; it is tried again later. */
  failed(turn: Turn, error: unknown): void;
  /** No progress for `giveUpMs`: mark the turn interrupted. */
  gaveUp(turn: Turn): void;
}

export interface RecoveryTiming {
  /** How long a hole in `seq` may last before its chunks are fetched. */
  gapGraceMs: number;
  /** How long a running turn may go without progress before a fetch. */
  stallMs: number;
  /** Pauses before fetching again while a hole persists or a fetch failed. */
  retryMs: readonly number[];
  /** Longest pause between fetches of a stalled turn. */
  maxStallMs: number;
  /** How long without progress before the turn is given up. */
  giveUpMs: number;
}

export const DEFAULT_TIMING: RecoveryTiming = {
  gapGraceMs: 250,
  stallMs: 3000,
  retryMs: [250, 500, 1000, 2000, 4000, 8000],
  maxStallMs: 10_000,
  giveUpMs: 60_000,
};

/** Counts for tests and for `window.chatDebug`. */
export interface RecoveryStats {
  /** `turnChunks` fetches (each following every `nextToken`). */
  fetches: number;
  /** Chunks those fetches returned. */
  chunksFetched: number;
  /** Of those, the ones the page did not have yet. */
  chunksMerged: number;
  /** Fetches by what started them. */
  reasons: Record<RecoveryReason, number>;
}

type Timer = ReturnType<typeof setTimeout>;

interface Watched {
  timer: Timer | null;
  timerReason: RecoveryReason | null;
  fetching: boolean;
  /** Another fetch was asked for while one was under way. */
  again: boolean;
  /** Fetches in a row that left a hole, failed, or brought nothing. */
  retries: number;
  /** `nextSeq` when progress was last noted. */
  seenSeq: number;
  lastProgressAt: number;
}

/** Keeps the page's running turns whole: see the top of this file. */
export class Recovery {
  readonly stats: RecoveryStats = {
    fetches: 0,
    chunksFetched: 0,
    chunksMerged: 0,
    reasons: { ack: 0, history: 0, gap: 0, stall: 0 },
  };
  private readonly watched = new Map<string, Watched>();
  private stopped = false;

  constructor(
    private readonly host: RecoveryHost,
    private readonly timing: RecoveryTiming = DEFAULT_TIMING,
  ) {}

  /** Starts watching a running turn (one just sent, or first seen live). */
  watch(turnId: string): void {
    const turn = this.host.turn(turnId);
    if (this.stopped || !turn || !needsChunks(turn)) return;
    const watched = this.entry(turn);
    if (!watched.fetching && !watched.timer) this.schedule(turnId, watched, this.timing.stallMs, 'stall');
  }

  /** Fetches the turn's missed chunks now (joined with a fetch under way). */
  recover(turnId: string, reason: RecoveryReason): void {
    const turn = this.host.turn(turnId);
    if (this.stopped || !turn || !needsChunks(turn)) return;
    this.stats.reasons[reason] += 1;
    void this.run(turnId, this.entry(turn));
  }

  /** Call after a live chunk of `turn` was applied. */
  afterChunk(turn: Turn): void {
    if (this.stopped) return;
    if (!needsChunks(turn)) {
      this.forget(turn.turnId);
      return;
    }
    const watched = this.entry(turn);
    this.noteProgress(turn, watched);
    if (watched.fetching) return; // the fetch's end decides what comes next
    if (hasGap(turn)) {
      if (watched.timerReason !== 'gap') this.schedule(turn.turnId, watched, this.timing.gapGraceMs, 'gap');
    } else {
      this.schedule(turn.turnId, watched, this.timing.stallMs, 'stall');
    }
  }

  /** Stops watching one turn (it ended, or it is gone). */
  forget(turnId: string): void {
    const watched = this.watched.get(turnId);
    if (watched?.timer) clearTimeout(watched.timer);
    this.watched.delete(turnId);
  }

  /** Stops everything; fetches under way are ignored when they end. */
  stop(): void {
    this.stopped = true;
    for (const id of [...this.watched.keys()]) this.forget(id);
  }

  private entry(turn: Turn): Watched {
    let watched = this.watched.get(turn.turnId);
    if (!watched) {
      watched = {
        timer: null,
        timerReason: null,
        fetching: false,
        again: false,
        retries: 0,
        seenSeq: turn.nextSeq,
        lastProgressAt: Date.now(),
      };
      this.watched.set(turn.turnId, watched);
    }
    return watched;
  }

  private noteProgress(turn: Turn, watched: Watched): boolean {
    if (turn.nextSeq <= watched.seenSeq) return false;
    watched.seenSeq = turn.nextSeq;
    watched.lastProgressAt = Date.now();
    watched.retries = 0;
    return true;
  }

  private schedule(turnId: string, watched: Watched, delay: number, reason: RecoveryReason): void {
    if (watched.timer) clearTimeout(watched.timer);
    watched.timerReason = reason;
    watched.timer = setTimeout(() => this.fire(turnId, watched, reason), delay);
  }

  private clearTimer(watched: Watched): void {
    if (watched.timer) clearTimeout(watched.timer);
    watched.timer = null;
    watched.timerReason = null;
  }

  private fire(turnId: string, watched: Watched, reason: RecoveryReason): void {
    watched.timer = null;
    watched.timerReason = null;
    if (this.stopped || this.watched.get(turnId) !== watched) return;
    const turn = this.host.turn(turnId);
    if (!turn || !needsChunks(turn)) {
      this.forget(turnId);
      return;
    }
    if (turn.state === 'streaming' && Date.now() - watched.lastProgressAt >= this.timing.giveUpMs) {
      this.forget(turnId);
      this.host.gaveUp(turn);
      return;
    }
    this.stats.reasons[reason] += 1;
    void this.run(turnId, watched);
  }

  private async run(turnId: string, watched: Watched): Promise<void> {
    if (watched.fetching) {
      watched.again = true;
      return;
    }
    watched.fetching = true;
    this.clearTimer(watched);
    let failed = false;
    try {
      do {
        watched.again = false;
        const turn = this.host.turn(turnId);
        if (!turn || !needsChunks(turn)) break;
        this.stats.fetches += 1;
        let chunks: Chunk[];
        try {
          chunks = await fetchChunksAfter(this.host.fetchPage, turnId, contiguousSeq(turn));
        } catch (error) {
          failed = true;
          if (!this.stopped && this.watched.get(turnId) === watched) this.host.failed(turn, error);
          break;
        }
        if (this.stopped || this.watched.get(turnId) !== watched) return;
        this.stats.chunksFetched += chunks.length;
        const { added, taken } = mergeChunks(turn, chunks);
        this.stats.chunksMerged += taken;
        if (taken > 0) this.host.merged(turn, added);
      } while (watched.again);
    } finally {
      watched.fetching = false;
    }
    if (this.stopped || this.watched.get(turnId) !== watched) return;
    this.afterFetch(turnId, watched, failed);
  }

  private afterFetch(turnId: string, watched: Watched, failed: boolean): void {
    const turn = this.host.turn(turnId);
    if (!turn || !needsChunks(turn)) {
      this.forget(turnId);
      return;
    }
    const progressed = this.noteProgress(turn, watched);
    if (turn.state === 'interrupted' && !progressed && !failed) {
      // Given up before and still nothing: the next acknowledgement asks again.
      this.forget(turnId);
      return;
    }
    if (failed || hasGap(turn)) {
      const { retryMs } = this.timing;
      const delay = retryMs[Math.min(watched.retries, retryMs.length - 1)] ?? this.timing.stallMs;
      watched.retries += 1;
      this.schedule(turnId, watched, delay, 'gap');
    } else {
      // Whole so far: keep listening, and look again if nothing more comes.
      const delay = progressed
        ? this.timing.stallMs
        : Math.min(this.timing.stallMs * 2 ** watched.retries, this.timing.maxStallMs);
      if (!progressed) watched.retries += 1;
      this.schedule(turnId, watched, delay, 'stall');
    }
  }
}
