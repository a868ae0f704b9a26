// Place in the data path: AppSync (listConversations, listMessages, turnChunks)
// -> **subscriber** (reading every page of a list).
//
// The stored lists come a page at a time, each with a `nextToken` until the
// last (null). `followPages` asks for pages until then, with a ceiling so a
// server that kept answering with a token could not keep the page busy
// forever. Pure apart from the `fetchPage` it is given.

/** One page of a list, as every `...Connection` type of the schema has it. */
export interface Page<T> {
  items: T[];
  nextToken: string | null;
}

/** Most pages read for one list (100 items a page: 50,000 items). */
export const MAX_PAGES = 500;

/**
 * Every item of a list, in the order of its pages. Stops at the page without
 * a `nextToken`, at a token seen before, or after `maxPages` pages.
 */
export async function followPages<T>(
  fetchPage: (nextToken: string | null) => Promise<Page<T>>,
  maxPages = MAX_PAGES,
): Promise<T[]> {
  const items: T[] = [];
  const seen = new Set<string>();
  let token: string | null = null;
  for (let pages = 0; pages < maxPages; pages += 1) {
    const page: Page<T> = await fetchPage(token);
    items.push(...page.items);
    token = page.nextToken ?? null;
    if (token === null || seen.has(token)) break;
    seen.add(token);
  }
  return items;
}
