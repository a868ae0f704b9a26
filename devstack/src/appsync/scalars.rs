//! Input coercion, as AppSync does it before any resolver runs: each argument
//! and variable value is checked against its declared type (GraphQL's `Int`,
//! `Float`, `Boolean`, `ID`, enums, input objects, lists and non-null), and
//! AppSync's own scalars (`AWSDate`, `AWSTime`, `AWSDateTime`, `AWSTimestamp`,
//! `AWSEmail`, `AWSJSON`, `AWSURL`, `AWSPhone`, `AWSIPAddress`) are held to
//! their formats.
//!
//! Place in the data path: client (`sendPrompt`) and publisher
//! (`publishChunk`) -> **AppSync validation (argument values)** -> resolvers.
//!
//! Formats follow <https://docs.aws.amazon.com/appsync/latest/devguide/scalars.html>.
//! A refusal is the reason alone (`is not a valid 'AWSEmail'`); the operation
//! module wraps it into AppSync's `Validation error of type WrongType` message
//! with the field's location.

use serde_json::{Map, Value};

use super::schema::{Schema, TypeDef, TypeRef};

/// Coerces a JSON input value to `ty`: `null` for a nullable type, a single
/// value wrapped for a list type, an integer `ID` as its string, an input
/// object with its defaults filled in.
///
/// # Errors
///
/// Why the value does not fit, worded as the tail of AppSync's `WrongType`
/// message (`must not be null for type 'ID!'`, `is not a valid 'AWSEmail'`,
/// `contains a field not in 'ChunkInput': 'x'`, ...).
pub(super) fn coerce(schema: &Schema, v: &Value, ty: &TypeRef) -> Result<Value, String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if v.is_null() {
                Err(format!("must not be null for type '{ty}'"))
            } else {
                coerce(schema, v, inner)
            }
        }
        _ if v.is_null() => Ok(Value::Null),
        TypeRef::List(inner) => match v {
            Value::Array(items) => items
                .iter()
                .map(|i| coerce(schema, i, inner))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            single => Ok(Value::Array(vec![coerce(schema, single, inner)?])),
        },
        TypeRef::Named(name) => coerce_named(schema, v, name),
    }
}

fn coerce_named(schema: &Schema, v: &Value, name: &str) -> Result<Value, String> {
    let bad = || Err(format!("is not a valid '{name}'"));
    match (name, schema.get(name)) {
        ("Int", _) | ("AWSTimestamp", _) => match v.as_i64() {
            Some(i) if i32::try_from(i).is_ok() || name == "AWSTimestamp" => Ok(v.clone()),
            _ => bad(),
        },
        ("Float", _) => {
            if v.is_number() {
                Ok(v.clone())
            } else {
                bad()
            }
        }
        ("Boolean", _) => {
            if v.is_boolean() {
                Ok(v.clone())
            } else {
                bad()
            }
        }
        ("ID", _) => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) if n.is_i64() => Ok(Value::String(n.to_string())),
            _ => bad(),
        },
        (_, Some(TypeDef::Scalar)) => match v.as_str() {
            Some(s) if aws_scalar_accepts(name, s) => Ok(v.clone()),
            _ => bad(),
        },
        (_, Some(TypeDef::Enum { values })) => match v.as_str() {
            Some(s) if values.iter().any(|x| x == s) => Ok(v.clone()),
            _ => bad(),
        },
        (_, Some(TypeDef::InputObject { fields })) => {
            let Some(obj) = v.as_object() else {
                return bad();
            };
            if let Some(extra) = obj.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
                return Err(format!("contains a field not in '{name}': '{extra}'"));
            }
            let mut out = Map::new();
            for f in fields {
                match obj.get(&f.name).or(f.default.as_ref()) {
                    Some(x) => {
                        out.insert(f.name.clone(), coerce(schema, x, &f.ty)?);
                    }
                    None if matches!(f.ty, TypeRef::NonNull(_)) => {
                        return Err(format!("is missing required fields '[{}]'", f.name));
                    }
                    None => {}
                }
            }
            Ok(Value::Object(out))
        }
        _ => bad(),
    }
}

/// Whether a string input is a valid value of one of AppSync's own scalars;
/// `String`, `ID` and custom scalars accept any string. Formats as the AppSync
/// docs describe them
/// (<https://docs.aws.amazon.com/appsync/latest/devguide/scalars.html>).
fn aws_scalar_accepts(name: &str, s: &str) -> bool {
    match name {
        "AWSDate" => date_with_offset(s),
        "AWSTime" => time_with_offset(s),
        "AWSDateTime" => s
            .split_once('T')
            .is_some_and(|(date, time)| is_date(date) && time_with_required_offset(time)),
        "AWSEmail" => is_email(s),
        "AWSJSON" => serde_json::from_str::<Value>(s).is_ok(),
        "AWSURL" => is_url(s),
        "AWSPhone" => is_phone(s),
        "AWSIPAddress" => is_ip_address(s),
        _ => true,
    }
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn number_in(s: &str, len: usize, max: u32) -> bool {
    all_digits(s, len) && s.parse::<u32>().is_ok_and(|n| n <= max)
}

/// `YYYY-MM-DD` (a leading `-` for negative years is allowed, as the docs say).
fn is_date(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [y, m, d] => {
            all_digits(y, 4)
                && number_in(m, 2, 12)
                && m != &"00"
                && number_in(d, 2, 31)
                && d != &"00"
        }
        _ => false,
    }
}

/// `hh:mm`, `hh:mm:ss` or `hh:mm:ss.f` with 1 to 9 fraction digits.
fn is_time(s: &str) -> bool {
    let (clock, fraction) = match s.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (s, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let clock_ok = match parts.as_slice() {
        [h, m] => fraction.is_none() && number_in(h, 2, 23) && number_in(m, 2, 59),
        [h, m, sec] => number_in(h, 2, 23) && number_in(m, 2, 59) && number_in(sec, 2, 59),
        _ => false,
    };
    clock_ok
        && fraction
            .is_none_or(|f| (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()))
}

/// `Z`, `+hh:mm`, `-hh:mm` or, as AppSync also accepts, `+hh:mm:ss`.
fn is_offset(s: &str) -> bool {
    if s == "Z" {
        return true;
    }
    let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [h, m] => number_in(h, 2, 23) && number_in(m, 2, 59),
        [h, m, sec] => number_in(h, 2, 23) && number_in(m, 2, 59) && number_in(sec, 2, 59),
        _ => false,
    }
}

/// Splits `value` into its part before a time-zone offset and the offset.
fn split_offset(s: &str) -> (&str, Option<&str>) {
    if let Some(body) = s.strip_suffix('Z') {
        return (body, Some("Z"));
    }
    match s.rfind(['+', '-']) {
        Some(i) if i > 0 => (&s[..i], Some(&s[i..])),
        _ => (s, None),
    }
}

fn time_with_offset(s: &str) -> bool {
    match split_offset(s) {
        (t, Some(o)) => is_time(t) && is_offset(o),
        (t, None) => is_time(t),
    }
}

fn time_with_required_offset(s: &str) -> bool {
    matches!(split_offset(s), (t, Some(o)) if is_time(t) && is_offset(o))
}

/// `YYYY-MM-DD` with an optional offset (`1970-01-01Z`, `1970-01-01-07:00`).
fn date_with_offset(s: &str) -> bool {
    if is_date(s) {
        return true;
    }
    if let Some(body) = s.strip_suffix('Z') {
        return is_date(body);
    }
    // The date has two or three `-` of its own; an offset adds one sign. The
    // offset is ASCII, so a cut inside a character is no offset.
    s.len() > 10 && s.is_char_boundary(s.len() - 6) && {
        let (date, offset) = s.split_at(s.len() - 6);
        is_date(date) && is_offset(offset)
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A scheme (`http`, `mailto`, ...), then a body without whitespace; no `//`
/// in the path part.
fn is_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || s.chars().any(char::is_whitespace) {
        return false;
    }
    match rest.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            !authority.is_empty() && !path.contains("//")
        }
        None => !rest.contains("//"),
    }
}

/// Digits with spaces or hyphens between groups; with a leading `+` a country
/// code, without one a North American (NANP) number of 10 digits (11 with a
/// leading 1).
fn is_phone(s: &str) -> bool {
    let (international, body) = match s.strip_prefix('+') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let starts_and_ends_with_digit = body.chars().next().is_some_and(|c| c.is_ascii_digit())
        && body.chars().last().is_some_and(|c| c.is_ascii_digit());
    if !starts_and_ends_with_digit
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if international {
        (8..=15).contains(&digits.len())
    } else {
        digits.len() == 10 || (digits.len() == 11 && digits.starts_with('1'))
    }
}

/// IPv4 or IPv6, optionally with a CIDR prefix.
fn is_ip_address(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= max)
    })
}

#[cfg(test)]
mod tests {
    //! Through `prepare`, so the assertions see the messages and locations
    //! AppSync answers with, not only the coercion's verdict.

    use serde_json::json;

    use super::*;
    use crate::appsync::operation::{GraphQlError, GraphQlRequest, Prepared, prepare};

    fn req(query: &str, variables: Value) -> GraphQlRequest {
        GraphQlRequest {
            query: query.into(),
            variables: Some(variables),
            operation_name: None,
        }
    }

    const SCALARS: &str = "
        type Query { probe(dt: AWSDateTime, d: AWSDate, t: AWSTime, ts: AWSTimestamp,
            email: AWSEmail, json: AWSJSON, url: AWSURL, phone: AWSPhone,
            ip: AWSIPAddress, s: String): String }
    ";

    /// Prepares `{ probe(arg: $v) }` with `value` as the variable; Ok if accepted.
    fn probe(arg: &str, ty: &str, value: Value) -> Result<Prepared, Vec<GraphQlError>> {
        let s = Schema::parse(SCALARS).expect("test schema");
        let q = format!("query Q($v: {ty}) {{ probe({arg}: $v) }}");
        prepare(&s, &req(&q, json!({ "v": value })))
    }

    fn accepts(arg: &str, ty: &str, good: &[Value], bad: &[Value]) {
        for v in good {
            assert!(probe(arg, ty, v.clone()).is_ok(), "{ty} should accept {v}");
        }
        for v in bad {
            let errors = probe(arg, ty, v.clone()).expect_err(&format!("{ty} refuses {v}"));
            assert!(
                errors[0]
                    .message
                    .starts_with("Validation error of type WrongType")
                    && errors[0]
                        .message
                        .contains(&format!("is not a valid '{ty}'")),
                "{}",
                errors[0].message
            );
            assert!(errors[0].location.is_some(), "a location for {v}");
        }
    }

    #[test]
    fn aws_date_time_scalars() {
        accepts(
            "dt",
            "AWSDateTime",
            &[
                json!("1970-01-01T12:00:00.000Z"),
                json!("1970-01-01T12:00Z"),
                json!("2024-02-29T23:59:59.123456789+05:30"),
                json!("1970-01-01T00:00:00-07:00:30"),
            ],
            &[
                json!("1970-01-01T12:00:00"),
                json!("1970-01-01"),
                json!("1970-13-01T00:00:00Z"),
                json!("yesterday"),
                json!(0),
            ],
        );
        accepts(
            "d",
            "AWSDate",
            &[
                json!("1970-01-01"),
                json!("1970-01-01Z"),
                json!("1970-01-01-07:00"),
            ],
            &[
                json!("1970-1-1"),
                json!("1970-01-32"),
                json!("01/01/1970"),
                json!("1970-01-01T00:00Z"),
            ],
        );
        accepts(
            "t",
            "AWSTime",
            &[
                json!("12:30"),
                json!("12:30:15"),
                json!("12:30:15.123"),
                json!("12:30:15Z"),
                json!("12:30:15+01:00"),
            ],
            &[
                json!("24:00:00"),
                json!("12"),
                json!("12:30:15.1234567890"),
                json!("noon"),
            ],
        );
        accepts(
            "ts",
            "AWSTimestamp",
            &[json!(0), json!(1_700_000_000_000_i64)],
            &[json!("1700000000"), json!(1.5)],
        );
    }

    #[test]
    fn aws_string_scalars() {
        accepts(
            "email",
            "AWSEmail",
            &[
                json!("someone@example.com"),
                json!("a.b+c@mail.example.org"),
            ],
            &[
                json!("someone"),
                json!("@example.com"),
                json!("a@b"),
                json!("a b@example.com"),
            ],
        );
        accepts(
            "json",
            "AWSJSON",
            &[
                json!("{\"a\":1}"),
                json!("[1,2]"),
                json!("\"s\""),
                json!("3"),
            ],
            &[json!("{a:1}"), json!({"a": 1}), json!("")],
        );
        accepts(
            "url",
            "AWSURL",
            &[
                json!("https://www.example.com/dp/B000NZW3KC/"),
                json!("mailto:someone@example.com"),
            ],
            &[
                json!("www.example.com"),
                json!("https://example.com//double"),
                json!("http://"),
            ],
        );
        accepts(
            "phone",
            "AWSPhone",
            &[
                json!("+1 555 764 4377"),
                json!("555-764-4377"),
                json!("+44 20 7946 0958"),
            ],
            &[
                json!("764 4377"),
                json!("phone"),
                json!("+1 (555) 764 4377"),
            ],
        );
        accepts(
            "ip",
            "AWSIPAddress",
            &[
                json!("127.0.0.1"),
                json!("10.0.0.0/8"),
                json!("::1"),
                json!("2001:db8::/32"),
            ],
            &[json!("256.0.0.1"), json!("10.0.0.0/33"), json!("localhost")],
        );
        // Plain strings are not checked.
        assert!(probe("s", "String", json!("anything")).is_ok());
    }

    #[test]
    fn a_literal_scalar_is_checked_too_and_located() {
        let s = Schema::parse(SCALARS).expect("test schema");
        let errors =
            prepare(&s, &req("{\n  probe(email: \"nope\") }", json!({}))).expect_err("invalid");
        assert_eq!(errors[0].location, Some((2, 3)));
        assert!(
            errors[0].message.contains("'AWSEmail'"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_date_whose_last_six_bytes_split_a_character_is_refused_without_a_panic() {
        // Byte len - 6 falls inside `é`: the offset cut must not split it.
        assert!(!super::date_with_offset("aaaaaaaaaé12345"));
        assert!(!super::date_with_offset("2026-11-2é+01:00"));
        assert!(super::date_with_offset("2026-11-28+01:00"));
    }
}
