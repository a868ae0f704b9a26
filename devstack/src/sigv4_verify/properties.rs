//! Property tests of SigV4 verification: any `Authorization` and date
//! headers end in a [`SigV4Error`], never a panic; a request the real signer
//! signed is accepted whatever its path, query and body, and refused once
//! any signed part changes. Cases: `PROPTEST_CASES` (proptest's default 256).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use proptest::prelude::*;

use super::tests::{KEY, signed, users};
use super::{SigV4Error, SignedRequest, verify};

fn request<'a>(
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> SignedRequest<'a> {
    SignedRequest {
        method: "POST",
        path,
        query,
        headers,
        body,
    }
}

/// `Authorization` values near the real shape, with each part possibly wrong.
fn authorization() -> impl Strategy<Value = String> {
    let part = |good: &'static str| prop_oneof![3 => Just(good.to_owned()), 1 => ".{0,12}"];
    (
        part("AWS4-HMAC-SHA256"),
        part(KEY),
        part("20261128"),
        part("us-east-1"),
        part("appsync"),
        part("host;x-amz-date"),
        "[0-9a-f]{0,64}",
        prop_oneof![Just(", ".to_owned()), Just(",".to_owned()), ".{0,3}"],
    )
        .prop_map(|(alg, key, date, region, service, signed, signature, sep)| {
            format!("{alg} Credential={key}/{date}/{region}/{service}/aws4_request{sep}SignedHeaders={signed}{sep}Signature={signature}")
        })
}

proptest! {
    #[test]
    fn any_authorization_is_refused(
        authorization in prop_oneof![authorization(), ".{0,80}"],
        amz_date in prop_oneof![Just("20261128T000000Z".to_owned()), "[0-9TZ]{0,18}", ".{0,10}"],
        path in "/[ -~]{0,20}",
        query in "[ -~]{0,20}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = authorization.parse() {
            headers.insert("authorization", value);
        }
        if let Ok(value) = amz_date.parse() {
            headers.insert("x-amz-date", value);
        }
        headers.insert("host", http::HeaderValue::from_static("127.0.0.1:4000"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_824_000);
        prop_assert!(verify(&request(&path, &query, &headers, &body), "appsync", &users(), now).is_err());
    }

    #[test]
    fn a_signed_request_is_accepted_until_a_signed_part_changes(
        segments in proptest::collection::vec("[A-Za-z0-9._~-]{1,8}", 0..4),
        query in proptest::option::of("[a-z]{1,4}=[A-Za-z0-9]{0,6}"),
        body in proptest::collection::vec(any::<u8>(), 0..128),
        flip in any::<prop::sample::Index>(),
    ) {
        let path = format!("/{}", segments.join("/"));
        let query = query.unwrap_or_default();
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let now = SystemTime::now();
        let headers = signed(&target, &body, "appsync", now);
        let accepted = verify(&request(&path, &query, &headers, &body), "appsync", &users(), now);
        prop_assert!(accepted.is_ok(), "{:?}", accepted.err());

        let mut other_body = body.clone();
        match other_body.get_mut(flip.index(body.len().max(1))) {
            Some(byte) => *byte ^= 0x01,
            None => other_body.push(b'x'),
        }
        let refused = verify(&request(&path, &query, &headers, &other_body), "appsync", &users(), now);
        prop_assert_eq!(refused.err(), Some(SigV4Error::Mismatch));

        let other_path = format!("{path}x");
        let refused = verify(&request(&other_path, &query, &headers, &body), "appsync", &users(), now);
        prop_assert_eq!(refused.err(), Some(SigV4Error::Mismatch));

        let refused = verify(&request(&path, &query, &headers, &body), "bedrock", &users(), now);
        prop_assert!(refused.is_err());
    }
}

/// Found by the property above: the real signer normalizes dot segments
/// before it signs (as AWS does for every service but S3), so the verifier
/// must too.
#[test]
fn a_path_with_dot_segments_verifies_as_signed() {
    for path in ["/.", "/a/./b/../c", "/a/b/..", "//a//b/"] {
        let now = SystemTime::now();
        let headers = signed(path, b"{}", "appsync", now);
        let verdict = verify(
            &request(path, "", &headers, b"{}"),
            "appsync",
            &users(),
            now,
        );
        assert!(verdict.is_ok(), "{path}: {:?}", verdict.err());
    }
}
