// Place in the data path: AppSync (listConversations) -> **subscriber** (the
// list of the user's conversations beside the chat).
//
// The user's conversations, most recently updated first, as `listConversations`
// gives them, with the open one marked; a button to open each, one to delete
// each, "New conversation" and "Show more" (the next page). Titles are the
// start of each conversation's first prompt and are shown as plain text.
// The list itself is kept by the caller (main.ts); `upsert` and `without` are
// the pure steps it uses between two reads of the API.

import type { Conversation } from './store-api';

export interface ConversationListActions {
  open(conversationId: string): void;
  remove(conversationId: string): void;
  startNew(): void;
  more(): void;
}

/** `list` with `conversation` first (new, or updated just now). */
export function upsert(list: readonly Conversation[], conversation: Conversation): Conversation[] {
  const old = list.find(c => c.conversationId === conversation.conversationId);
  const merged = old ? { ...old, updatedAt: conversation.updatedAt } : conversation;
  return [merged, ...list.filter(c => c.conversationId !== conversation.conversationId)];
}

/** `list` without one conversation. */
export function without(list: readonly Conversation[], conversationId: string): Conversation[] {
  return list.filter(c => c.conversationId !== conversationId);
}

/** `items` added after `list`, skipping conversations it has already. */
export function appendPage(list: readonly Conversation[], items: readonly Conversation[]): Conversation[] {
  const known = new Set(list.map(c => c.conversationId));
  return [...list, ...items.filter(c => !known.has(c.conversationId))];
}

/** A conversation's title as the resolver makes it: the prompt's first 80 characters, whitespace collapsed. */
export function titleOf(prompt: string): string {
  return [...prompt.split(/\s+/).filter(Boolean).join(' ')].slice(0, 80).join('');
}

export type ListState = 'loading' | 'loaded' | 'error';

export class ConversationListView {
  private readonly list: HTMLUListElement;
  private readonly status: HTMLElement;
  private readonly moreButton: HTMLButtonElement;
  /** Conversations whose deletion is under way. */
  private readonly deleting = new Set<string>();
  private busyId: string | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly actions: ConversationListActions,
  ) {
    this.list = root.querySelector('ul') ?? root.appendChild(document.createElement('ul'));
    this.status = root.querySelector<HTMLElement>('[data-testid="conversations-status"]') ?? document.createElement('p');
    this.moreButton =
      root.querySelector<HTMLButtonElement>('[data-testid="more-conversations"]') ?? document.createElement('button');
    root.querySelector('[data-testid="new-conversation"]')?.addEventListener('click', () => actions.startNew());
    this.moreButton.addEventListener('click', () => actions.more());
  }

  /** Shows `items` with `currentId` marked; `hasMore` shows "Show more". */
  show(items: readonly Conversation[], currentId: string, hasMore: boolean): void {
    this.list.replaceChildren(...items.map(c => this.item(c, c.conversationId === currentId)));
    this.moreButton.hidden = !hasMore;
  }

  setState(state: ListState, message = ''): void {
    this.root.dataset.state = state;
    this.status.textContent = message;
    this.status.hidden = message === '';
  }

  /** The open conversation has a turn streaming: it cannot be deleted now. */
  setBusy(conversationId: string | null): void {
    this.busyId = conversationId;
    for (const button of this.list.querySelectorAll<HTMLButtonElement>('[data-testid="delete-conversation"]')) {
      const id = button.closest<HTMLElement>('[data-conversation-id]')?.dataset.conversationId ?? '';
      button.disabled = id === conversationId || this.deleting.has(id);
    }
  }

  setDeleting(conversationId: string, deleting: boolean): void {
    if (deleting) this.deleting.add(conversationId);
    else this.deleting.delete(conversationId);
    this.setBusy(this.busyId);
  }

  private item(conversation: Conversation, current: boolean): HTMLLIElement {
    const li = document.createElement('li');
    li.dataset.testid = 'conversation';
    li.dataset.conversationId = conversation.conversationId;
    li.dataset.current = String(current);
    if (current) li.setAttribute('aria-current', 'true');

    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'open';
    open.dataset.testid = 'open-conversation';
    const title = document.createElement('span');
    title.className = 'title';
    title.dataset.testid = 'conversation-title';
    title.textContent = conversation.title || 'Untitled';
    const when = document.createElement('time');
    when.dateTime = conversation.updatedAt;
    when.textContent = formatTime(conversation.updatedAt);
    open.append(title, when);
    open.addEventListener('click', () => this.actions.open(conversation.conversationId));

    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'delete';
    remove.dataset.testid = 'delete-conversation';
    remove.title = 'Delete this conversation';
    remove.setAttribute('aria-label', `Delete "${conversation.title || 'Untitled'}"`);
    remove.textContent = '✕';
    remove.disabled = conversation.conversationId === this.busyId || this.deleting.has(conversation.conversationId);
    remove.addEventListener('click', () => this.actions.remove(conversation.conversationId));

    li.append(open, remove);
    return li;
  }
}

function formatTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}
