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
//   TRANSPORT       the page's transport switch (?transport=): appsync (the
//                   default), function-url or websocket; the page must show it
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
//   markdown   alice sends a prompt starting with `/markdown` (the scripted
//              model then answers with its Markdown passage: a list, an
//              ordered list and a fenced code block) holding inline Markdown;
//              the answer must show <ul>, <ol>, <pre><code>, <strong>, inline
//              <code> and a safe link; screenshot markdown-answer.png
//   hostile    alice sends prompts carrying HTML with handlers and
//              `javascript:` links, echoed into the answers; nothing becomes
//              an element, no link is active, clicking runs nothing and
//              window.__pwned stays undefined, live and again after a reload
//   recover    alice sends a prompt (the test paces the model slowly); once
//              text shows, prints {"event":"waiting","for":"drop"} and waits
//              for `dropped` (the test cuts every real-time socket mid-answer);
//              the page must finish the answer exactly once, filling what the
//              socket missed with turnChunks; then a second answer is cut by a
//              reload and must be resumed and finished exactly once
//   history    alice has a turn, reloads: the history shows it; a follow-up
//              continues the conversation (its input includes the first
//              turn); a new conversation, the list (newest first), opening
//              the first again, the back button, and deleting one
//
// Output: one JSON object a line on stdout, each with an `event` field; the
// last is {"event":"end"} (exit 0) or {"event":"failed","reason":...} (exit 1).
// A `turn` event's `text` is the answer's Markdown source as the page holds it
// (`data-text`); `rendered` is what the page shows of it (textContent).
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
  historyLoaded: '[data-testid="turns"][data-history="loaded"]',
  conversationId: '[data-testid="conversation-id"]',
  conversations: '[data-testid="conversations"]',
  conversation: '[data-testid="conversations"] [data-testid="conversation"]',
  newConversation: '[data-testid="new-conversation"]',
};

/** The scripted model echoes this many characters of the prompt, whitespace collapsed. */
const ECHO_CHARS = 80;

/** The whitespace-collapsed text, as Markdown's rendering keeps it. */
function collapse(text) {
  return text.split(/\s+/).filter(Boolean).join(' ');
}

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
  const transport = env('TRANSPORT', 'appsync');
  url.searchParams.set('transport', transport);
  log(`[${user}] opening ${url.href}`);
  await page.goto(url.href);
  await untilReady(page);
  const shown = await page.inputValue('[data-testid="transport"]');
  check(shown === transport, `the page uses ${shown}, not ${transport}`);
  await untilHistory(page);
  emit('ready', { user });
  return page;
}

async function untilReady(page) {
  await page.waitForSelector(T.ready, { state: 'attached' });
  await page.waitForSelector(`${T.send}:not([disabled])`, { state: 'attached' });
}

/** Waits until the open conversation's stored messages are shown. */
async function untilHistory(page) {
  await page.waitForSelector('[data-testid="turns"]:not([data-history="loading"])', { state: 'attached' });
  const state = await page.getAttribute('[data-testid="turns"]', 'data-history');
  check(state === 'loaded', `the conversation's history did not load (${state})`);
}

function conversationSelector(conversationId) {
  return `${T.conversation}[data-conversation-id="${conversationId}"]`;
}

/** The open conversation's id, as the page shows it. */
async function openConversationId(page) {
  return page.getAttribute(T.conversationId, 'data-conversation-id');
}

/** Waits until `conversationId` is open with its history shown. */
async function untilOpen(page, conversationId) {
  await page.waitForFunction(
    ([selector, id]) => document.querySelector(selector)?.dataset.conversationId === id,
    [T.conversationId, conversationId],
  );
  await untilHistory(page);
}

/** The ids of the listed conversations, top first, once the list has loaded. */
async function listedConversations(page) {
  await page.waitForSelector(`${T.conversations}[data-state="loaded"]`, { state: 'attached' });
  return page.$$eval(T.conversation, els => els.map(el => el.dataset.conversationId));
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

/** Every turn on screen, in order. */
async function readTurns(page) {
  const ids = await page.$$eval(T.turn, els => els.map(el => el.dataset.turnId));
  return Promise.all(ids.map(id => readTurn(page, id)));
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
      text: part('answer').dataset.text,
      rendered: part('answer').textContent,
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
  // Sampled inside the page, every ~30 ms, until the turn is no longer
  // streaming: the Markdown source the answer shows (set with each drawing).
  const samples = await page.evaluate(
    ([selector, every, limit]) =>
      new Promise((resolve, reject) => {
        const texts = [];
        const started = Date.now();
        const timer = setInterval(() => {
          const el = document.querySelector(selector);
          const text = el?.querySelector('[data-testid="answer"]')?.dataset.text ?? '';
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
  check(collapse(turn.rendered) === collapse(turn.text), 'the answer on screen is not its text');

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

async function markdown(browser) {
  const page = await openChat(browser, 'alice', `web-${randomUUID()}`);
  const prompt = '/markdown Show **bold**, `inline code` and a [link](https://example.com/docs).';
  check(collapse(prompt).length <= ECHO_CHARS, 'the prompt is longer than the echo');
  const turnId = await sendPrompt(page, prompt);
  const turn = await untilFinished(page, turnId);
  emitTurn(turn);
  const shape = await page.$eval(turnSelector(turnId), el => {
    const answer = el.querySelector('[data-testid="answer"]');
    const all = selector => [...answer.querySelectorAll(selector)];
    const link = answer.querySelector('a');
    return {
      listItems: all('ul > li').length,
      orderedItems: all('ol > li').length,
      codeBlocks: all('pre > code').map(code => code.textContent),
      strong: all('strong').map(e => e.textContent),
      inlineCode: all('p > code').map(e => e.textContent),
      link: link && { href: link.getAttribute('href'), target: link.getAttribute('target'), rel: link.getAttribute('rel') },
    };
  });
  emit('markdown', shape);
  check(turn.state === 'done', `the turn ended ${turn.state}, not done`);
  check(shape.strong.includes('bold'), 'the echoed **bold** is not <strong>');
  check(shape.inlineCode.includes('inline code'), 'the echoed `inline code` is not <code>');
  check(
    shape.link?.href === 'https://example.com/docs' && shape.link.target === '_blank' && /noopener/.test(shape.link.rel ?? ''),
    `the echoed link is not a safe link: ${JSON.stringify(shape.link)}`,
  );
  check(
    shape.listItems >= 2,
    `no <ul> with items in the answer (${shape.listItems}): does the scripted model answer /markdown with its Markdown passage?`,
  );
  check(shape.orderedItems >= 2, `no <ol> with items in the answer (${shape.orderedItems})`);
  check(shape.codeBlocks.length >= 1 && shape.codeBlocks.every(c => c.trim() !== ''), 'no <pre><code> block in the answer');
  check(!turn.rendered.includes('```') && !turn.rendered.includes('**'), 'Markdown markers show on screen');
  await screenshot(page, 'markdown-answer.png');
}

// HTML and links a model might be made to write; each handler would set
// window.__pwned. Each prompt is echoed whole (at most 80 characters).
const HOSTILE_PROMPTS = [
  '<img src=x onerror="window.__pwned=1"> [x](javascript:window.__pwned=2)',
  '<a href="javascript:window.__pwned=3">y</a> <svg onload="window.__pwned=4">',
  '<script>window.__pwned=5</script> <iframe src="javascript:window.__pwned=6">',
];

// Runs in the page: what could be active of the answers, and the canary.
function activeContent() {
  const answers = [...document.querySelectorAll('[data-testid="answer"]')];
  const inAnswers = answers.flatMap(a => [...a.querySelectorAll('*')]);
  const allowed = new Set(['P', 'BR', 'HR', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'STRONG', 'EM', 'S', 'CODE', 'PRE',
    'BLOCKQUOTE', 'UL', 'OL', 'LI', 'A', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD']);
  return {
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    embedded: document.querySelectorAll('img, svg, iframe, object, embed, frame').length,
    inlineScripts: [...document.scripts].filter(s => !s.src).length,
    handlers: [...document.querySelectorAll('*')].flatMap(el =>
      el.getAttributeNames().filter(n => n.toLowerCase().startsWith('on')).map(n => `${el.tagName}[${n}]`),
    ),
    unexpectedTags: [...new Set(inAnswers.map(el => el.tagName).filter(t => !allowed.has(t)))],
    links: inAnswers.filter(el => el.tagName === 'A').map(a => a.getAttribute('href')),
  };
}

function checkInert(found, when) {
  emit('active', { when, ...found });
  check(found.pwned === null, `${when}: window.__pwned is ${found.pwned}: a handler ran`);
  check(found.embedded === 0, `${when}: ${found.embedded} img/svg/iframe elements on the page`);
  check(found.inlineScripts === 0, `${when}: ${found.inlineScripts} inline scripts on the page`);
  check(found.handlers.length === 0, `${when}: event handler attributes: ${found.handlers.join(', ')}`);
  check(found.unexpectedTags.length === 0, `${when}: unexpected elements in answers: ${found.unexpectedTags.join(', ')}`);
  check(found.links.length === 0, `${when}: links in the hostile answers: ${found.links.join(', ')}`);
}

/** Clicks every answer where its text (and a would-be link) is. */
async function clickAnswers(page) {
  for (const answer of await page.locator('[data-testid="answer"]').all()) {
    await answer.click({ position: { x: 5, y: 5 } });
    for (const text of ['[x](javascript', '>y</a>']) {
      const spot = answer.getByText(text, { exact: false });
      if (await spot.count()) await spot.first().click();
    }
  }
  await page.waitForTimeout(500);
}

async function hostile(browser) {
  const conversationId = `web-${randomUUID()}`;
  const page = await openChat(browser, 'alice', conversationId);
  const turns = [];
  for (const prompt of HOSTILE_PROMPTS) {
    check(collapse(prompt).length <= ECHO_CHARS, `the prompt is longer than the echo: ${prompt}`);
    const turnId = await sendPrompt(page, prompt);
    const turn = await untilFinished(page, turnId);
    emitTurn(turn);
    check(turn.state === 'done', `the turn ended ${turn.state}, not done`);
    turns.push(turn);
  }
  await clickAnswers(page);
  checkInert(await page.evaluate(activeContent), 'live');
  for (const [i, turn] of turns.entries()) {
    const prompt = HOSTILE_PROMPTS[i];
    check(turn.prompt === prompt, 'the prompt is not shown as its text');
    check(turn.rendered.includes(prompt), `the answer does not show the hostile text as text: ${turn.rendered.slice(0, 200)}`);
  }
  await screenshot(page, 'hostile-answer.png');

  // The same answers read back from the store.
  await page.reload();
  await untilReady(page);
  await untilHistory(page);
  const shown = await readTurns(page);
  check(shown.length === turns.length, `${shown.length} turns after the reload, not ${turns.length}`);
  for (const [i, turn] of shown.entries()) {
    check(turn.text === turns[i].text, `turn ${i} reads back differently`);
    check(turn.rendered.includes(HOSTILE_PROMPTS[i]), `turn ${i} does not show the hostile text as text after the reload`);
  }
  const title = await page.textContent(`${conversationSelector(conversationId)} [data-testid="conversation-title"]`);
  check(title?.startsWith('<img src=x'), `the conversation's title is not shown as text: ${title}`);
  await clickAnswers(page);
  checkInert(await page.evaluate(activeContent), 'history');
}

async function recover(browser) {
  const page = await openChat(browser, 'alice', `web-${randomUUID()}`);
  const turnId = await sendPrompt(page, 'Tell me about streaming while the network drops.');
  await page.waitForFunction(
    selector => (document.querySelector(selector)?.querySelector('[data-testid="answer"]')?.dataset.text ?? '').length > 0,
    turnSelector(turnId),
  );
  const before = await readTurn(page, turnId);
  check(before.state === 'streaming', `the turn ended (${before.state}) before the drop: pace the model slower`);
  const readyMark = await page.evaluate(() => window.__history.ready.length);
  emit('waiting', { for: 'drop', shown: before.text.length });
  await lineOnStdin('dropped');
  log('stdin: dropped');
  await page.waitForFunction(mark => window.__history.ready.slice(mark).includes('false'), readyMark);
  emit('notReady');
  const turn = await untilFinished(page, turnId);
  await untilReady(page);
  emit('readyAgain');
  const recovery = await page.evaluate(() => window.chatDebug.recovery);
  emit('recovery', recovery);
  emitTurn(turn);
  check(turn.state === 'done', `the turn cut by the drop ended ${turn.state}, not done`);
  check(turn.text.startsWith(before.text) && turn.text.length > before.text.length, 'the answer did not go on from what was shown');
  check(collapse(turn.rendered) === collapse(turn.text), 'the answer on screen is not its text (a repeated or missing fragment)');
  check(recovery.chunksMerged > 0, 'no chunk came from turnChunks: the drop lost nothing?');
  const turns = await page.locator(T.turn).count();
  check(turns === 1, `${turns} turns on screen, not 1`);
  await screenshot(page, 'recovered-answer.png');

  // A reload mid-answer: the page reads the turn back (its prompt from
  // listMessages, what was streamed so far from turnChunks) and goes on live.
  const resumedId = await sendPrompt(page, 'And now reload the page halfway.');
  await page.waitForFunction(
    selector => (document.querySelector(selector)?.querySelector('[data-testid="answer"]')?.dataset.text ?? '').length > 40,
    turnSelector(resumedId),
  );
  await page.reload();
  await untilReady(page);
  await untilHistory(page);
  const resumedEarly = await readTurn(page, resumedId);
  check(resumedEarly.state === 'streaming', `the reloaded turn is ${resumedEarly.state}: pace the model slower`);
  const resumed = await untilFinished(page, resumedId);
  emitTurn(resumed);
  check(resumed.state === 'done', `the turn resumed after the reload ended ${resumed.state}, not done`);
  check(collapse(resumed.rendered) === collapse(resumed.text), 'the resumed answer on screen is not its text');
  const all = await readTurns(page);
  check(all.map(t => t.turnId).join() === [turnId, resumedId].join(), 'the reloaded conversation does not show both turns in order');
}

const FIRST = 'What is a delta?';
const SECOND = 'And a chunk?';
const THIRD = 'Something else entirely.';

async function history(browser) {
  const conversationId = `web-${randomUUID()}`;
  const page = await openChat(browser, 'alice', conversationId);
  const firstId = await sendPrompt(page, FIRST);
  const first = await untilFinished(page, firstId);
  check(first.state === 'done', `the first turn ended ${first.state}, not done`);
  emitTurn(first);
  await page.waitForSelector(conversationSelector(conversationId), { state: 'attached' });

  // A reload shows the conversation again, from the store.
  await page.reload();
  await untilReady(page);
  await untilHistory(page);
  check((await openConversationId(page)) === conversationId, 'the reload opened another conversation');
  check(new URL(page.url()).hash === `#conversation=${conversationId}`, `the URL does not name the conversation: ${page.url()}`);
  const reloaded = await readTurns(page);
  emit('reloaded', { turns: reloaded });
  check(reloaded.length === 1, `${reloaded.length} turns after the reload, not 1`);
  const [again] = reloaded;
  check(again.turnId === firstId && again.prompt === FIRST, 'the reloaded turn is not the first one');
  check(again.text === first.text && again.state === 'done', 'the reloaded answer differs from the streamed one');
  check(collapse(again.rendered) === collapse(first.text), 'the reloaded answer on screen is not its text');
  check(
    (await page.getAttribute(conversationSelector(conversationId), 'data-current')) === 'true',
    'the list does not mark the open conversation',
  );

  // A follow-up continues the conversation: the model gets the first turn too.
  const secondId = await sendPrompt(page, SECOND);
  const second = await untilFinished(page, secondId);
  emitTurn(second);
  check(second.state === 'done', `the follow-up ended ${second.state}, not done`);
  check(
    second.usage.inputTokens > first.usage.inputTokens + first.usage.outputTokens,
    `the follow-up's input (${second.usage.inputTokens} tokens) does not hold the first turn`,
  );

  // A new conversation, listed first once it has a turn.
  await page.click(T.newConversation);
  await page.waitForFunction(
    ([selector, id]) => document.querySelector(selector)?.dataset.conversationId !== id,
    [T.conversationId, conversationId],
  );
  const otherId = await openConversationId(page);
  await untilOpen(page, otherId);
  await untilReady(page);
  check((await page.locator(T.turn).count()) === 0, 'a new conversation shows turns');
  const thirdId = await sendPrompt(page, THIRD);
  const third = await untilFinished(page, thirdId);
  check(third.state === 'done', `the new conversation's turn ended ${third.state}`);
  check(third.usage.inputTokens < second.usage.inputTokens, 'the new conversation carried the old one as history');
  await page.waitForFunction(
    ([selector, a, b]) => {
      const ids = [...document.querySelectorAll(selector)].map(el => el.dataset.conversationId);
      return ids.indexOf(a) === 0 && ids.includes(b);
    },
    [T.conversation, otherId, conversationId],
  );
  emit('listed', { ids: await listedConversations(page) });

  // Open the first conversation from the list: both its turns, in order.
  await page.click(`${conversationSelector(conversationId)} [data-testid="open-conversation"]`);
  await untilOpen(page, conversationId);
  await page.waitForFunction(([selector, n]) => document.querySelectorAll(selector).length === n, [T.turn, 2]);
  const opened = await readTurns(page);
  check(
    opened.map(t => t.turnId).join() === [firstId, secondId].join() &&
      opened[0].text === first.text &&
      opened[1].text === second.text,
    'the first conversation does not show its two turns in order',
  );

  // Back goes to the conversation opened before; delete it (it is open).
  await page.goBack();
  await untilOpen(page, otherId);
  check((await readTurns(page)).map(t => t.turnId).join() === thirdId, 'back did not show the new conversation');
  page.once('dialog', dialog => void dialog.accept());
  await page.click(`${conversationSelector(otherId)} [data-testid="delete-conversation"]`);
  await page.waitForSelector(conversationSelector(otherId), { state: 'detached' });
  const afterDelete = await openConversationId(page);
  check(afterDelete !== otherId, 'the deleted conversation is still open');

  // The deletion is in the store: a reload lists only the first conversation.
  await page.reload();
  await untilReady(page);
  await untilHistory(page);
  const ids = await listedConversations(page);
  emit('conversations', { ids });
  check(ids.includes(conversationId) && !ids.includes(otherId), `the list after deleting is ${ids.join(', ')}`);
  await screenshot(page, 'history.png');
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

const scenarios = { stream, stop, isolation, reconnect, markdown, hostile, recover, history };
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
