// Place in the data path: **subscriber** <-> AppSync (one GraphQL client for
// every query and mutation, and its errors in words for the user).
//
// Amplify's client sends each request with the signed-in user's token. A
// failed request becomes a `ChatError` whose message can be shown as is and
// which says whether the same request may succeed later, and which carries
// AppSync's `errorType` (e.g. `NotFound`) for the callers that act on it.

import { generateClient, type GraphQLResult } from 'aws-amplify/api';

const makeClient = () => generateClient();
type Client = ReturnType<typeof makeClient>;
let client: Client | null = null;

/** The page's one GraphQL client (made on first use, after Amplify is configured). */
export function graphqlClient(): Client {
  client ??= makeClient();
  return client;
}

/** Runs a query or mutation; its `data`, or a `ChatError`. */
export async function request<T>(query: string, variables: Record<string, unknown>): Promise<T> {
  // Amplify's overloads type a document string's result as unknown; the
  // caller names the shape of `data` its document selects.
  const pending: unknown = graphqlClient().graphql({ query, variables });
  return settle(pending as Promise<GraphQLResult<T>>);
}

// A request's data, or a `ChatError` whose message can be shown as is.
async function settle<T>(pending: Promise<GraphQLResult<T>>): Promise<T> {
  try {
    const result = await pending;
    if (result.errors?.length) throw result;
    return result.data;
  } catch (error) {
    throw new ChatError(describeError(error), !isInvalidRequest(error), errorTypeOf(error));
  }
}

/** A failed request, with a message fit to show the user. */
export class ChatError extends Error {
  constructor(
    message: string,
    /** False when the same request would be refused again. */
    readonly retryable = true,
    /** AppSync's `errorType` of the first error, when it gave one. */
    readonly errorType: string | null = null,
  ) {
    super(message);
  }
}

interface GraphQLErrorLike {
  message?: string;
  errorType?: string;
}

// Amplify rejects with `{ data, errors: [{ message, errorType }] }` for GraphQL
// errors, or with an `Error` for everything else.
function firstError(error: unknown): GraphQLErrorLike | undefined {
  const errors = (error as { errors?: GraphQLErrorLike[] } | null)?.errors;
  return Array.isArray(errors) ? errors[0] : undefined;
}

function errorTypeOf(error: unknown): string | null {
  return firstError(error)?.errorType ?? null;
}

// A request AppSync refused as invalid: sending it again as is cannot help.
function isInvalidRequest(error: unknown): boolean {
  const errors = (error as { errors?: GraphQLErrorLike[] } | null)?.errors;
  return Array.isArray(errors) && errors.some(e => /Validation|BadRequest|MalformedHttpRequest/i.test(e.errorType ?? ''));
}

/** Words for a failed request or subscription. */
export function describeError(error: unknown): string {
  const first = firstError(error);
  const type = first?.errorType ?? (error as { name?: string } | null)?.name ?? '';
  const message = first?.message ?? (error as { message?: string } | null)?.message ?? '';
  if (/unauthori[sz]ed|NotAuthorized|NoValidAuthTokens/i.test(type) || /unauthori[sz]ed/i.test(message)) {
    return 'You are not signed in any more. Sign in again.';
  }
  if (/Throttl|TooManyRequests|LimitExceeded/i.test(type)) {
    return 'Too many requests right now. Wait a moment and try again.';
  }
  if (/network|failed to fetch|connection/i.test(message) && !type.endsWith('Exception')) {
    return 'Could not reach the server. Check your connection and try again.';
  }
  if (message) return message.length > 300 ? `${message.slice(0, 300)}…` : message;
  return 'Something went wrong. Try again.';
}
