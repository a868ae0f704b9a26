// Place in the data path: AppSync -> **subscriber** (the wiring of the page).
//
// Loads config.json, signs the user in, lists their conversations and opens
// one, and connects the composer (Send, Stop):
//   onChunk (chat.ts) + turnChunks (recovery.ts) + listMessages (history.ts)
//     -> turns.ts (seq order, repeats dropped) -> view.ts (Markdown, sanitized)
// all for the open conversation (conversation.ts). The open conversation's id
// is in the URL hash (`#conversation=ID`), so a reload shows it again and the
// back button returns to the one before; a follow-up prompt goes to the same
// conversationId. Send is enabled only while the subscription is acknowledged
// and connected.
//
// For tests: window.chatDebug = { chunksReceived, conversationId, recovery,
// turns() }, where chunksReceived counts every onChunk payload this page
// received and recovery counts the turnChunks fetches (recovery.ts).

import './style.css';
import {
  configureAmplify,
  confirmNewPassword,
  currentUsername,
  describeAuthError,
  signInCognito,
  signInDevstack,
  signOutUser,
} from './auth';
import { loadConfig, type AppConfig } from './config';
import { OpenConversation } from './conversation';
import { ConversationListView, appendPage, titleOf, upsert, without } from './conversation-list';
import { describeError } from './graphql';
import type { RecoveryStats } from './recovery';
import { deleteConversation, listConversations, type Conversation } from './store-api';
import { connectFor, type Connect, type TransportName } from './transports';
import { TurnsView } from './view';

const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  connectionState: $('connection-state'),
  ready: $('ready'),
  who: $('who'),
  whoName: $('who-name'),
  signOut: $<HTMLButtonElement>('sign-out'),
  signInView: $('sign-in-view'),
  signInForm: $<HTMLFormElement>('sign-in-form'),
  username: $<HTMLInputElement>('username'),
  passwordRow: $('password-row'),
  password: $<HTMLInputElement>('password'),
  newPasswordRow: $('new-password-row'),
  newPassword: $<HTMLInputElement>('new-password'),
  signIn: $<HTMLButtonElement>('sign-in'),
  signInError: $('sign-in-error'),
  chatView: $('chat-view'),
  conversations: $('conversations'),
  conversationId: $('conversation-id'),
  problem: $('problem'),
  turns: $('turns'),
  composer: $<HTMLFormElement>('composer'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
  send: $<HTMLButtonElement>('send'),
  stop: $<HTMLButtonElement>('stop'),
  fatal: $('fatal'),
  transport: $<HTMLSelectElement>('transport'),
};

const params = new URLSearchParams(window.location.search);
const modelId = params.get('model') || undefined;
/** How prompts and answers travel (the switch; AppSync unless config.json offers the others). */
let connect: Connect | undefined;

const view = new TurnsView(ui.turns);
let current: OpenConversation | null = null;
/** onChunk payloads of the conversations opened before the current one. */
let earlierPayloads = 0;

/** The user's conversations as last listed, newest first, and the next page's token. */
let conversations: Conversation[] = [];
let nextListToken: string | null = null;
/** Reads of the list so far: only the latest one's answer is shown. */
let listReads = 0;
/** Whether pages after the first were read ("Show more"). */
let morePagesShown = false;
/** Conversations this page started that the API may not list yet. */
const startedHere = new Map<string, Conversation>();
const list = new ConversationListView(ui.conversations, {
  open: id => openConversation(id, 'push'),
  remove: id => void removeConversation(id),
  startNew: () => openConversation(crypto.randomUUID(), 'push'),
  more: () => void loadMoreConversations(),
});

declare global {
  interface Window {
    chatDebug: {
      readonly chunksReceived: number;
      readonly conversationId: string | null;
      readonly recovery: RecoveryStats | null;
      turns: () => unknown[];
    };
  }
}
window.chatDebug = {
  get chunksReceived() {
    return earlierPayloads + (current?.payloadsReceived ?? 0);
  },
  get conversationId() {
    return current?.conversationId ?? null;
  },
  get recovery() {
    return current?.recoveryStats ?? null;
  },
  turns: () =>
    (current?.shownTurns() ?? []).map(t => ({
      turnId: t.turnId,
      prompt: t.prompt,
      state: t.state,
      text: t.text,
      stopReason: t.stopReason,
      usage: t.usage,
      error: t.error,
    })),
};

/** The conversation named by the URL: `#conversation=ID`, or `?conversation=ID`. */
function conversationInUrl(): string | null {
  const fromHash = new URLSearchParams(window.location.hash.slice(1)).get('conversation');
  if (fromHash && ID_PATTERN.test(fromHash)) return fromHash;
  const fromQuery = new URLSearchParams(window.location.search).get('conversation');
  return fromQuery && ID_PATTERN.test(fromQuery) ? fromQuery : null;
}

/** Puts the conversation id in the URL hash (a new history entry, or in place). */
function showInUrl(conversationId: string, mode: 'push' | 'replace'): void {
  const url = new URL(window.location.href);
  url.searchParams.delete('conversation');
  url.hash = `conversation=${encodeURIComponent(conversationId)}`;
  if (url.href === window.location.href) return;
  if (mode === 'push') window.history.pushState(null, '', url);
  else window.history.replaceState(null, '', url);
}

// ---------------------------------------------------------------------------
// Sign-in

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = await loadConfig();
    configureAmplify(config);
  } catch (error) {
    showFatal((error as Error).message);
    return;
  }
  ui.signOut.addEventListener('click', () => void signOutAndReload(config));
  setUpTransport(config);
  if (config.auth === 'devstack') {
    ui.passwordRow.hidden = true;
    const user = params.get('user');
    if (user) {
      ui.username.value = user;
      await trySignIn(config);
      return;
    }
  } else {
    const username = await currentUsername(config);
    if (username) {
      startChat(username);
      return;
    }
  }
  showSignIn(config);
}

/** The transport switch: the transports config.json offers, `?transport=` choosing. */
function setUpTransport(config: AppConfig): void {
  const wanted = (params.get('transport') ?? 'appsync') as TransportName;
  for (const option of Array.from(ui.transport.options)) {
    option.hidden = option.value !== 'appsync' && !connectFor(option.value as TransportName, config);
  }
  connect = connectFor(wanted, config) ?? undefined;
  ui.transport.value = connect ? wanted : 'appsync';
  ui.transport.addEventListener('change', () => {
    const url = new URL(window.location.href);
    url.searchParams.set('transport', ui.transport.value);
    window.location.assign(url.href);
  });
}

function showSignIn(config: AppConfig): void {
  ui.signInView.hidden = false;
  ui.username.focus();
  ui.signInForm.addEventListener('submit', event => {
    event.preventDefault();
    void trySignIn(config);
  });
}

async function trySignIn(config: AppConfig): Promise<void> {
  const username = ui.username.value.trim();
  if (!username) return;
  ui.signIn.disabled = true;
  ui.signInError.textContent = '';
  try {
    if (config.auth === 'devstack') {
      await signInDevstack(config, username);
    } else if (!ui.newPasswordRow.hidden) {
      await confirmNewPassword(ui.newPassword.value);
    } else if ((await signInCognito(username, ui.password.value)) === 'new-password-required') {
      ui.newPasswordRow.hidden = false;
      ui.signInError.textContent = 'Choose a new password to finish signing in.';
      ui.newPassword.focus();
      return;
    }
    ui.signInView.hidden = true;
    startChat(username);
  } catch (error) {
    ui.signInView.hidden = false;
    ui.signInError.textContent = describeAuthError(error);
  } finally {
    ui.signIn.disabled = false;
  }
}

async function signOutAndReload(config: AppConfig): Promise<void> {
  current?.close();
  try {
    await signOutUser(config);
  } finally {
    const url = new URL(window.location.href);
    url.searchParams.delete('user');
    url.searchParams.delete('conversation');
    url.hash = '';
    window.location.replace(url);
  }
}

// ---------------------------------------------------------------------------
// Chat

function startChat(username: string): void {
  ui.who.hidden = false;
  ui.whoName.textContent = `Signed in as ${username}`;
  ui.chatView.hidden = false;
  ui.composer.addEventListener('submit', event => {
    event.preventDefault();
    void send();
  });
  ui.prompt.addEventListener('keydown', event => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void send();
    }
  });
  ui.stop.addEventListener('click', () => void stop());
  // Back and forward between conversations, or a hash typed in.
  window.addEventListener('popstate', followUrl);
  window.addEventListener('hashchange', followUrl);
  openConversation(conversationInUrl() ?? crypto.randomUUID(), 'replace');
  void refreshConversations();
}

function followUrl(): void {
  const id = conversationInUrl();
  if (id && id !== current?.conversationId) openConversation(id, null);
}

/** Shows `conversationId`: its history, then its live chunks. */
function openConversation(conversationId: string, url: 'push' | 'replace' | null): void {
  if (url) showInUrl(conversationId, url);
  if (current?.conversationId === conversationId) return;
  if (current) {
    earlierPayloads += current.payloadsReceived;
    current.close();
  }
  onReady(false);
  setProblem(null);
  ui.conversationId.textContent = conversationId;
  ui.conversationId.dataset.conversationId = conversationId;
  const session: OpenConversation = new OpenConversation(conversationId, view, {
    ready: ready => {
      if (current === session) onReady(ready);
    },
    connectionState: state => {
      if (current === session) ui.connectionState.textContent = state;
    },
    problem: message => {
      if (current === session) setProblem(message);
    },
    history: (state, message) => {
      if (current !== session) return;
      ui.turns.dataset.history = state;
      if (message) setProblem(message);
    },
    turnEnded: () => {
      if (current === session) void refreshConversations();
    },
    changed: () => {
      if (current === session) updateComposer();
    },
  }, connect);
  current = session;
  session.start();
  showConversations();
  updateComposer();
}

function onReady(isReady: boolean): void {
  ui.ready.dataset.ready = String(isReady);
  ui.ready.textContent = isReady ? 'Ready' : 'Not subscribed';
  updateComposer();
}

async function send(): Promise<void> {
  const prompt = ui.prompt.value.trim();
  if (!current?.ready || !prompt) return;
  ui.prompt.value = '';
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  const known = conversations.find(c => c.conversationId === current?.conversationId);
  const now = new Date().toISOString();
  const entry: Conversation = known ?? {
    conversationId: current.conversationId,
    title: titleOf(prompt),
    createdAt: now,
    updatedAt: now,
  };
  if (!known) startedHere.set(entry.conversationId, entry);
  conversations = upsert(conversations, { ...entry, updatedAt: now });
  showConversations();
  await current.send(prompt, {
    ...(Number.isFinite(maxTokens) && { maxTokens: Math.min(Math.max(maxTokens, 1), 8192) }),
    ...(modelId && { modelId }),
  });
}

async function stop(): Promise<void> {
  if (!current) return;
  ui.stop.disabled = true;
  try {
    await current.stop();
  } catch (error) {
    setProblem(`Could not stop the answer: ${describeError(error)}`);
    updateComposer();
  }
}

function updateComposer(): void {
  const ready = current?.ready ?? false;
  ui.send.disabled = !ready;
  ui.stop.disabled = !ready || current?.streamingOwnTurn() === undefined;
  list.setBusy(current?.hasStreamingTurn() ? current.conversationId : null);
}

function setProblem(message: string | null): void {
  ui.problem.textContent = message ?? '';
  ui.problem.hidden = message === null;
}

// ---------------------------------------------------------------------------
// The list of conversations

function showConversations(): void {
  list.show(conversations, current?.conversationId ?? '', nextListToken !== null);
}

/** Reads the first page of the user's conversations again. */
async function refreshConversations(): Promise<void> {
  const reading = ++listReads;
  list.setState('loading');
  try {
    const page = await listConversations(null);
    if (reading !== listReads) return; // a later read is under way
    let items = page.items;
    for (const [id, started] of startedHere) {
      if (items.some(c => c.conversationId === id)) startedHere.delete(id);
      else items = upsert(items, started);
    }
    if (morePagesShown) {
      // Keep the later pages the user asked for, after the fresh first one.
      conversations = appendPage(items, conversations);
    } else {
      conversations = items;
      nextListToken = page.nextToken;
    }
    list.setState('loaded');
  } catch (error) {
    if (reading !== listReads) return;
    list.setState('error', `Your conversations could not be listed: ${describeError(error)}`);
  }
  showConversations();
}

async function loadMoreConversations(): Promise<void> {
  if (nextListToken === null) return;
  listReads += 1; // a refresh under way would drop this page
  list.setState('loading');
  try {
    const page = await listConversations(nextListToken);
    conversations = appendPage(conversations, page.items);
    nextListToken = page.nextToken;
    morePagesShown = true;
    list.setState('loaded');
  } catch (error) {
    list.setState('error', `More conversations could not be listed: ${describeError(error)}`);
  }
  showConversations();
}

async function removeConversation(conversationId: string): Promise<void> {
  const title = conversations.find(c => c.conversationId === conversationId)?.title || 'this conversation';
  if (!window.confirm(`Delete "${title}" and all its messages?`)) return;
  list.setDeleting(conversationId, true);
  try {
    await deleteConversation(conversationId);
    startedHere.delete(conversationId);
    conversations = without(conversations, conversationId);
    if (current?.conversationId === conversationId) openConversation(crypto.randomUUID(), 'push');
    showConversations();
  } catch (error) {
    list.setState('error', `Could not delete the conversation: ${describeError(error)}`);
  } finally {
    list.setDeleting(conversationId, false);
  }
}

function showFatal(message: string): void {
  ui.fatal.textContent = message;
  ui.fatal.hidden = false;
}

void main();
