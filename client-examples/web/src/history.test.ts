// Place in the data path: AppSync (listMessages) -> **subscriber** (unit tests
// of a stored conversation turned back into turns, `history.ts`, and of
// reading every page, `paging.ts`).
import { describe, expect, it } from 'vitest';

import { isStale, turnsFromMessages } from './history';
import { followPages, type Page } from './paging';
import type { Message } from './store-api';

const usage = { inputTokens: 3, outputTokens: 7, totalTokens: 10 };

function message(turnId: string, role: string, text: string, extra: Partial<Message> = {}): Message {
  return { conversationId: 'c-1', turnId, role, text, createdAt: '2026-11-27T16:54:10.123Z', ...extra };
}

describe('turnsFromMessages', () => {
  it('pairs each prompt with its answer, in the order of the conversation', () => {
    const turns = turnsFromMessages([
      message('t-1', 'user', 'First?'),
      message('t-1', 'assistant', '- a\n- b', { stopReason: 'end_turn', usage }),
      message('t-2', 'user', 'Second?'),
      message('t-2', 'assistant', 'Part', { stopReason: 'cancelled', usage }),
    ]);
    expect(turns.map(t => [t.turn.turnId, t.turn.prompt, t.turn.text, t.turn.state])).toEqual([
      ['t-1', 'First?', '- a\n- b', 'done'],
      ['t-2', 'Second?', 'Part', 'cancelled'],
    ]);
    expect(turns[0]?.turn.usage).toEqual(usage);
    expect(turns[0]?.turn.stopReason).toBe('end_turn');
  });

  it('keeps a prompt without an answer as a turn that may still run', () => {
    const [turn] = turnsFromMessages([message('t-1', 'user', 'Still going?')]);
    expect(turn?.turn.state).toBe('streaming');
    expect(turn?.turn.text).toBe('');
    expect(turn?.turn.nextSeq).toBe(0);
    expect(turn?.startedAt).toBe('2026-11-27T16:54:10.123Z');
  });

  it('shows a failed answer as an error, with its message', () => {
    const error = { errorType: 'Interrupted', message: 'The answer was interrupted.', retryable: true };
    const [turn] = turnsFromMessages([
      message('t-1', 'user', 'Hi'),
      message('t-1', 'assistant', 'Hal', { stopReason: 'error', error }),
    ]);
    expect(turn?.turn.state).toBe('error');
    expect(turn?.turn.error).toEqual({ message: 'The answer was interrupted.', retryable: true });
    expect(turn?.turn.text).toBe('Hal');
  });

  it('keeps an answer whose prompt is missing, and ignores unknown roles', () => {
    const turns = turnsFromMessages([
      message('t-1', 'assistant', 'Orphan', { stopReason: 'end_turn' }),
      message('t-1', 'system', 'ignored'),
    ]);
    expect(turns).toHaveLength(1);
    expect(turns[0]?.turn.prompt).toBeNull();
    expect(turns[0]?.turn.text).toBe('Orphan');
  });
});

describe('isStale', () => {
  const at = Date.parse('2026-11-27T16:54:10.123Z');
  it('says whether a prompt is older than the limit', () => {
    expect(isStale('2026-11-27T16:54:10.123Z', at + 1000, 60_000)).toBe(false);
    expect(isStale('2026-11-27T16:54:10.123Z', at + 61_000, 60_000)).toBe(true);
    expect(isStale(null, at, 0)).toBe(false);
    expect(isStale('not a date', at, 0)).toBe(false);
  });
});

describe('followPages', () => {
  it('reads pages until one has no nextToken', async () => {
    const pages: Record<string, Page<number>> = {
      start: { items: [1, 2], nextToken: 'a' },
      a: { items: [], nextToken: 'b' }, // a page may be empty and still go on
      b: { items: [3], nextToken: null },
    };
    const asked: (string | null)[] = [];
    const items = await followPages(async token => {
      asked.push(token);
      return pages[token ?? 'start'] ?? { items: [], nextToken: null };
    });
    expect(items).toEqual([1, 2, 3]);
    expect(asked).toEqual([null, 'a', 'b']);
  });

  it('stops at a token it saw before, and after the most pages', async () => {
    const looping = await followPages(async () => ({ items: [0], nextToken: 'same' }));
    expect(looping).toEqual([0, 0]);
    let n = 0;
    const endless = await followPages(async () => ({ items: [n], nextToken: String(++n) }), 5);
    expect(endless).toEqual([0, 1, 2, 3, 4]);
  });
});
