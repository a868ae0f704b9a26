// Place in the data path: AppSync -> **subscriber** (what the user sees of a turn).
//
// Draws the turns of the conversation: one element per turn, the prompt, the
// answer growing as its text arrives (a blinking caret while it streams), and
// when it ends the stop reason, token usage or a readable error. Knows nothing
// of AppSync; it renders what turns.ts decided.

import { describeStopReason, type Turn } from './turns';

interface TurnElements {
  root: HTMLElement;
  answer: HTMLElement;
  stopReason: HTMLElement;
  usage: HTMLElement;
  error: HTMLElement;
}

export class TurnsView {
  private readonly elements = new Map<string, TurnElements>();

  constructor(private readonly container: HTMLElement) {}

  /** Shows `turn`, appending `added` to its answer (the typewriter effect). */
  render(turn: Turn, added = ''): void {
    const stick = this.nearBottom();
    const el = this.elements.get(turn.turnId) ?? this.create(turn);
    if (added) el.answer.append(added);
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

  private create(turn: Turn): TurnElements {
    const root = element('article', 'turn');
    root.dataset.turnId = turn.turnId;

    const prompt = element('div', 'turn-prompt');
    prompt.textContent = turn.prompt ?? '(sent from another window)';
    if (turn.prompt === null) prompt.classList.add('elsewhere');

    const answerLine = element('div');
    answerLine.className = 'answer-line';
    const answer = element('span', 'answer');
    const caret = document.createElement('span');
    caret.className = 'caret';
    caret.setAttribute('aria-hidden', 'true');
    answerLine.append(answer, caret);

    const meta = element('div');
    meta.className = 'meta';
    const stopReason = element('span', 'stop-reason');
    const usage = element('span', 'usage');
    meta.append(stopReason, usage);

    const error = element('p', 'error');
    error.setAttribute('role', 'alert');

    root.append(prompt, answerLine, meta, error);
    this.container.append(root);
    const elements = { root, answer, stopReason, usage, error };
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
