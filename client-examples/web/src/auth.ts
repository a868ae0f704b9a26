// Place in the data path: AppSync -> **subscriber** (who the subscriber is).
//
// Amplify's configuration and the user's sign-in. AppSync's default auth mode
// is the Cognito user pool, so every request and subscription carries the
// user's token; AppSync sends a subscriber only the chunks it owns.
//   devstack: a username only; a custom token provider fetches a dev ID token
//             from the devstack (`GET {tokenUrl}?username=NAME`) and refreshes it.
//   cognito:  Amplify Auth with username and password (SRP), including the
//             first sign-in of a user created with a temporary password.

import { Amplify } from 'aws-amplify';
import {
  confirmSignIn,
  decodeJWT,
  getCurrentUser,
  signIn,
  signOut,
  type TokenProvider,
} from 'aws-amplify/auth';
import type { AppConfig, DevstackConfig } from './config';

/** What is left to do after a username and password were accepted. */
export type SignInOutcome = 'signed-in' | 'new-password-required';

let devUsername: string | null = null;
let devToken: { jwt: string; expiresAt: number } | null = null;

/** Configures Amplify once, before any other Amplify call. */
export function configureAmplify(config: AppConfig): void {
  const api = {
    GraphQL: { endpoint: config.graphqlEndpoint, region: config.region, defaultAuthMode: 'userPool' as const },
  };
  if (config.auth === 'devstack') {
    Amplify.configure({ API: api }, { Auth: { tokenProvider: devstackTokenProvider(config) } });
  } else {
    Amplify.configure({
      Auth: { Cognito: { userPoolId: config.userPoolId, userPoolClientId: config.userPoolClientId } },
      API: api,
    });
  }
}

// Amplify asks for tokens before every request and subscription; the devstack's
// ID token serves as both tokens (AppSync reads the user from either).
function devstackTokenProvider(config: DevstackConfig): TokenProvider {
  return {
    async getTokens(options) {
      if (!devUsername) return null;
      const now = Date.now();
      if (!devToken || options?.forceRefresh || devToken.expiresAt - 60_000 < now) {
        devToken = await fetchDevToken(config, devUsername);
      }
      const jwt = decodeJWT(devToken.jwt);
      return { idToken: jwt, accessToken: jwt };
    },
  };
}

async function fetchDevToken(config: DevstackConfig, username: string): Promise<{ jwt: string; expiresAt: number }> {
  const url = new URL(config.tokenUrl, window.location.href);
  url.searchParams.set('username', username);
  const response = await fetch(url, { cache: 'no-store' });
  const body = (await response.json().catch(() => ({}))) as { idToken?: string; expiresIn?: number; message?: string };
  if (!response.ok) throw new Error(body.message ?? `The devstack refused a token for "${username}" (HTTP ${response.status}).`);
  if (!body.idToken) throw new Error('The devstack answered without a token.');
  const exp = decodeJWT(body.idToken).payload.exp;
  const expiresAt = typeof exp === 'number' ? exp * 1000 : Date.now() + (body.expiresIn ?? 3600) * 1000;
  return { jwt: body.idToken, expiresAt };
}

/** The user signed in from an earlier visit (Cognito keeps its session), if any. */
export async function currentUsername(config: AppConfig): Promise<string | null> {
  if (config.auth === 'devstack') return devUsername;
  try {
    return (await getCurrentUser()).username;
  } catch {
    return null;
  }
}

/** devstack: signs in as `username` (fetching the first token checks it works). */
export async function signInDevstack(config: DevstackConfig, username: string): Promise<void> {
  devToken = await fetchDevToken(config, username);
  devUsername = username;
}

/** cognito: signs in with username and password (SRP). */
export async function signInCognito(username: string, password: string): Promise<SignInOutcome> {
  const { isSignedIn, nextStep } = await signIn({ username, password });
  if (isSignedIn) return 'signed-in';
  if (nextStep.signInStep === 'CONFIRM_SIGN_IN_WITH_NEW_PASSWORD_REQUIRED') return 'new-password-required';
  throw new Error(`This example cannot complete the sign-in step ${nextStep.signInStep}.`);
}

/** cognito: sets the permanent password of a user's first sign-in. */
export async function confirmNewPassword(newPassword: string): Promise<void> {
  const { isSignedIn, nextStep } = await confirmSignIn({ challengeResponse: newPassword });
  if (!isSignedIn) throw new Error(`This example cannot complete the sign-in step ${nextStep.signInStep}.`);
}

export async function signOutUser(config: AppConfig): Promise<void> {
  if (config.auth === 'devstack') {
    devUsername = null;
    devToken = null;
  } else {
    await signOut();
  }
}

/** Words for a sign-in failure (Amplify's errors carry a name and a message). */
export function describeAuthError(error: unknown): string {
  const name = (error as { name?: string })?.name;
  if (name === 'NotAuthorizedException') return 'Wrong username or password.';
  if (name === 'UserNotFoundException') return 'Wrong username or password.';
  if (name === 'InvalidPasswordException') return 'That password does not meet the password rules. Try a longer one.';
  if (name === 'UserAlreadyAuthenticatedException') return 'Already signed in.';
  if (error instanceof TypeError) return 'Could not reach the sign-in service. Check your connection.';
  return (error as { message?: string })?.message || 'Sign-in failed.';
}
