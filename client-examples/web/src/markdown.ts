// Place in the data path: AppSync -> **subscriber** (an answer's text made
// into what the page shows).
//
// Answers are Markdown: markdown-it turns the text into HTML, then DOMPurify
// keeps only the elements Markdown itself makes. The model's text is never
// trusted as markup, so two layers keep it inert:
//   1. markdown-it runs with `html: false`: HTML in the text (`<img onerror>`,
//      `<script>`, ...) is escaped and shows as the text it is; links are made
//      only for http:, https: and mailto: URLs (`[x](javascript:...)` stays
//      plain text); images are off (a model's image URL would be fetched
//      without asking: a tracking or data-leaking request);
//   2. DOMPurify then allows only the tags and attributes of that output, URLs
//      only of those schemes, `class` only as markdown-it's `language-*`, and
//      makes every link open in a new tab without a referrer.
// The result is a DocumentFragment (no HTML string goes through innerHTML).

import DOMPurify from 'dompurify';
import MarkdownIt from 'markdown-it';

const markdown = new MarkdownIt({ html: false, linkify: false, typographer: false, breaks: false });
markdown.disable('image');

const SAFE_URL = /^(?:https?:|mailto:)/i;
markdown.validateLink = (url: string): boolean => SAFE_URL.test(url.trim());

const ALLOWED_TAGS = [
  'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 's', 'code', 'pre', 'blockquote',
  'ul', 'ol', 'li', 'a', 'table', 'thead', 'tbody', 'tr', 'th', 'td',
];
const ALLOWED_ATTR = ['href', 'title', 'class', 'start'];
const CODE_CLASS = /^language-[A-Za-z0-9_+#.-]{1,40}$/;

const purify = DOMPurify(window);
purify.addHook('uponSanitizeAttribute', (_node, data) => {
  if (data.attrName === 'class' && !CODE_CLASS.test(data.attrValue)) data.keepAttr = false;
});
purify.addHook('afterSanitizeAttributes', node => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

const CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOWED_URI_REGEXP: SAFE_URL,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
};

/** The Markdown source as sanitized HTML (a string, for tests and logs). */
export function markdownToHtml(source: string): string {
  return purify.sanitize(markdown.render(source), CONFIG);
}

/** The Markdown source as nodes to put on the page. */
export function renderMarkdown(source: string): DocumentFragment {
  return purify.sanitize(markdown.render(source), { ...CONFIG, RETURN_DOM_FRAGMENT: true });
}
