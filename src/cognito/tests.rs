//! The verifier against the devstack's user pool: its tokens and its JWKS,
//! served over real HTTP by a small server that counts its fetches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use devstack::cognito::{UserPool, new_key, now_secs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A JWKS endpoint: serves whatever `jwks` holds, counting requests.
struct JwksServer {
    base_url: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve(jwks: Value) -> JwksServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let jwks = Arc::new(Mutex::new(jwks));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (Arc::clone(&jwks), Arc::clone(&fetches));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let body = served.lock().expect("not poisoned").to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    JwksServer {
        base_url,
        jwks,
        fetches,
    }
}

const POOL: &str = "us-east-1_test";
const CLIENT: &str = "appclient";

fn new_pool(base_url: &str) -> UserPool {
    UserPool::new(base_url, POOL, CLIENT, &new_key().expect("an RSA key"))
}

fn verifier(server: &JwksServer) -> CognitoVerifier {
    CognitoVerifier::new(
        format!("{}/{POOL}", server.base_url),
        CLIENT,
        reqwest::Client::new(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_pool_token_is_accepted_with_its_user() {
    let server = serve(Value::Null).await;
    let pool = new_pool(&server.base_url);
    *server.jwks.lock().expect("not poisoned") = pool.jwks();
    let verifier = verifier(&server);
    verifier.refresh().await.expect("the JWKS");
    let token = pool.mint_id_token("alice", &["admins".to_owned()], now_secs());
    let user = verifier
        .verify(Some(&bearer(&token)))
        .await
        .expect("accepted");
    assert_eq!(user.sub, devstack::cognito::sub_for("alice"));
    assert_eq!(user.username, "alice");
    assert_eq!(user.groups, vec!["admins".to_owned()]);
    // The bare token, as Amplify sends it, works too.
    assert!(verifier.verify(Some(&token)).await.is_ok());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn missing_malformed_expired_and_forged_tokens_are_refused() {
    let server = serve(Value::Null).await;
    let pool = new_pool(&server.base_url);
    *server.jwks.lock().expect("not poisoned") = pool.jwks();
    let verifier = verifier(&server);
    verifier.refresh().await.expect("the JWKS");

    assert!(matches!(
        verifier.verify(None).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        verifier.verify(Some("Bearer not-a-jwt")).await,
        Err(AuthError::Malformed)
    ));
    let expired = pool.mint_id_token("alice", &[], now_secs() - 2 * 3600);
    assert!(matches!(
        verifier.verify(Some(&bearer(&expired))).await,
        Err(AuthError::Expired)
    ));
    // Another key under the same issuer: an unknown kid, refused once the
    // refetched set does not hold it either.
    let forger = new_pool(&server.base_url);
    let forged = forger.mint_id_token("alice", &[], now_secs());
    verifier.keys.write().await.fetched = None;
    assert!(matches!(
        verifier.verify(Some(&bearer(&forged))).await,
        Err(AuthError::Invalid)
    ));
    // A signature that does not match the payload (alice's token, bob's claims).
    let good = pool.mint_id_token("alice", &[], now_secs());
    let bob = pool.mint_id_token("bob", &[], now_secs());
    let parts: Vec<&str> = good.split('.').collect();
    let bob_claims = bob.split('.').nth(1).expect("claims");
    let spliced = format!("{}.{bob_claims}.{}", parts[0], parts[2]);
    assert!(matches!(
        verifier.verify(Some(&bearer(&spliced))).await,
        Err(AuthError::Invalid)
    ));
    // Another app client's token of the same pool.
    let other_client = UserPool::new(
        &server.base_url,
        POOL,
        "otherclient",
        &new_key().expect("an RSA key"),
    );
    *server.jwks.lock().expect("not poisoned") = other_client.jwks();
    verifier.keys.write().await.fetched = None;
    let token = other_client.mint_id_token("alice", &[], now_secs());
    assert!(matches!(
        verifier.verify(Some(&bearer(&token))).await,
        Err(AuthError::Invalid)
    ));
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_per_interval() {
    let server = serve(Value::Null).await;
    let old = new_pool(&server.base_url);
    *server.jwks.lock().expect("not poisoned") = old.jwks();
    let mut verifier = verifier(&server);
    verifier.min_refresh = Duration::from_secs(3600);
    verifier.refresh().await.expect("the JWKS");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // The pool rotates to a new key; within the interval its tokens are
    // refused without a fetch.
    let new = new_pool(&server.base_url);
    *server.jwks.lock().expect("not poisoned") = new.jwks();
    let token = new.mint_id_token("alice", &[], now_secs());
    for _ in 0..3 {
        assert!(matches!(
            verifier.verify(Some(&bearer(&token))).await,
            Err(AuthError::Invalid)
        ));
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // Past the interval, one fetch picks the new key up.
    verifier.min_refresh = Duration::ZERO;
    let user = verifier
        .verify(Some(&bearer(&token)))
        .await
        .expect("the rotated key");
    assert_eq!(user.username, "alice");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    assert!(verifier.verify(Some(&bearer(&token))).await.is_ok());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}
