// Place in the data path: AppSync -> **subscriber** (the wiring of the page).
//
// Loads config.json, signs the user in, subscribes to the conversation, and
// connects the composer (Send, Stop) and the turns on screen:
//   chunk from chat.ts -> turns.ts (seq order, repeats dropped) -> view.ts.
// Send is enabled only while the subscription is acknowledged and connected.
// A turn that was streaming when the socket dropped keeps its text; if its
// last chunk has not come 30 s after the page is ready again, it is marked
// interrupted (AppSync does not replay what a subscriber missed).
//
// For tests: window.chatDebug = { chunksReceived, turns() }, where
// chunksReceived counts every onChunk payload this page received.

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
import { ChatConnection, ChatError } from './chat';
import { loadConfig, type AppConfig } from './config';
import { applyChunk, failTurn, newTurn, type Chunk, type Turn } from './turns';
import { TurnsView } from './view';

const INTERRUPTED_AFTER_MS = 30_000;
const CONVERSATION_KEY = 'chat.conversationId';
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
  conversationId: $('conversation-id'),
  problem: $('problem'),
  turns: $('turns'),
  composer: $<HTMLFormElement>('composer'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
  send: $<HTMLButtonElement>('send'),
  stop: $<HTMLButtonElement>('stop'),
  fatal: $('fatal'),
};

const params = new URLSearchParams(window.location.search);
const conversationId = chooseConversationId();
const modelId = params.get('model') || undefined;

const turns = new Map<string, Turn>();
/** Turns this page started, newest last: Stop cancels the newest still streaming. */
const ownTurns: string[] = [];
/** Turns that were streaming when the connection was lost. */
const lostTurns = new Set<string>();
const view = new TurnsView(ui.turns);
let chat: ChatConnection | null = null;
let ready = false;

declare global {
  interface Window {
    chatDebug: { readonly chunksReceived: number; turns: () => unknown[] };
  }
}
window.chatDebug = {
  get chunksReceived() {
    return chat?.payloadsReceived ?? 0;
  },
  turns: () =>
    [...turns.values()].map(t => ({
      turnId: t.turnId,
      prompt: t.prompt,
      state: t.state,
      text: t.text,
      stopReason: t.stopReason,
      usage: t.usage,
      error: t.error,
    })),
};

function chooseConversationId(): string {
  const fromUrl = params.get('conversation');
  const stored = sessionStorage.getItem(CONVERSATION_KEY);
  const id =
    fromUrl && ID_PATTERN.test(fromUrl)
      ? fromUrl
      : stored && ID_PATTERN.test(stored)
        ? stored
        : crypto.randomUUID();
  sessionStorage.setItem(CONVERSATION_KEY, id);
  return id;
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
  chat?.close();
  try {
    await signOutUser(config);
  } finally {
    const url = new URL(window.location.href);
    url.searchParams.delete('user');
    window.location.replace(url);
  }
}

// ---------------------------------------------------------------------------
// Chat

function startChat(username: string): void {
  ui.who.hidden = false;
  ui.whoName.textContent = `Signed in as ${username}`;
  ui.chatView.hidden = false;
  ui.conversationId.textContent = conversationId;
  chat = new ChatConnection(conversationId, {
    chunk: onChunk,
    ready: onReady,
    connectionState: state => {
      ui.connectionState.textContent = state;
    },
    problem: message => {
      ui.problem.textContent = message ?? '';
      ui.problem.hidden = message === null;
    },
  });
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
  chat.start();
}

function onChunk(chunk: Chunk): void {
  if (chunk.conversationId !== conversationId) return;
  let turn = turns.get(chunk.turnId);
  if (!turn) {
    // A turn this page did not start: another tab or device of the same user.
    turn = newTurn(chunk.turnId, null);
    turns.set(turn.turnId, turn);
  }
  const added = applyChunk(turn, chunk);
  view.render(turn, added);
  updateComposer();
}

function onReady(isReady: boolean): void {
  ready = isReady;
  ui.ready.dataset.ready = String(isReady);
  ui.ready.textContent = isReady ? 'Ready' : 'Not subscribed';
  if (!isReady) {
    for (const turn of turns.values()) if (turn.state === 'streaming') lostTurns.add(turn.turnId);
  } else {
    const waiting = [...lostTurns];
    lostTurns.clear();
    if (waiting.length) setTimeout(() => markInterrupted(waiting), INTERRUPTED_AFTER_MS);
  }
  updateComposer();
}

function markInterrupted(turnIds: string[]): void {
  for (const id of turnIds) {
    const turn = turns.get(id);
    if (turn?.state === 'streaming' && !lostTurns.has(id)) {
      failTurn(turn, 'interrupted', 'The rest of the answer was missed while the connection was down.', true);
      view.render(turn);
    }
  }
  updateComposer();
}

async function send(): Promise<void> {
  const prompt = ui.prompt.value.trim();
  if (!chat || !ready || !prompt) return;
  const turnId = crypto.randomUUID();
  const turn = newTurn(turnId, prompt);
  turns.set(turnId, turn);
  ownTurns.push(turnId);
  view.render(turn);
  ui.prompt.value = '';
  updateComposer();
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  try {
    await chat.sendPrompt({
      turnId,
      prompt,
      ...(Number.isFinite(maxTokens) && { maxTokens: Math.min(Math.max(maxTokens, 1), 8192) }),
      ...(modelId && { modelId }),
    });
  } catch (error) {
    const known = error instanceof ChatError;
    failTurn(turn, 'error', `Not sent: ${known ? error.message : 'the prompt could not be sent.'}`, known ? error.retryable : true);
    view.render(turn);
    updateComposer();
  }
}

async function stop(): Promise<void> {
  const turnId = streamingOwnTurn();
  if (!chat || !turnId) return;
  ui.stop.disabled = true;
  try {
    await chat.cancelTurn(turnId);
  } catch (error) {
    ui.problem.hidden = false;
    ui.problem.textContent = `Could not stop the answer: ${(error as Error).message}`;
    updateComposer();
  }
}

function streamingOwnTurn(): string | undefined {
  return ownTurns.findLast(id => turns.get(id)?.state === 'streaming');
}

function updateComposer(): void {
  ui.send.disabled = !ready;
  ui.stop.disabled = !ready || streamingOwnTurn() === undefined;
}

function showFatal(message: string): void {
  ui.fatal.textContent = message;
  ui.fatal.hidden = false;
}

void main();
