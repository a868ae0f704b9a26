// Drives the web example (client-examples/web) in headless Chromium, as a user
// would: sign in, wait for the subscription, send, watch the answer stream in.
// Place in the data path: AppSync -> **subscriber** (a browser on the page).
//
// Run by a Rust test that installs the pinned `playwright-core` next to this
// file, builds the page and starts the devstack serving the page and the API
// over HTTPS (self-signed certificate). Environment:
//   PAGE_URL        the page, e.g. https://127.0.0.1:PORT/
//   CHROMIUM        the Chromium executable
//   SCREENSHOT_DIR  where screenshots go
//   MAX_TOKENS      scenario `stop`: the max-tokens input (default 400)
//
// Usage: node browser.mjs <scenario>, scenario one of
//   stream     alice sends a prompt; the answer must grow in at least 3 visible
//              steps, each a prefix of the final text; a second turn must
//              stay on screen with the first; screenshot finished-answer.png
//   stop       alice sends, clicks Stop once text shows; the turn ends `cancelled`
//   isolation  alice and bob on one conversation id; alice's turn finishes and
//              bob's page receives no chunk and shows no turn
//   reconnect  alice ready; prints {"event":"waiting","for":"drop"} and waits for
//              the line `dropped` on stdin (the test closes the real-time
//              sockets); the page must become ready again and finish a turn
//
// Output: one JSON object a line on stdout, each with an `event` field; the
// last is {"event":"end"} (exit 0) or {"event":"failed","reason":...} (exit 1).
// The page's console and diagnostics go to stderr.

import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { chromium } from 'playwright-core';

const OVERALL_TIMEOUT_MS = 90_000;
const STEP_TIMEOUT_MS = 30_000;
const SAMPLE_EVERY_MS = 30;

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function log(...parts) {
  process.stderr.write(`${parts.join(' ')}\n`);
}

function env(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`browser.mjs: ${name} is not set`);
  }
  return value;
}

class Failure extends Error {}

function check(condition, reason) {
  if (!condition) throw new Failure(reason);
}

const T = {
  ready: '[data-testid="ready"][data-ready="true"]',
  send: '[data-testid="send"]',
  stop: '[data-testid="stop"]',
  prompt: '[data-testid="prompt"]',
  maxTokens: '[data-testid="max-tokens"]',
  turn: '[data-testid="turns"] [data-testid="turn"]',
};

// ---------------------------------------------------------------------------
// The page

// Runs in every page before its scripts: keeps the history of the
// `connection-state` text and of `data-ready`, so a short state is not missed.
function recordHistory() {
  window.__history = { connection: [], ready: [] };
  const watch = (selector, read, list) => {
    const el = document.querySelector(selector);
    if (!el) return;
    const record = () => {
      const value = read(el);
      if (list[list.length - 1] !== value) list.push(value);
    };
    record();
    new MutationObserver(record).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
  };
  document.addEventListener('DOMContentLoaded', () => {
    watch('[data-testid="connection-state"]', el => el.textContent, window.__history.connection);
    watch('[data-testid="ready"]', el => el.dataset.ready, window.__history.ready);
  });
}

async function openChat(browser, user, conversationId) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 800 } });
  await context.addInitScript(recordHistory);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('console', message => log(`[${user}] console.${message.type()}: ${message.text()}`));
  page.on('pageerror', error => log(`[${user}] page error: ${error.message}`));
  page.on('requestfailed', request => log(`[${user}] request failed: ${request.url()} ${request.failure()?.errorText}`));
  const url = new URL(env('PAGE_URL'));
  url.searchParams.set('user', user);
  url.searchParams.set('conversation', conversationId);
  log(`[${user}] opening ${url.href}`);
  await page.goto(url.href);
  await untilReady(page);
  emit('ready', { user });
  return page;
}

async function untilReady(page) {
  await page.waitForSelector(T.ready, { state: 'attached' });
  await page.waitForSelector(`${T.send}:not([disabled])`, { state: 'attached' });
}

/** Types a prompt, clicks Send and returns the new turn's id. */
async function sendPrompt(page, prompt, maxTokens) {
  const before = await page.locator(T.turn).count();
  await page.fill(T.prompt, prompt);
  if (maxTokens !== undefined) await page.fill(T.maxTokens, String(maxTokens));
  await page.click(T.send);
  await page.waitForFunction(
    ([selector, count]) => document.querySelectorAll(selector).length > count,
    [T.turn, before],
  );
  return page.locator(T.turn).last().getAttribute('data-turn-id');
}

function turnSelector(turnId) {
  return `[data-testid="turn"][data-turn-id="${turnId}"]`;
}

async function readTurn(page, turnId) {
  return page.$eval(turnSelector(turnId), el => {
    const part = id => el.querySelector(`[data-testid="${id}"]`);
    const usage = part('usage');
    const error = part('error');
    return {
      turnId: el.dataset.turnId,
      state: el.dataset.state,
      prompt: part('turn-prompt').textContent,
      text: part('answer').textContent,
      stopReason: el.dataset.stopReason || null,
      stopReasonText: part('stop-reason').textContent || null,
      usage: usage.hidden
        ? null
        : {
            inputTokens: Number(usage.dataset.inputTokens),
            outputTokens: Number(usage.dataset.outputTokens),
            totalTokens: Number(usage.dataset.totalTokens),
          },
      error: error.hidden ? null : error.textContent,
    };
  });
}

async function untilFinished(page, turnId) {
  await page.waitForSelector(`${turnSelector(turnId)}:not([data-state="streaming"])`, { state: 'attached' });
  return readTurn(page, turnId);
}

function emitTurn(turn) {
  emit('turn', { ...turn, length: turn.text.length });
}

async function screenshot(page, name) {
  const path = join(env('SCREENSHOT_DIR'), name);
  await page.screenshot({ path, fullPage: true });
  emit('screenshot', { path });
}

// ---------------------------------------------------------------------------
// Scenarios

async function stream(browser) {
  const page = await openChat(browser, 'alice', `web-${randomUUID()}`);
  const turnId = await sendPrompt(page, 'Tell me a short story about a lighthouse keeper.');
  // Sampled inside the page, every ~30 ms, until the turn is no longer streaming.
  const samples = await page.evaluate(
    ([selector, every, limit]) =>
      new Promise((resolve, reject) => {
        const texts = [];
        const started = Date.now();
        const timer = setInterval(() => {
          const el = document.querySelector(selector);
          const text = el?.querySelector('[data-testid="answer"]')?.textContent ?? '';
          if (el?.dataset.state === 'streaming') {
            if (texts[texts.length - 1] !== text) texts.push(text);
          } else {
            clearInterval(timer);
            resolve(texts);
          }
          if (Date.now() - started > limit) {
            clearInterval(timer);
            reject(new Error('the answer did not finish in time'));
          }
        }, every);
      }),
    [turnSelector(turnId), SAMPLE_EVERY_MS, STEP_TIMEOUT_MS],
  );
  const turn = await readTurn(page, turnId);
  const lengths = samples.map(text => text.length);
  emit('samples', { lengths });
  emitTurn(turn);
  check(turn.state === 'done', `the turn ended ${turn.state}, not done`);
  check(turn.text.length > 0, 'the finished answer is empty');
  const growing = lengths.filter(n => n > 0);
  check(growing.length >= 3, `the answer showed ${growing.length} non-empty lengths while streaming, not at least 3`);
  check(
    lengths.every((n, i) => i === 0 || n > lengths[i - 1]),
    `the streaming lengths do not grow: ${lengths.join(',')}`,
  );
  check(
    samples.every(text => turn.text.startsWith(text)),
    'a streamed sample is not a prefix of the final answer',
  );

  const secondId = await sendPrompt(page, 'And one more sentence, please.');
  const second = await untilFinished(page, secondId);
  check(second.state === 'done', `the second turn ended ${second.state}, not done`);
  const ids = await page.$$eval(T.turn, els => els.map(el => el.dataset.turnId));
  emit('turns', { count: ids.length, turnIds: ids });
  check(ids.length === 2 && ids[0] === turnId && ids[1] === secondId, 'the two turns are not both on screen, in order');
  const first = await readTurn(page, turnId);
  check(first.text === turn.text, 'the first answer changed after the second turn');
  await screenshot(page, 'finished-answer.png');
}

async function stop(browser) {
  const maxTokens = Number(env('MAX_TOKENS', '400'));
  const page = await openChat(browser, 'alice', `web-${randomUUID()}`);
  const turnId = await sendPrompt(page, 'Write a long essay about the sea.', maxTokens);
  await page.waitForFunction(
    selector => (document.querySelector(selector)?.querySelector('[data-testid="answer"]')?.textContent ?? '').length > 0,
    turnSelector(turnId),
  );
  await page.waitForSelector(`${T.stop}:not([disabled])`, { state: 'attached' });
  await page.click(T.stop);
  emit('stopClicked', { turnId });
  const turn = await untilFinished(page, turnId);
  emitTurn(turn);
  check(turn.state === 'cancelled', `the turn ended ${turn.state}, not cancelled`);
  check(turn.stopReason === 'cancelled', `the stop reason is ${turn.stopReason}, not cancelled`);
  check(turn.stopReasonText === 'Stopped', `the turn shows "${turn.stopReasonText}", not "Stopped"`);
  check(turn.text.length > 0, 'the stopped answer is empty');
  check(await page.isDisabled(T.stop), 'Stop is still enabled after the turn ended');
  await screenshot(page, 'stopped-answer.png');
}

async function isolation(browser) {
  const conversationId = `web-${randomUUID()}`;
  const alice = await openChat(browser, 'alice', conversationId);
  const bob = await openChat(browser, 'bob', conversationId);
  const turnId = await sendPrompt(alice, 'Hello from alice.');
  const turn = await untilFinished(alice, turnId);
  await new Promise(resolve => setTimeout(resolve, 1000));
  emitTurn(turn);
  const aliceChunks = await alice.evaluate(() => window.chatDebug.chunksReceived);
  const bobChunks = await bob.evaluate(() => window.chatDebug.chunksReceived);
  const bobTurns = await bob.locator(T.turn).count();
  emit('alice', { chunksReceived: aliceChunks });
  emit('bob', { chunksReceived: bobChunks, turns: bobTurns });
  check(turn.state === 'done', `alice's turn ended ${turn.state}, not done`);
  check(aliceChunks > 0, 'alice received no chunk');
  check(bobChunks === 0, `bob received ${bobChunks} chunks of alice's turn`);
  check(bobTurns === 0, `bob shows ${bobTurns} turns`);
}

async function reconnect(browser) {
  const page = await openChat(browser, 'alice', `web-${randomUUID()}`);
  const readyMark = await page.evaluate(() => window.__history.ready.length);
  emit('waiting', { for: 'drop' });
  await lineOnStdin('dropped');
  log('stdin: dropped');
  // The page must notice the drop (not ready) and then be ready again.
  await page.waitForFunction(mark => window.__history.ready.slice(mark).includes('false'), readyMark);
  emit('notReady');
  await untilReady(page);
  emit('readyAgain');
  const turnId = await sendPrompt(page, 'Are you still there?');
  const turn = await untilFinished(page, turnId);
  const states = await page.evaluate(() => window.__history.connection);
  emit('connectionStates', { states });
  emitTurn(turn);
  check(turn.state === 'done', `the turn after the reconnect ended ${turn.state}, not done`);
  const afterFirst = states.slice(states.indexOf('Connected') + 1);
  check(afterFirst.some(s => s !== 'Connected'), 'the connection state never left Connected');
  check(states[states.length - 1] === 'Connected', `the last connection state is ${states[states.length - 1]}`);
}

function lineOnStdin(expected) {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: process.stdin });
    lines.on('line', line => {
      if (line.trim() === expected) {
        resolve();
        lines.close();
      }
    });
    lines.on('close', () => reject(new Failure(`stdin closed before the line "${expected}"`)));
  });
}

// ---------------------------------------------------------------------------

const scenarios = { stream, stop, isolation, reconnect };
const name = process.argv[2];
if (!scenarios[name]) {
  emit('failed', { reason: `unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}` });
  process.exit(1);
}

let browser;
const overall = setTimeout(() => {
  emit('failed', { reason: `scenario ${name} did not finish within ${OVERALL_TIMEOUT_MS / 1000} s` });
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

let code = 0;
let shots = 0;
try {
  browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  await scenarios[name](browser);
  emit('end');
} catch (error) {
  code = 1;
  log(String(error?.stack ?? error));
  for (const context of browser?.contexts() ?? []) {
    for (const page of context.pages()) {
      shots += 1;
      await screenshot(page, `failed-${name}-${shots}.png`).catch(() => {});
    }
  }
  emit('failed', { reason: error instanceof Failure ? error.message : String(error?.message ?? error) });
} finally {
  clearTimeout(overall);
  await browser?.close().catch(() => {});
}
process.exit(code);
