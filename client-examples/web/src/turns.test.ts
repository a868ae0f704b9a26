// Place in the data path: AppSync -> **subscriber** (unit tests of the page's
// model of a turn, `turns.ts`).
//
// Chunks in `seq` order, repeats dropped, early chunks held, the end on the
// terminal chunk, the failed states and the words for stop reasons. Run with
// `npm test`; the page's build does not include this file.
import { describe, expect, it } from 'vitest';

import { applyChunk, describeStopReason, failTurn, isEnded, isFinished, newTurn, storedTurn } from './turns';
import type { Chunk, Turn } from './turns';

const usage = { inputTokens: 12, outputTokens: 3, totalTokens: 15 };

function chunk(seq: number, text: string, end: Partial<Chunk> = {}): Chunk {
  return {
    conversationId: 'c-1',
    turnId: 't-1',
    owner: 'alice',
    seq,
    text,
    done: false,
    ...end,
  };
}

/** Applies `chunks` in the given order; returns what each one added. */
function applyAll(turn: Turn, chunks: Chunk[]): string[] {
  return chunks.map((c) => applyChunk(turn, c));
}

describe('applyChunk', () => {
  it('builds the text from chunks that arrive in order', () => {
    const turn = newTurn('t-1', 'hello');
    const added = applyAll(turn, [chunk(0, 'Hel'), chunk(1, 'lo, '), chunk(2, 'world')]);
    expect(added).toEqual(['Hel', 'lo, ', 'world']);
    expect(turn.text).toBe('Hello, world');
    expect(turn.nextSeq).toBe(3);
    expect(turn.state).toBe('streaming');
    expect(isFinished(turn)).toBe(false);
  });

  it('holds chunks that arrive early and applies them in seq order', () => {
    const turn = newTurn('t-1', 'hello');
    expect(applyChunk(turn, chunk(2, 'C'))).toBe('');
    expect(applyChunk(turn, chunk(1, 'B'))).toBe('');
    expect(turn.text).toBe('');
    expect([...turn.pending.keys()].sort()).toEqual([1, 2]);

    expect(applyChunk(turn, chunk(0, 'A'))).toBe('ABC');
    expect(turn.text).toBe('ABC');
    expect(turn.pending.size).toBe(0);
    expect(turn.nextSeq).toBe(3);

    // A later gap holds again, and the text stops at the gap.
    expect(applyChunk(turn, chunk(4, 'E'))).toBe('');
    expect(turn.text).toBe('ABC');
    expect(applyChunk(turn, chunk(3, 'D'))).toBe('DE');
    expect(turn.text).toBe('ABCDE');
  });

  it('drops a repeated seq that is still held', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(1, 'B'));
    expect(applyChunk(turn, chunk(1, 'B'))).toBe('');
    expect(turn.pending.size).toBe(1);
    expect(applyChunk(turn, chunk(0, 'A'))).toBe('AB');
    expect(turn.text).toBe('AB');
  });

  it('drops a repeated seq that was already applied', () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [chunk(0, 'A'), chunk(1, 'B')]);
    expect(applyChunk(turn, chunk(0, 'A'))).toBe('');
    expect(applyChunk(turn, chunk(1, 'B'))).toBe('');
    expect(turn.text).toBe('AB');
    expect(turn.pending.size).toBe(0);
    expect(turn.nextSeq).toBe(2);
  });

  it('ends done on the terminal chunk with its stop reason and usage', () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [
      chunk(0, 'Hi'),
      chunk(1, ' there', { done: true, stopReason: 'end_turn', usage }),
    ]);
    expect(turn.state).toBe('done');
    expect(isFinished(turn)).toBe(true);
    expect(turn.text).toBe('Hi there');
    expect(turn.stopReason).toBe('end_turn');
    expect(turn.usage).toEqual(usage);
    expect(turn.error).toBeNull();
  });

  it('waits for the chunks before an early terminal chunk', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(2, '', { done: true, stopReason: 'end_turn', usage }));
    expect(turn.state).toBe('streaming');
    applyChunk(turn, chunk(0, 'A'));
    expect(turn.state).toBe('streaming');
    applyChunk(turn, chunk(1, 'B'));
    expect(turn.state).toBe('done');
    expect(turn.text).toBe('AB');
  });

  it('ignores chunks after the terminal chunk', () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [chunk(0, 'A'), chunk(1, '', { done: true, stopReason: 'end_turn', usage })]);
    expect(applyChunk(turn, chunk(2, 'late'))).toBe('');
    expect(applyChunk(turn, chunk(1, 'again', { done: true, stopReason: 'max_tokens' }))).toBe('');
    expect(turn.text).toBe('A');
    expect(turn.state).toBe('done');
    expect(turn.stopReason).toBe('end_turn');
    expect(turn.pending.size).toBe(0);
  });

  it('drops held chunks past the terminal chunk', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(2, 'beyond the end'));
    applyChunk(turn, chunk(1, '', { done: true, stopReason: 'end_turn' }));
    applyChunk(turn, chunk(0, 'A'));
    expect(turn.state).toBe('done');
    expect(turn.text).toBe('A');
    expect(turn.pending.size).toBe(0);
  });

  it('ends cancelled on the stop reason `cancelled`', () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [chunk(0, 'Part'), chunk(1, '', { done: true, stopReason: 'cancelled', usage })]);
    expect(turn.state).toBe('cancelled');
    expect(turn.stopReason).toBe('cancelled');
    expect(turn.text).toBe('Part');
    expect(turn.error).toBeNull();
  });

  it('ends in error with the message of a terminal chunk that carries one', () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [
      chunk(0, 'Par'),
      chunk(1, '', {
        done: true,
        stopReason: 'error',
        error: { errorType: 'ThrottlingException', message: 'Too many requests, try again.', retryable: true },
      }),
    ]);
    expect(turn.state).toBe('error');
    expect(turn.error).toEqual({ message: 'Too many requests, try again.', retryable: true });
    expect(turn.stopReason).toBe('error');
    expect(turn.text).toBe('Par');
  });

  it("ends on a retry's Interrupted chunk even when its seq was already seen", () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [chunk(0, 'Par'), chunk(1, 'tial')]);
    // The retry stored only seq 0, so it ends the turn at seq 1.
    const ending = chunk(1, '', {
      done: true,
      stopReason: 'error',
      error: { errorType: 'Interrupted', message: 'The answer was interrupted. Try again.', retryable: true },
    });
    expect(applyChunk(turn, ending)).toBe('');
    expect(turn.state).toBe('error');
    expect(turn.text).toBe('Partial');
    expect(turn.error?.retryable).toBe(true);
    expect(applyChunk(turn, chunk(2, 'late'))).toBe('');
  });

  it('ends in error with a general message on the stop reason `error` alone', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(0, '', { done: true, stopReason: 'error' }));
    expect(turn.state).toBe('error');
    expect(turn.error).toEqual({ message: 'The answer could not be completed.', retryable: true });
  });
});

describe('applyChunk across turns', () => {
  it('ignores a chunk of another turn with the same seq', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(0, 'A'));
    expect(applyChunk(turn, { ...chunk(1, 'other'), turnId: 't-2' })).toBe('');
    expect(turn.nextSeq).toBe(1);
    expect(turn.pending.size).toBe(0);
  });

  it('streams an interrupted turn again when its next chunk comes', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(0, 'A'));
    failTurn(turn, 'interrupted', 'lost', true);
    applyChunk(turn, chunk(2, 'C')); // held: still interrupted
    expect(turn.state).toBe('interrupted');
    applyChunk(turn, chunk(1, 'B'));
    expect(turn.state).toBe('streaming');
    expect(turn.error).toBeNull();
    expect(turn.text).toBe('ABC');
  });
});

describe('storedTurn', () => {
  it('is a finished turn when the store has its answer', () => {
    const turn = storedTurn('t-1', 'hello', { text: 'Hi', stopReason: 'max_tokens', usage });
    expect(turn.state).toBe('done');
    expect(isEnded(turn)).toBe(true);
    expect(turn.text).toBe('Hi');
    expect(turn.stopReason).toBe('max_tokens');
    expect(turn.usage).toEqual(usage);
    // A live repeat of its chunks changes nothing.
    expect(applyChunk(turn, chunk(0, 'Hi'))).toBe('');
    expect(turn.text).toBe('Hi');
  });

  it('is a running turn without an answer', () => {
    const turn = storedTurn('t-1', 'hello', null);
    expect(turn.state).toBe('streaming');
    expect(applyChunk(turn, chunk(0, 'A'))).toBe('A');
  });
});

describe('failTurn', () => {
  it('marks a streaming turn interrupted and drops what it held', () => {
    const turn = newTurn('t-1', 'hello');
    applyAll(turn, [chunk(0, 'A'), chunk(2, 'C')]);
    failTurn(turn, 'interrupted', 'interrupted (connection lost)', true);
    expect(turn.state).toBe('interrupted');
    expect(isFinished(turn)).toBe(true);
    expect(turn.error).toEqual({ message: 'interrupted (connection lost)', retryable: true });
    expect(turn.pending.size).toBe(0);
    expect(turn.text).toBe('A');
  });

  it('still lets an interrupted turn finish when its chunks come after all', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(0, 'A'));
    failTurn(turn, 'interrupted', 'interrupted (connection lost)', true);
    applyChunk(turn, chunk(1, 'B', { done: true, stopReason: 'end_turn', usage }));
    expect(turn.state).toBe('done');
    expect(turn.text).toBe('AB');
  });

  it('turns an interrupted turn into an error', () => {
    const turn = newTurn('t-1', 'hello');
    failTurn(turn, 'interrupted', 'interrupted (connection lost)', true);
    failTurn(turn, 'error', 'refused', false);
    expect(turn.state).toBe('error');
    expect(turn.error).toEqual({ message: 'refused', retryable: false });
  });

  it('leaves a finished turn as it is', () => {
    const turn = newTurn('t-1', 'hello');
    applyChunk(turn, chunk(0, 'A', { done: true, stopReason: 'end_turn', usage }));
    failTurn(turn, 'interrupted', 'interrupted (connection lost)', true);
    expect(turn.state).toBe('done');
    expect(turn.error).toBeNull();
  });
});

describe('describeStopReason', () => {
  it.each([
    [null, ''],
    ['end_turn', 'Finished'],
    ['max_tokens', 'Stopped at the token limit'],
    ['cancelled', 'Stopped'],
    ['deadline', 'Took too long and was cut off'],
    ['guardrail_intervened', 'Blocked by a content filter'],
    ['content_filtered', 'Blocked by a content filter'],
    ['error', 'Failed'],
    ['something_new', 'something_new'],
  ])('describes %s as %j', (reason, words) => {
    expect(describeStopReason(reason)).toBe(words);
  });
});
