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

/// The claims the checks look at.
const CHECKED: [&str; 10] = [
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

/// A valid ID token's claims, or an access token's (`token_use` `access`,
/// the app client in `client_id`, the name in `username`, as Cognito issues
/// them).
fn valid_claims(access: bool) -> Value {
    let now = now();
    let mut claims = json!({"sub": "7d8ca528-4931-4254-9273-ea5ee853f271", "iss": POOL.issuer(),
        "exp": now + 3600, "iat": now, "auth_time": now});
    if access {
        claims["token_use"] = json!("access");
        claims["client_id"] = json!(CLIENT_ID);
        claims["username"] = json!("alice");
    } else {
        claims["token_use"] = json!("id");
        claims["aud"] = json!(CLIENT_ID);
        claims["cognito:username"] = json!("alice");
    }
    claims
}

/// Valid claims with up to two of the checked ones replaced or removed: a
/// third of the cases are unchanged, so both verdicts are exercised.
fn claims() -> impl Strategy<Value = Value> {
    let change = (0..CHECKED.len(), proptest::option::of(claim_value()));
    (any::<bool>(), proptest::collection::vec(change, 0..3)).prop_map(|(access, changes)| {
        let mut claims = valid_claims(access);
        for (index, value) in changes {
            let name = CHECKED[index];
            match (value, claims.as_object_mut()) {
                (Some(value), Some(object)) => {
                    object.insert(name.to_owned(), value);
                }
                (None, Some(object)) => {
                    object.remove(name);
                }
                _ => {}
            }
        }
        claims
    })
}

/// What AppSync accepts for this pool: a Cognito ID or access token of this
/// pool's issuer and app client, not expired, with a sub, one username claim
/// (`cognito:username` or an access token's `username`) and the times every
/// Cognito token carries.
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
        // jsonwebtoken refuses only `exp < now` (no leeway here).
        .is_some_and(|exp| exp >= now());
    let groups_ok = match claims.get("cognito:groups") {
        None | Some(Value::Null) => true,
        Some(g) => g.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
    };
    // The stand-in reads the claims into typed fields: an optional one of
    // another type makes the token unreadable.
    let optional_text = |name: &str| {
        claims
            .get(name)
            .is_none_or(|v| v.is_null() || v.is_string())
    };
    optional_text("aud")
        && optional_text("client_id")
        && text("iss") == Some(POOL.issuer())
        && audience == Some(CLIENT_ID)
        && exp_ok
        && groups_ok
        && text("sub").is_some()
        && ["cognito:username", "username"]
            .iter()
            .filter(|name| claims.get(**name).is_some())
            .count()
            == 1
        && (text("cognito:username").is_some() || text("username").is_some())
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
fn valid_id_and_access_tokens_are_accepted() {
    for access in [false, true] {
        let verified = POOL.verify(&signed(&valid_claims(access)));
        assert!(
            verified.is_ok_and(|v| v.username == "alice"),
            "access: {access}"
        );
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
