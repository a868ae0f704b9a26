// Place in the data path: AppSync (turnChunks) -> **subscriber** (unit tests
// of catching a turn up, `recovery.ts`).
//
// Merging fetched and live chunks by seq without repeats, following
// nextToken, and when `Recovery` fetches: after a start_ack, a lasting gap, a
// stall; again while a gap persists; giving up; the answer ending once.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { Page } from './paging';
import {
  DEFAULT_TIMING,
  Recovery,
  contiguousSeq,
  fetchChunksAfter,
  hasGap,
  mergeChunks,
  needsChunks,
  type FetchChunkPage,
  type RecoveryHost,
} from './recovery';
import { applyChunk, failTurn, isEnded, newTurn, type Chunk, type Turn } from './turns';

const usage = { inputTokens: 5, outputTokens: 4, totalTokens: 9 };

function chunk(seq: number, text: string, end: Partial<Chunk> = {}): Chunk {
  return { conversationId: 'c-1', turnId: 't-1', owner: 'alice', seq, text, done: false, ...end };
}

const WORDS = ['Hel', 'lo', ', ', 'wor', 'ld', '!'];
/** The whole stored turn: WORDS as seq 0..5, then the terminal chunk 6. */
const STORED: Chunk[] = [
  ...WORDS.map((w, i) => chunk(i, w)),
  chunk(WORDS.length, '', { done: true, stopReason: 'end_turn', usage }),
];
const WHOLE = WORDS.join('');

describe('mergeChunks', () => {
  it('merges fetched chunks with live ones by seq, each once', () => {
    const turn = newTurn('t-1', 'hi');
    applyChunk(turn, chunk(0, 'Hel'));
    applyChunk(turn, chunk(4, 'ld')); // live, after a gap
    expect(hasGap(turn)).toBe(true);
    expect(contiguousSeq(turn)).toBe(0);

    // turnChunks(afterSeq: 0) returns 1.. including the held 4, out of order here.
    const merged = mergeChunks(turn, [STORED[3], STORED[1], STORED[4], STORED[2], STORED[5], STORED[6]]);
    expect(merged.added).toBe('lo, world!');
    expect(merged.taken).toBe(5); // 1, 2, 3, 5, 6; 4 was held already
    expect(turn.text).toBe(WHOLE);
    expect(turn.state).toBe('done');
    expect(hasGap(turn)).toBe(false);
  });

  it('drops a whole batch of repeats, and chunks of another turn', () => {
    const turn = newTurn('t-1', 'hi');
    mergeChunks(turn, STORED.slice(0, 3));
    const again = mergeChunks(turn, [...STORED.slice(0, 3), { ...chunk(3, 'other'), turnId: 't-2' }]);
    expect(again).toEqual({ added: '', taken: 0 });
    expect(turn.text).toBe('Hello, ');
  });

  it('ends the turn once, whichever way the terminal chunk came', () => {
    const turn = newTurn('t-1', 'hi');
    mergeChunks(turn, STORED);
    expect(turn.state).toBe('done');
    // The same terminal chunk arriving live afterwards changes nothing.
    expect(applyChunk(turn, STORED[6])).toBe('');
    expect(mergeChunks(turn, STORED)).toEqual({ added: '', taken: 0 });
    expect(turn.text).toBe(WHOLE);
    expect(needsChunks(turn)).toBe(false);
  });

  it('lets an interrupted turn take its chunks after all', () => {
    const turn = newTurn('t-1', 'hi');
    applyChunk(turn, STORED[0]);
    failTurn(turn, 'interrupted', 'lost', true);
    expect(needsChunks(turn)).toBe(true);
    mergeChunks(turn, STORED.slice(1, 3));
    expect(turn.state).toBe('streaming');
    expect(turn.error).toBeNull();
    mergeChunks(turn, STORED);
    expect(turn.state).toBe('done');
    expect(turn.text).toBe(WHOLE);
  });
});

/** A `turnChunks` stand-in over `stored`, `pageSize` chunks a page. */
function pager(stored: () => Chunk[], pageSize = 2) {
  const calls: { afterSeq: number; nextToken: string | null }[] = [];
  const fetchPage: FetchChunkPage = async (_turnId, afterSeq, nextToken) => {
    calls.push({ afterSeq, nextToken });
    const after = stored().filter(c => c.seq > afterSeq);
    const start = nextToken === null ? 0 : Number(nextToken);
    const items = after.slice(start, start + pageSize);
    const next = start + pageSize < after.length ? String(start + pageSize) : null;
    const page: Page<Chunk> = { items, nextToken: next };
    return page;
  };
  return { fetchPage, calls };
}

describe('fetchChunksAfter', () => {
  it('follows nextToken to the last page', async () => {
    const { fetchPage, calls } = pager(() => STORED, 3);
    const chunks = await fetchChunksAfter(fetchPage, 't-1', 1);
    expect(chunks.map(c => c.seq)).toEqual([2, 3, 4, 5, 6]);
    expect(calls).toEqual([
      { afterSeq: 1, nextToken: null },
      { afterSeq: 1, nextToken: '3' },
    ]);
  });
});

describe('Recovery', () => {
  let turn: Turn;
  let stored: Chunk[];
  let ended: number;
  let gaveUp: number;
  let failures: number;

  beforeEach(() => {
    vi.useFakeTimers();
    turn = newTurn('t-1', 'hi');
    stored = [];
    ended = 0;
    gaveUp = 0;
    failures = 0;
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  function start(fetchPage?: FetchChunkPage) {
    const paged = pager(() => stored);
    let wasEnded = false;
    const host: RecoveryHost = {
      turn: id => (id === turn.turnId ? turn : undefined),
      fetchPage: fetchPage ?? paged.fetchPage,
      merged: t => {
        if (isEnded(t) && !wasEnded) {
          wasEnded = true;
          ended += 1;
        }
      },
      failed: () => {
        failures += 1;
      },
      gaveUp: t => {
        gaveUp += 1;
        failTurn(t, 'interrupted', 'lost', true);
      },
    };
    return { recovery: new Recovery(host), calls: paged.calls };
  }

  /** A live chunk, as conversation.ts hands it on. */
  function live(recovery: Recovery, c: Chunk): void {
    applyChunk(turn, c);
    recovery.afterChunk(turn);
  }

  it('after a late start_ack fetches what was published before it', async () => {
    const { recovery, calls } = start();
    recovery.watch('t-1');
    // Chunks 0..2 were published before the subscription was acknowledged.
    stored = STORED.slice(0, 3);
    recovery.recover('t-1', 'ack');
    await vi.advanceTimersByTimeAsync(0);
    expect(calls[0]).toEqual({ afterSeq: -1, nextToken: null });
    expect(turn.text).toBe('Hello, ');
    // The rest comes live, one repeat included.
    for (const c of [STORED[2], ...STORED.slice(3)]) live(recovery, c);
    expect(turn.text).toBe(WHOLE);
    expect(turn.state).toBe('done');
    expect(recovery.stats.chunksMerged).toBe(3);
    expect(recovery.stats.reasons.ack).toBe(1);
  });

  it('after a reconnect asks only for the chunks after the highest contiguous seq', async () => {
    const { recovery, calls } = start();
    live(recovery, STORED[0]);
    live(recovery, STORED[1]);
    // The socket was down while 2..4 were published; they are stored.
    stored = STORED.slice(0, 5);
    recovery.recover('t-1', 'ack');
    // While the fetch runs, 5 arrives live on the new subscription.
    live(recovery, STORED[5]);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls[0]?.afterSeq).toBe(1);
    expect(turn.text).toBe(WHOLE);
    expect(hasGap(turn)).toBe(false);
    stored = STORED;
    live(recovery, STORED[6]);
    expect(turn.state).toBe('done');
    expect(turn.text).toBe(WHOLE);
  });

  it('fetches a gap that lasts, and again while it persists', async () => {
    const { recovery, calls } = start();
    live(recovery, STORED[0]);
    live(recovery, STORED[2]); // 1 is missing
    expect(calls.length).toBe(0);
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.gapGraceMs);
    // Not stored yet (the resolver writes chunks up to ~100 ms late).
    expect(calls.length).toBe(1);
    expect(calls[0]?.afterSeq).toBe(0);
    expect(hasGap(turn)).toBe(true);
    stored = STORED.slice(0, 3);
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.retryMs[0] ?? 0);
    expect(calls.length).toBe(2);
    expect(hasGap(turn)).toBe(false);
    expect(turn.text).toBe('Hello, ');
    expect(turn.state).toBe('streaming'); // keeps listening
  });

  it('does not fetch when a gap closes by itself', async () => {
    const { recovery, calls } = start();
    live(recovery, STORED[0]);
    live(recovery, STORED[2]);
    live(recovery, STORED[1]); // arrived late, not lost
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.gapGraceMs + 10);
    expect(calls.length).toBe(0);
    expect(turn.text).toBe('Hello, ');
  });

  it('fetches a stalled turn, which finds the terminal chunk that was lost', async () => {
    const { recovery, calls } = start();
    recovery.watch('t-1');
    for (const c of STORED.slice(0, 6)) live(recovery, c);
    stored = STORED; // the terminal chunk was published but never delivered
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.stallMs - 1);
    expect(calls.length).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls[0]?.afterSeq).toBe(5);
    expect(turn.state).toBe('done');
    expect(ended).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls.length).toBe(1); // an ended turn is not watched any more
  });

  it('keeps polling a turn with no progress more slowly, then gives it up', async () => {
    const { recovery, calls } = start();
    recovery.watch('t-1');
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.giveUpMs - 1);
    const polls = calls.length;
    expect(polls).toBeGreaterThan(2);
    expect(polls).toBeLessThan(DEFAULT_TIMING.giveUpMs / DEFAULT_TIMING.stallMs);
    expect(gaveUp).toBe(0);
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.maxStallMs);
    expect(gaveUp).toBe(1);
    expect(turn.state).toBe('interrupted');
    // A later start_ack asks once more; the chunks are there now.
    stored = STORED;
    recovery.recover('t-1', 'ack');
    await vi.advanceTimersByTimeAsync(0);
    expect(turn.state).toBe('done');
    expect(turn.text).toBe(WHOLE);
  });

  it('tries a failed fetch again', async () => {
    let fail = true;
    const paged = pager(() => STORED);
    const { recovery } = start(async (...args) => {
      if (fail) throw new Error('network down');
      return paged.fetchPage(...args);
    });
    recovery.recover('t-1', 'ack');
    await vi.advanceTimersByTimeAsync(0);
    expect(failures).toBe(1);
    fail = false;
    await vi.advanceTimersByTimeAsync(DEFAULT_TIMING.retryMs[0] ?? 0);
    expect(turn.state).toBe('done');
    expect(turn.text).toBe(WHOLE);
  });

  it('joins a fetch asked for while one runs into one more fetch', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>(resolve => {
      release = resolve;
    });
    const afterSeqs: number[] = [];
    const { recovery } = start(async (_turnId, afterSeq) => {
      afterSeqs.push(afterSeq);
      await gate;
      // The first fetch finds 0 and 1 stored; by the second, all of it is.
      const available = afterSeqs.length === 1 ? STORED.slice(0, 2) : STORED;
      return { items: available.filter(c => c.seq > afterSeq), nextToken: null };
    });
    recovery.recover('t-1', 'ack');
    recovery.recover('t-1', 'history');
    recovery.recover('t-1', 'ack');
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(afterSeqs).toEqual([-1, 1]);
    expect(turn.text).toBe(WHOLE);
    expect(ended).toBe(1);
  });

  it('ignores what a fetch brings after stop()', async () => {
    const { recovery } = start();
    stored = STORED;
    recovery.recover('t-1', 'ack');
    recovery.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(turn.text).toBe('');
  });
});
