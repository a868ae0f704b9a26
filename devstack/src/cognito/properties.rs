//! Property tests of ID token verification: any string, any token-shaped
//! string and any one-character change to a real token is refused with a
//! [`CognitoError`], never a panic; a token signed with the pool's key is
//! accepted exactly when its claims are a Cognito token for this pool.
//! Cases: `PROPTEST_CASES` (proptest's default 256).

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};

use super::{TOKEN_TTL_SECS, UserPool, new_key};

const BASE_URL: &str = "http://127.0.0.1:4000";
const POOL_ID: &str = "us-east-1_devstack";
const CLIENT_ID: &str = "client1";

/// One key for every case: RSA key generation takes most of a second.
static KEY: LazyLock<rsa::RsaPrivateKey> = LazyLock::new(|| new_key().expect("a key"));
static POOL: LazyLock<UserPool> =
    LazyLock::new(|| UserPool::new(BASE_URL, POOL_ID, CLIENT_ID, &KEY));

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// `claims` signed with the pool's key and `kid`.
fn signed(claims: &Value) -> String {
    let der = KEY.to_pkcs1_der().expect("a PKCS#1 key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = POOL.jwks()["keys"][0]["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes()))
        .expect("our own claims encode")
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        ".{0,20}".prop_map(|s| URL_SAFE_NO_PAD.encode(s)),
        Just(URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#)),
        Just(URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)),
        "[A-Za-z0-9_=+/-]{0,40}",
    ]
}

fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        ".{0,10}".prop_map(Value::String),
        Just(Value::String(format!("{BASE_URL}/{POOL_ID}"))),
        Just(Value::String(CLIENT_ID.into())),
        Just(Value::String("id".into())),
        Just(Value::String("access".into())),
        Just(json!(["admins"])),
        Just(Value::from(now() + 3600)),
        Just(Value::from(now().saturating_sub(3600))),
    ]
}

/// Claims where each of the checked ones may be right, wrong or missing.
fn claims() -> impl Strategy<Value = Value> {
    let names = [
        "sub",
        "cognito:username",
        "cognito:groups",
        "iss",
        "aud",
        "client_id",
        "token_use",
        "exp",
        "iat",
        "auth_time",
    ];
    proptest::collection::vec(proptest::option::of(claim_value()), names.len()).prop_map(
        move |values| {
            let mut claims = serde_json::Map::new();
            for (name, value) in names.iter().zip(values) {
                if let Some(value) = value {
                    claims.insert((*name).to_owned(), value);
                }
            }
            Value::Object(claims)
        },
    )
}

/// What AppSync accepts for this pool: a Cognito ID or access token of this
/// pool's issuer and app client, not expired, with a username, a sub and the
/// times every Cognito token carries.
fn acceptable(claims: &Value) -> bool {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let audience = match text("token_use") {
        Some("id") => text("aud"),
        Some("access") => text("client_id"),
        _ => None,
    };
    let exp_ok = claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_some_and(|exp| exp > now());
    let groups_ok = match claims.get("cognito:groups") {
        None | Some(Value::Null) => true,
        Some(g) => g.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
    };
    text("iss") == Some(POOL.issuer())
        && audience == Some(CLIENT_ID)
        && exp_ok
        && groups_ok
        && text("sub").is_some()
        && text("cognito:username").is_some()
        && claims.get("iat").is_some_and(Value::is_u64)
        && claims.get("auth_time").is_some_and(Value::is_u64)
}

proptest! {
    #[test]
    fn any_string_is_refused(token in ".{0,200}") {
        prop_assert!(POOL.verify(&token).is_err());
    }

    #[test]
    fn any_token_shaped_string_is_refused(a in segment(), b in segment(), c in segment()) {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(POOL.verify(&token).is_err());
    }

    #[test]
    fn one_changed_character_is_refused(
        username in "[a-z]{1,12}",
        position in any::<prop::sample::Index>(),
        replacement in proptest::char::any(),
    ) {
        let token = POOL.mint_id_token(&username, &[], now());
        // Not a segment's last character: its low bits may be padding, so
        // some changes there decode to the same bytes.
        let candidates: Vec<usize> = token
            .char_indices()
            .filter(|&(i, c)| c != '.' && token[i + 1..].starts_with(|n: char| n != '.') && i + 1 < token.len())
            .map(|(i, _)| i)
            .collect();
        let at = candidates[position.index(candidates.len())];
        let original = token[at..].chars().next().unwrap_or('.');
        prop_assume!(replacement != original);
        let mut changed = token.clone();
        changed.replace_range(at..at + original.len_utf8(), &replacement.to_string());
        prop_assert!(POOL.verify(&changed).is_err(), "accepted {changed}");
    }

    #[test]
    fn a_signed_token_is_accepted_exactly_when_its_claims_are_cognitos(claims in claims()) {
        let verdict = POOL.verify(&signed(&claims));
        prop_assert_eq!(verdict.is_ok(), acceptable(&claims), "{:?} for {}", verdict.err(), claims);
    }

    #[test]
    fn a_minted_token_names_its_user_and_groups(
        username in ".{1,30}",
        groups in proptest::collection::vec(".{0,12}", 0..4),
    ) {
        let verified = POOL.verify(&POOL.mint_id_token(&username, &groups, now()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verified.username, username);
        prop_assert_eq!(verified.groups.unwrap_or_default(), groups);
    }
}

#[test]
fn an_expired_token_is_refused_as_expired() {
    let old = POOL.mint_id_token("alice", &[], now() - 2 * TOKEN_TTL_SECS);
    assert!(matches!(
        POOL.verify(&old),
        Err(super::CognitoError::Expired)
    ));
}
