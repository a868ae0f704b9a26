// @vitest-environment jsdom
//
// Place in the data path: AppSync -> **subscriber** (unit tests of answers
// rendered from Markdown, `markdown.ts`): lists and code blocks become
// elements, and nothing the model writes becomes markup or an active link.
import { describe, expect, it } from 'vitest';

import { markdownToHtml, renderMarkdown } from './markdown';

function rendered(source: string): HTMLElement {
  const div = document.createElement('div');
  div.append(renderMarkdown(source));
  return div;
}

describe('renderMarkdown', () => {
  it('renders lists, code blocks and inline code', () => {
    const el = rendered('Steps:\n\n- one\n- two\n\n1. first\n2. second\n\n```js\nlet a = 1 < 2;\n```\n\nUse `seq`.');
    expect([...el.querySelectorAll('ul > li')].map(li => li.textContent)).toEqual(['one', 'two']);
    expect([...el.querySelectorAll('ol > li')].map(li => li.textContent)).toEqual(['first', 'second']);
    const code = el.querySelector('pre > code');
    expect(code?.textContent).toBe('let a = 1 < 2;\n');
    expect(code?.className).toBe('language-js');
    expect(el.querySelector('p > code')?.textContent).toBe('seq');
  });

  it('shows HTML from the model as text, never as elements', () => {
    const source = 'You asked: "<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>". <svg onload=alert(1)>';
    const el = rendered(source);
    expect(el.querySelector('img, script, svg')).toBeNull();
    expect(el.textContent).toContain('<img src=x onerror="window.__pwned=1">');
    expect(el.textContent).toContain('<script>window.__pwned=2</script>');
    expect(markdownToHtml(source)).not.toMatch(/<(img|script|svg)/i);
  });

  it('makes no link of javascript:, data: or relative URLs', () => {
    for (const url of ['javascript:window.__pwned=1', 'JaVaScRiPt:alert(1)', 'data:text/html,<b>x</b>', '/admin', 'vbscript:x']) {
      const el = rendered(`[x](${url}) and <${url}>`);
      expect(el.querySelector('a'), url).toBeNull();
    }
  });

  it('keeps http(s) links, opening in a new tab without a referrer', () => {
    const a = rendered('[docs](https://example.com/a?b=1)').querySelector('a');
    expect(a?.getAttribute('href')).toBe('https://example.com/a?b=1');
    expect(a?.getAttribute('target')).toBe('_blank');
    expect(a?.getAttribute('rel')).toBe('noopener noreferrer nofollow');
  });

  it('loads no image the model names', () => {
    const el = rendered('![tracker](https://example.com/pixel.png)');
    expect(el.querySelector('img')).toBeNull();
  });

  it('keeps only language classes on code', () => {
    const el = rendered('```x" onclick="y\ncode\n```\n\n```fatal turn\ncode\n```');
    for (const code of el.querySelectorAll('code')) {
      expect(code.getAttributeNames().filter(n => n !== 'class')).toEqual([]);
      expect(code.className === '' || /^language-[\w+#.-]+$/.test(code.className)).toBe(true);
    }
  });

  it('renders an answer cut mid-stream without breaking', () => {
    const el = rendered('Here:\n\n```json\n{"seq": 0,');
    expect(el.querySelector('pre > code')?.textContent).toBe('{"seq": 0,');
  });
});
