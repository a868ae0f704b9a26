// Place in the data path: AppSync (listConversations) -> **subscriber** (unit
// tests of the list's pure steps, `conversation-list.ts`).
import { describe, expect, it } from 'vitest';

import { appendPage, titleOf, upsert, without } from './conversation-list';
import type { Conversation } from './store-api';

function conversation(id: string, updatedAt: string): Conversation {
  return { conversationId: id, title: `Title ${id}`, createdAt: '2026-01-01T00:00:00.000Z', updatedAt };
}

const a = conversation('a', '2026-01-03T00:00:00.000Z');
const b = conversation('b', '2026-01-02T00:00:00.000Z');

describe('the list of conversations', () => {
  it('moves an updated conversation to the top, keeping its title', () => {
    const list = upsert([a, b], { ...conversation('b', '2026-01-04T00:00:00.000Z'), title: 'ignored' });
    expect(list.map(c => [c.conversationId, c.title, c.updatedAt])).toEqual([
      ['b', 'Title b', '2026-01-04T00:00:00.000Z'],
      ['a', 'Title a', '2026-01-03T00:00:00.000Z'],
    ]);
  });

  it('puts a new conversation first, removes one, and appends a page without repeats', () => {
    const c = conversation('c', '2026-01-05T00:00:00.000Z');
    expect(upsert([a, b], c).map(x => x.conversationId)).toEqual(['c', 'a', 'b']);
    expect(without([a, b], 'a')).toEqual([b]);
    expect(appendPage([a], [a, b]).map(x => x.conversationId)).toEqual(['a', 'b']);
  });

  it('titles a conversation as the resolver does', () => {
    expect(titleOf('  What is\n\n Rust? ')).toBe('What is Rust?');
    expect(titleOf('é'.repeat(200))).toBe('é'.repeat(80));
  });
});
