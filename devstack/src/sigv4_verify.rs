//! SigV4 verification, the service side, as AWS services do it: the
//! devstack's gate in front of AppSync (`publishChunk` from the resolver) and
//! Bedrock (the resolver's ConverseStream). The signing side is the shared
//! AppSync client's.
//!
//! Place in the data path: resolver Lambda --publishChunk (signed)-->
//! **AppSync auth**; resolver Lambda --ConverseStream (signed)--> **Bedrock
//! auth** -> model.
//!
//! The signature is recomputed from the request exactly as a service does
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>):
//! the canonical request is built from the headers named in `SignedHeaders`, the
//! time is taken from `x-amz-date`, the signing key is derived from the caller's
//! secret, and the two signatures are compared in constant time. The HMAC chain
//! itself comes from `aws-sigv4`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use chrono::{NaiveDateTime, TimeZone, Utc};
use http::HeaderMap;
use sha2::{Digest, Sha256};

/// How far a request's `x-amz-date` may be from now: AWS allows 5 minutes.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// One IAM principal the devstack knows: static dev credentials.
#[derive(Clone, Debug)]
pub struct IamUser {
    /// The secret access key (never logged).
    pub secret_access_key: String,
    /// The session token a caller must present, if any.
    pub session_token: Option<String>,
    /// The account id reported in the caller's AppSync identity.
    pub account_id: String,
    /// The user ARN reported in the caller's AppSync identity.
    pub user_arn: String,
}

/// The IAM principals the devstack accepts, by access key id.
#[derive(Clone, Debug, Default)]
pub struct IamUsers {
    users: HashMap<String, IamUser>,
}

impl IamUsers {
    /// A store holding one user.
    pub fn single(access_key_id: &str, user: IamUser) -> Self {
        let mut users = HashMap::new();
        users.insert(access_key_id.to_owned(), user);
        Self { users }
    }
}

/// A caller whose signature checked out.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedCaller {
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// The principal's account (AppSync's `identity.accountId`).
    pub account_id: String,
    /// The principal's ARN (AppSync's `identity.userArn`).
    pub user_arn: String,
    /// The region of the signature's credential scope.
    pub region: String,
}

/// Why a signed request was refused. The `Display` texts are the services' own.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SigV4Error {
    /// No `Authorization` or `x-amz-date`, or one not in SigV4's form
    /// (`IncompleteSignatureException`).
    #[error(
        "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
    )]
    Malformed,
    /// An access key (or session token) the devstack does not know
    /// (`UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// The credential scope names another service; holds the expected one.
    #[error("Credential should be scoped to correct service: '{0}'.")]
    WrongService(String),
    /// `x-amz-date` is more than 5 minutes from now.
    #[error("Signature expired: the request time is too far from the current time.")]
    Expired,
    /// The signature is not the one the secret gives, or `x-amz-date` is not
    /// on the credential scope's date (`InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

impl SigV4Error {
    /// The AWS error type a service answers with (`x-amzn-ErrorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            SigV4Error::UnknownAccessKey => "UnrecognizedClientException",
            SigV4Error::Mismatch => "InvalidSignatureException",
            _ => "IncompleteSignatureException",
        }
    }
}

/// The parts of a request that a signature covers.
pub struct SignedRequest<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path as sent on the wire (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// The request's headers, `Authorization` and `x-amz-date` among them.
    pub headers: &'a HeaderMap,
    /// The body, hashed unless `x-amz-content-sha256` gives the hash.
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    /// The parts of an HTTP request (as received) and its `body`.
    pub fn of(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Self {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body,
        }
    }
}

struct AuthorizationHeader<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, SigV4Error> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or(SigV4Error::Malformed)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => return Err(SigV4Error::Malformed),
    };
    let scope: Vec<&str> = credential.split('/').collect();
    match scope.as_slice() {
        [key, date, region, service, "aws4_request"] => Ok(AuthorizationHeader {
            access_key_id: key,
            date,
            region,
            service,
            signed_headers: signed.split(';').collect(),
            signature,
        }),
        _ => Err(SigV4Error::Malformed),
    }
}

/// Verifies a SigV4-signed request for `service` (`appsync`, `bedrock`) at
/// time `now`.
///
/// # Errors
///
/// A [`SigV4Error`] for the first check that fails, with the text AWS
/// answers with.
pub fn verify(
    request: &SignedRequest<'_>,
    service: &str,
    users: &IamUsers,
    now: SystemTime,
) -> Result<VerifiedCaller, SigV4Error> {
    let authorization = header(request.headers, "authorization").ok_or(SigV4Error::Malformed)?;
    let auth = parse_authorization(&authorization)?;
    let user = users
        .users
        .get(auth.access_key_id)
        .ok_or(SigV4Error::UnknownAccessKey)?;
    if auth.service != service {
        return Err(SigV4Error::WrongService(service.to_owned()));
    }
    if let Some(expected) = &user.session_token {
        let presented = header(request.headers, "x-amz-security-token");
        if presented.as_deref() != Some(expected.as_str()) {
            return Err(SigV4Error::UnknownAccessKey);
        }
    }
    let amz_date = header(request.headers, "x-amz-date").ok_or(SigV4Error::Malformed)?;
    let time = parse_amz_date(&amz_date).ok_or(SigV4Error::Malformed)?;
    if !amz_date.starts_with(auth.date) {
        return Err(SigV4Error::Mismatch);
    }
    let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(SigV4Error::Expired);
    }
    let canonical = canonical_request(request, &auth.signed_headers);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = generate_signing_key(&user.secret_access_key, time, auth.region, auth.service);
    let expected = calculate_signature(key, string_to_sign.as_bytes());
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(SigV4Error::Mismatch);
    }
    Ok(VerifiedCaller {
        access_key_id: auth.access_key_id.to_owned(),
        account_id: user.account_id.clone(),
        user_arn: user.user_arn.clone(),
        region: auth.region.to_owned(),
    })
}

/// The canonical request of SigV4 step 1, over the headers the caller signed.
fn canonical_request(request: &SignedRequest<'_>, signed_headers: &[&str]) -> String {
    let mut out = String::new();
    out.push_str(request.method);
    out.push('\n');
    out.push_str(&canonical_uri(request.path));
    out.push('\n');
    out.push_str(&canonical_query(request.query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(request.headers, name));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    let payload_hash = header(request.headers, "x-amz-content-sha256")
        .unwrap_or_else(|| hex::encode(Sha256::digest(request.body)));
    out.push_str(&payload_hash);
    out
}

/// The canonical URI of every service but S3: the path normalized as RFC
/// 3986 does (empty and `.` segments dropped, `..` removes the one before; a
/// trailing `/` kept), then each segment encoded a second time
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>).
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = String::from("/");
    out.push_str(
        &segments
            .iter()
            .map(|s| uri_encode(s))
            .collect::<Vec<_>>()
            .join("/"),
    );
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 3986 encoding as SigV4 asks: unreserved characters stay, the rest is `%XX`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as itself); invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let digit = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (digit(bytes[i + 1]), digit(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Parses the SigV4 basic ISO-8601 time, `20240102T030405Z`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?;
    Some(Utc.from_utc_datetime(&naive).into())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4::SigningParams;

    pub(super) const KEY: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    pub(super) fn users() -> IamUsers {
        IamUsers::single(
            KEY,
            IamUser {
                secret_access_key: SECRET.into(),
                session_token: None,
                account_id: "000000000000".into(),
                user_arn: "arn:aws:iam::000000000000:user/dev".into(),
            },
        )
    }

    /// Signs with the real `aws-sigv4` signer, as the resolver and the SDKs do.
    pub(super) fn signed(path: &str, body: &[u8], service: &str, time: SystemTime) -> HeaderMap {
        let creds = aws_credential_types::Credentials::new(KEY, SECRET, None, None, "test");
        let identity = creds.into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let url = format!("http://127.0.0.1:4000{path}");
        let headers = [
            ("host", "127.0.0.1:4000"),
            ("content-type", "application/json"),
        ];
        let req =
            SignableRequest::new("POST", &url, headers.into_iter(), SignableBody::Bytes(body))
                .expect("signable");
        let (instructions, _) = sign(req, &params).expect("sign").into_parts();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k, v.parse().expect("value"));
        }
        for (k, v) in instructions.headers() {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    fn request<'a>(path: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            path,
            query: "",
            headers,
            body,
        }
    }

    #[test]
    fn accepts_a_real_signature() {
        let now = SystemTime::now();
        let headers = signed("/graphql", b"{}", "appsync", now);
        let caller = verify(
            &request("/graphql", &headers, b"{}"),
            "appsync",
            &users(),
            now,
        )
        .expect("verified");
        assert_eq!(caller.access_key_id, KEY);
    }

    #[test]
    fn double_encodes_the_path_like_the_bedrock_client() {
        let now = SystemTime::now();
        let path = "/model/anthropic.claude-v2%3A1/converse-stream";
        let headers = signed(path, b"{}", "bedrock", now);
        verify(&request(path, &headers, b"{}"), "bedrock", &users(), now).expect("verified");
    }

    #[test]
    fn refuses_a_changed_body_a_wrong_service_and_an_old_date() {
        let now = SystemTime::now();
        let headers = signed("/graphql", b"{}", "appsync", now);
        let tampered = verify(
            &request("/graphql", &headers, b"{ }"),
            "appsync",
            &users(),
            now,
        );
        assert_eq!(tampered, Err(SigV4Error::Mismatch));
        let service = verify(
            &request("/graphql", &headers, b"{}"),
            "bedrock",
            &users(),
            now,
        );
        assert!(matches!(service, Err(SigV4Error::WrongService(_))));
        let later = now + Duration::from_secs(600);
        let old = verify(
            &request("/graphql", &headers, b"{}"),
            "appsync",
            &users(),
            later,
        );
        assert_eq!(old, Err(SigV4Error::Expired));
    }

    #[test]
    fn refuses_an_unknown_key_and_garbage() {
        let now = SystemTime::now();
        let headers = signed("/graphql", b"{}", "appsync", now);
        let empty = IamUsers::default();
        let unknown = verify(
            &request("/graphql", &headers, b"{}"),
            "appsync",
            &empty,
            now,
        );
        assert_eq!(unknown, Err(SigV4Error::UnknownAccessKey));
        let mut garbage = HeaderMap::new();
        garbage.insert(
            "authorization",
            "AWS4-HMAC-SHA256 nonsense".parse().expect("value"),
        );
        let bad = verify(
            &request("/graphql", &garbage, b"{}"),
            "appsync",
            &users(),
            now,
        );
        assert_eq!(bad, Err(SigV4Error::Malformed));
    }
}
