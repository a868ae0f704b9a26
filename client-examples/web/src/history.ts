// Place in the data path: AppSync (listMessages) -> **subscriber** (a stored
// conversation turned back into turns).
//
// `listMessages` gives each turn's prompt (`role` `user`), then, once the turn
// ended, its answer (`role` `assistant`) with its stop reason, usage or error.
// Here they become the page's turns, in the order of the conversation: a turn
// with both is finished; a prompt without an answer is a turn that may still
// be running (the page then fetches its chunks with `turnChunks`). Pure.

import type { Message } from './store-api';
import { storedTurn, type Turn } from './turns';

/** A turn read back from the store, and when its prompt was written. */
export interface HistoryTurn {
  turn: Turn;
  /** `createdAt` of its first message (ISO-8601), or null. */
  startedAt: string | null;
}

/** The turns of `messages` (oldest first), in the order their first message came. */
export function turnsFromMessages(messages: readonly Message[]): HistoryTurn[] {
  const byTurn = new Map<string, { prompt: Message | null; answer: Message | null; startedAt: string | null }>();
  for (const message of messages) {
    let entry = byTurn.get(message.turnId);
    if (!entry) {
      entry = { prompt: null, answer: null, startedAt: message.createdAt ?? null };
      byTurn.set(message.turnId, entry);
    }
    if (message.role === 'user') entry.prompt ??= message;
    else if (message.role === 'assistant') entry.answer ??= message;
  }
  return [...byTurn].map(([turnId, { prompt, answer, startedAt }]) => ({
    turn: storedTurn(turnId, prompt?.text ?? null, answer),
    startedAt,
  }));
}

/**
 * Whether a turn without a stored answer is too old to be running still: the
 * resolver ends every turn within minutes, so its answer was lost.
 */
export function isStale(startedAt: string | null, now: number, staleAfterMs: number): boolean {
  if (!startedAt) return false;
  const started = Date.parse(startedAt);
  return Number.isFinite(started) && now - started > staleAfterMs;
}
