//! The web chat's origin: the devstack serves the built page of
//! `client-examples/web` on its HTTPS listener, beside the API, so one
//! `devstack up` and a browser are the whole local demo.
//!
//! Place in the data path: **the page** (client) --sendPrompt--> AppSync ->
//! Lambda (resolver) -> Bedrock -> resolver -> AppSync --onChunk--> **the
//! page** (subscriber).
//!
//! Besides the page's files it serves two devstack-only resources, which AWS
//! does not have (a deployed page gets its `config.json` from the stack's
//! outputs and its tokens from Amplify Auth):
//! - `GET /config.json`: the page's runtime configuration, pointing at this
//!   origin's `/graphql`, with `"auth": "devstack"`, and at the stack's
//!   function URL and WebSocket API when it has them (`functionUrl`,
//!   `webSocketUrl`, which the page's transport switch offers).
//! - `GET /devstack/token?username=NAME`: a Cognito ID token of the dev user
//!   pool for NAME, `{"idToken": "<JWT>", "expiresIn": 3600}`; the page hands
//!   it to Amplify through a custom token provider.

use std::path::PathBuf;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tower_http::services::ServeDir;

use crate::DEV_REGION;
use crate::cognito::{self, TOKEN_TTL_SECS, UserPool};

/// The stack's other transports, for the page's `config.json`.
#[derive(Clone, Debug, Default)]
pub struct TransportUrls {
    /// The function URL (`http://HOST:PORT/`).
    pub function_url: Option<String>,
    /// The WebSocket API (`ws://HOST:PORT/{stage}`).
    pub websocket_url: Option<String>,
}

/// The page's routes: its files from `web_dir` (when given) and the two
/// devstack-only resources.
pub fn router(user_pool: UserPool, web_dir: Option<PathBuf>, transports: TransportUrls) -> Router {
    let routes = Router::new()
        .route(
            "/config.json",
            get(move |h, u| config(h, u, transports.clone())),
        )
        .route("/devstack/token", get(token))
        .with_state(user_pool);
    match web_dir {
        Some(dir) => routes.fallback_service(ServeDir::new(dir)),
        None => routes.fallback(no_page),
    }
}

/// `GET /config.json`: the API at the origin the page was loaded from (the
/// `Host` header, or the authority of an HTTP/2 request).
async fn config(headers: HeaderMap, uri: Uri, transports: TransportUrls) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed").into_response();
    };
    let mut body = json!({
        "auth": "devstack",
        "graphqlEndpoint": format!("https://{host}/graphql"),
        "region": DEV_REGION,
        "tokenUrl": "/devstack/token",
    });
    if let Some(url) = transports.function_url {
        body["functionUrl"] = json!(url);
    }
    if let Some(url) = transports.websocket_url {
        body["webSocketUrl"] = json!(url);
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    username: Option<String>,
}

/// `GET /devstack/token?username=NAME`: a fresh ID token for a dev user.
async fn token(State(pool): State<UserPool>, Query(query): Query<TokenQuery>) -> Response {
    let username = query.username.unwrap_or_default();
    if !valid_username(&username) {
        let message = "username must be 1 to 128 of A-Z a-z 0-9 . _ @ + -";
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errorType": "InvalidParameterException", "message": message})),
        )
            .into_response();
    }
    let id_token = pool.mint_id_token(&username, &[], cognito::now_secs());
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"idToken": id_token, "expiresIn": TOKEN_TTL_SECS})),
    )
        .into_response()
}

/// Cognito's usernames are wider; this keeps dev names printable and short.
fn valid_username(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
}

async fn no_page() -> Response {
    let message = "No web page is served: build client-examples/web (npm install && npm run build) \
                   and start the devstack with --web-dir client-examples/web/dist.\n";
    (StatusCode::NOT_FOUND, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::valid_username;

    #[test]
    fn usernames() {
        assert!(valid_username("alice"));
        assert!(valid_username("bob.smith+dev@example.com"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username(&"a".repeat(129)));
    }
}
