// Place in the data path: AppSync -> **subscriber** (what the user sees of a turn).
//
// Draws the turns of the open conversation: one element per turn, the prompt
// (as plain text), the answer rendered as Markdown (markdown.ts: sanitized,
// the model's HTML inert) and drawn again as text streams in, at most every
// RENDER_EVERY_MS while it streams and at once when the turn ends, a blinking
// caret while it streams, and when it ends the stop reason, token usage or a
// readable error. Knows nothing of AppSync; it renders what turns.ts decided.
//
// For tests, the answer element carries the Markdown source it shows in
// `data-text` (its textContent is the rendered text).

import { renderMarkdown } from './markdown';
import { describeStopReason, type Turn } from './turns';

/** Longest wait between two drawings of a streaming answer. */
const RENDER_EVERY_MS = 50;

interface TurnElements {
  root: HTMLElement;
  prompt: HTMLElement;
  answer: HTMLElement;
  stopReason: HTMLElement;
  usage: HTMLElement;
  error: HTMLElement;
  /** The source last drawn into `answer`. */
  shown: string;
  lastDrawAt: number;
  timer: ReturnType<typeof setTimeout> | null;
  /** The turn to draw when `timer` fires. */
  turn: Turn;
}

export class TurnsView {
  private readonly elements = new Map<string, TurnElements>();

  constructor(private readonly container: HTMLElement) {}

  /** Removes every turn (another conversation is opened). */
  clear(): void {
    for (const el of this.elements.values()) if (el.timer) clearTimeout(el.timer);
    this.elements.clear();
    this.container.replaceChildren();
  }

  /** Shows the turns in this order, drawing each, removing the others. */
  showAll(turns: readonly Turn[]): void {
    const keep = new Set(turns.map(t => t.turnId));
    for (const [id, el] of this.elements) {
      if (keep.has(id)) continue;
      if (el.timer) clearTimeout(el.timer);
      el.root.remove();
      this.elements.delete(id);
    }
    for (const turn of turns) {
      this.render(turn);
      const el = this.elements.get(turn.turnId);
      if (el) this.container.append(el.root); // moves it to its place in the order
    }
  }

  /** Shows `turn` as it is now. */
  render(turn: Turn): void {
    const stick = this.nearBottom();
    const el = this.elements.get(turn.turnId) ?? this.create(turn);
    el.turn = turn;
    el.prompt.textContent = turn.prompt ?? '(sent from another window)';
    el.prompt.classList.toggle('elsewhere', turn.prompt === null);
    if (turn.text !== el.shown) {
      const wait = el.lastDrawAt + RENDER_EVERY_MS - Date.now();
      if (turn.state !== 'streaming' || wait <= 0) {
        this.draw(el);
      } else if (!el.timer) {
        el.timer = setTimeout(() => {
          el.timer = null;
          const keep = this.nearBottom();
          this.draw(el);
          if (keep) this.scrollToBottom();
        }, wait);
      }
    }
    el.root.dataset.state = turn.state;
    el.root.dataset.stopReason = turn.stopReason ?? '';

    const reason = turn.state === 'interrupted' ? 'interrupted (connection lost)' : describeStopReason(turn.stopReason);
    el.stopReason.textContent = turn.state === 'streaming' ? '' : reason;
    el.stopReason.hidden = el.stopReason.textContent === '';

    if (turn.usage) {
      const { inputTokens, outputTokens, totalTokens } = turn.usage;
      el.usage.textContent = `${inputTokens} in · ${outputTokens} out · ${totalTokens} total tokens`;
      el.usage.dataset.inputTokens = String(inputTokens);
      el.usage.dataset.outputTokens = String(outputTokens);
      el.usage.dataset.totalTokens = String(totalTokens);
    }
    el.usage.hidden = !turn.usage;

    if (turn.error) {
      const { message, retryable } = turn.error;
      el.error.textContent = retryable && !/try again/i.test(message) ? `${message} You can try again.` : message;
    }
    el.error.hidden = !turn.error;
    if (stick) this.scrollToBottom();
  }

  private draw(el: TurnElements): void {
    if (el.timer) clearTimeout(el.timer);
    el.timer = null;
    const source = el.turn.text;
    el.answer.replaceChildren(renderMarkdown(source));
    el.answer.dataset.text = source;
    el.shown = source;
    el.lastDrawAt = Date.now();
  }

  private create(turn: Turn): TurnElements {
    const root = element('article', 'turn');
    root.dataset.turnId = turn.turnId;
    const prompt = element('div', 'turn-prompt');
    const answer = element('div', 'answer');
    answer.dataset.text = '';
    const meta = element('div');
    meta.className = 'meta';
    const stopReason = element('span', 'stop-reason');
    const usage = element('span', 'usage');
    meta.append(stopReason, usage);
    const error = element('p', 'error');
    error.setAttribute('role', 'alert');

    root.append(prompt, answer, meta, error);
    this.container.append(root);
    const elements: TurnElements = {
      root,
      prompt,
      answer,
      stopReason,
      usage,
      error,
      shown: '',
      lastDrawAt: 0,
      timer: null,
      turn,
    };
    this.elements.set(turn.turnId, elements);
    return elements;
  }

  private nearBottom(): boolean {
    const doc = document.documentElement;
    return doc.scrollHeight - (window.scrollY + window.innerHeight) < 80;
  }

  private scrollToBottom(): void {
    window.scrollTo({ top: document.documentElement.scrollHeight });
  }
}

function element(tag: string, testId?: string): HTMLElement {
  const el = document.createElement(tag);
  if (testId) {
    el.dataset.testid = testId;
    el.classList.add(testId);
  }
  return el;
}
