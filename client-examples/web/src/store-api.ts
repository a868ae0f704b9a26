// Place in the data path: **subscriber** --listConversations, listMessages,
// turnChunks, deleteConversation--> AppSync --DynamoDB data source--> the
// conversations table the resolver Lambda writes (the stored side of a chat).
//
// The same documents as the tests of the API (tests/conversations.rs and
// devstack/tests/conversations_api.rs). Every call throws a `ChatError`.

import { ChatError, request } from './graphql';
import { followPages, type Page } from './paging';
import type { Chunk, ChunkError, Usage } from './turns';

/** One of the user's conversations (`Conversation` of the schema). */
export interface Conversation {
  conversationId: string;
  title: string;
  createdAt: string;
  updatedAt: string;
}

/** A turn's prompt (`role` `user`) or answer (`role` `assistant`). */
export interface Message {
  conversationId: string;
  turnId: string;
  role: string;
  text: string;
  createdAt: string;
  modelId?: string | null;
  stopReason?: string | null;
  usage?: Usage | null;
  error?: ChunkError | null;
}

const LIST_CONVERSATIONS = `query ListConversations($limit: Int, $nextToken: String) {
  listConversations(limit: $limit, nextToken: $nextToken) {
    items { conversationId title createdAt updatedAt }
    nextToken
  }
}`;

const LIST_MESSAGES = `query ListMessages($conversationId: ID!, $limit: Int, $nextToken: String) {
  listMessages(conversationId: $conversationId, limit: $limit, nextToken: $nextToken) {
    items {
      conversationId turnId role text createdAt modelId stopReason
      usage { inputTokens outputTokens totalTokens }
      error { errorType message retryable }
    }
    nextToken
  }
}`;

const TURN_CHUNKS = `query TurnChunks($conversationId: ID!, $turnId: ID!, $afterSeq: Int, $limit: Int, $nextToken: String) {
  turnChunks(conversationId: $conversationId, turnId: $turnId, afterSeq: $afterSeq, limit: $limit, nextToken: $nextToken) {
    items {
      conversationId turnId owner seq text done stopReason
      usage { inputTokens outputTokens totalTokens }
      error { errorType message retryable }
    }
    nextToken
  }
}`;

const DELETE_CONVERSATION = `mutation DeleteConversation($conversationId: ID!) {
  deleteConversation(conversationId: $conversationId) { conversationId remaining }
}`;

/** The largest page the API serves. */
const PAGE_LIMIT = 100;

/** Most `deleteConversation` calls for one conversation (24 items each). */
const MAX_DELETE_CALLS = 1000;

/** One page of the user's conversations, most recently updated first. */
export async function listConversations(nextToken: string | null, limit = 50): Promise<Page<Conversation>> {
  const data = await request<{ listConversations: Page<Conversation> }>(LIST_CONVERSATIONS, { limit, nextToken });
  return data.listConversations;
}

/** Every message of one of the user's conversations, oldest first (all pages). */
export async function listAllMessages(conversationId: string): Promise<Message[]> {
  return followPages(async nextToken => {
    const data = await request<{ listMessages: Page<Message> }>(LIST_MESSAGES, {
      conversationId,
      limit: PAGE_LIMIT,
      nextToken,
    });
    return data.listMessages;
  });
}

/** One page of a turn's stored chunks with `seq` above `afterSeq`, in `seq` order. */
export async function turnChunksPage(
  conversationId: string,
  turnId: string,
  afterSeq: number,
  nextToken: string | null,
): Promise<Page<Chunk>> {
  const data = await request<{ turnChunks: Page<Chunk> }>(TURN_CHUNKS, {
    conversationId,
    turnId,
    afterSeq,
    limit: PAGE_LIMIT,
    nextToken,
  });
  return data.turnChunks;
}

/**
 * Deletes one of the user's conversations, calling `deleteConversation` again
 * while it answers `remaining: true`. A conversation with nothing left
 * (`NotFound`) counts as deleted.
 */
export async function deleteConversation(conversationId: string): Promise<void> {
  for (let calls = 0; calls < MAX_DELETE_CALLS; calls += 1) {
    let remaining: boolean;
    try {
      const data = await request<{ deleteConversation: { remaining: boolean } | null }>(DELETE_CONVERSATION, {
        conversationId,
      });
      remaining = data.deleteConversation?.remaining ?? false;
    } catch (error) {
      if (error instanceof ChatError && error.errorType === 'NotFound') return;
      throw error;
    }
    if (!remaining) return;
  }
  throw new ChatError('The conversation is too large to delete at once. Try again.');
}
