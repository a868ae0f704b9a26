// Place in the data path: AppSync -> **subscriber** (where the page finds AppSync).
//
// The runtime configuration, read from `./config.json` next to the page, so one
// build runs against the devstack or a deployed stack. Two shapes:
//   devstack: { auth: "devstack", graphqlEndpoint, region, tokenUrl }
//             the devstack serves this file, the page and the API on one origin;
//             `GET {tokenUrl}?username=NAME` returns a dev user's ID token.
//   AWS:      { auth: "cognito", graphqlEndpoint, region, userPoolId, userPoolClientId }
//             the stack outputs GraphQLUrl, Region, UserPoolId, UserPoolClientId
//             (see config.example.json), written to public/config.json before a build.
// Either may add the relay's other transports, which the page's switch offers:
//   functionUrl   the stack's FunctionUrl output (POST, Server-Sent Events)
//   webSocketUrl  its WebSocketUrl output (wss://...)

/** The relay's other transports, when the stack has them. */
export interface TransportUrls {
  functionUrl?: string;
  webSocketUrl?: string;
}

export interface DevstackConfig extends TransportUrls {
  auth: 'devstack';
  graphqlEndpoint: string;
  region: string;
  tokenUrl: string;
}

export interface CognitoConfig extends TransportUrls {
  auth: 'cognito';
  graphqlEndpoint: string;
  region: string;
  userPoolId: string;
  userPoolClientId: string;
}

export type AppConfig = DevstackConfig | CognitoConfig;

export async function loadConfig(): Promise<AppConfig> {
  const response = await fetch('./config.json', { cache: 'no-store' });
  if (!response.ok) {
    throw new Error(`config.json could not be loaded (HTTP ${response.status}). Copy config.example.json to public/config.json and fill it in.`);
  }
  const raw: unknown = await response.json();
  return check(raw);
}

function check(raw: unknown): AppConfig {
  if (typeof raw !== 'object' || raw === null) throw new Error('config.json is not a JSON object.');
  const c = raw as Record<string, unknown>;
  const text = (key: string): string => {
    const value = c[key];
    if (typeof value !== 'string' || value === '') throw new Error(`config.json: "${key}" is missing.`);
    return value;
  };
  const optional = (key: string): string | undefined => {
    const value = c[key];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const common = {
    graphqlEndpoint: text('graphqlEndpoint'),
    region: text('region'),
    functionUrl: optional('functionUrl'),
    webSocketUrl: optional('webSocketUrl'),
  };
  if (c.auth === 'devstack') return { auth: 'devstack', ...common, tokenUrl: text('tokenUrl') };
  if (c.auth === 'cognito') {
    return { auth: 'cognito', ...common, userPoolId: text('userPoolId'), userPoolClientId: text('userPoolClientId') };
  }
  throw new Error('config.json: "auth" must be "devstack" or "cognito".');
}
