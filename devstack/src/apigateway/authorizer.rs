//! Place in the data path: client --connect--> WebSocket API -> **the
//! `$connect` authorizer's verdict** -> the connection opens or is refused.
//!
//! API Gateway reads a Lambda authorizer's output as an IAM policy
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-lambda-authorizer-output.html>):
//! the connection is allowed when a statement allows `execute-api:Invoke`
//! on the method ARN and none denies it (403 otherwise); a function error
//! whose message is `Unauthorized` is 401, any other error or a malformed
//! output (no `principalId`, a `context` value that is not a string, number
//! or boolean, more than 8 KB) is 500. What passes becomes the connection's
//! identity: `principalId` and the `context` keys, which every route's
//! event carries in `requestContext.authorizer`.

use axum::http::StatusCode;
use serde_json::{Map, Value};

/// The largest authorizer output, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024;

/// Why a connection is refused: the status API Gateway answers the upgrade
/// with, and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403 or 500.
    pub status: StatusCode,
    /// `Unauthorized`, `Forbidden`, `Internal server error`.
    pub message: &'static str,
}

const UNAUTHORIZED: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "Unauthorized",
};
const FORBIDDEN: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "Forbidden",
};
const FAILED: Refusal = Refusal {
    status: StatusCode::INTERNAL_SERVER_ERROR,
    message: "Internal server error",
};

/// The connection's identity from the authorizer's result (`Ok`: its
/// output, `Err`: its error object) for `method_arn`.
///
/// # Errors
/// The [`Refusal`] API Gateway answers with.
pub fn verdict(result: Result<Value, Value>, method_arn: &str) -> Result<Value, Refusal> {
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            let message = error.get("errorMessage").and_then(Value::as_str);
            return Err(if message == Some("Unauthorized") {
                UNAUTHORIZED
            } else {
                FAILED
            });
        }
    };
    if output.to_string().len() > MAX_OUTPUT_BYTES {
        return Err(FAILED);
    }
    let principal = output
        .get("principalId")
        .and_then(Value::as_str)
        .ok_or(FAILED)?;
    let statements = output
        .pointer("/policyDocument/Statement")
        .and_then(Value::as_array)
        .ok_or(FAILED)?;
    let applies = |s: &&Value| covers_action(s) && covers_resource(s, method_arn);
    let effect = |s: &Value| s.get("Effect").and_then(Value::as_str).map(str::to_owned);
    let matching: Vec<String> = statements
        .iter()
        .filter(applies)
        .filter_map(effect)
        .collect();
    if matching.iter().any(|e| e == "Deny") || !matching.iter().any(|e| e == "Allow") {
        return Err(FORBIDDEN);
    }
    let mut identity = Map::new();
    identity.insert("principalId".into(), principal.into());
    if let Some(context) = output.get("context").filter(|c| !c.is_null()) {
        let context = context.as_object().ok_or(FAILED)?;
        for (key, value) in context {
            if !(value.is_string() || value.is_number() || value.is_boolean()) {
                return Err(FAILED);
            }
            identity.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(identity))
}

/// A statement's `Action` (one string or a list) names `execute-api:Invoke`.
fn covers_action(statement: &Value) -> bool {
    strings(statement.get("Action"))
        .iter()
        .any(|a| glob(a, "execute-api:Invoke"))
}

/// A statement's `Resource` (one string or a list) matches `arn`.
fn covers_resource(statement: &Value, arn: &str) -> bool {
    strings(statement.get("Resource"))
        .iter()
        .any(|r| glob(r, arn))
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:api/dev/$connect";

    fn policy(effect: &str, resource: &str) -> Value {
        json!({
            "principalId": "user-1",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
            ]},
            "context": {"username": "alice", "admin": false, "n": 3}
        })
    }

    #[test]
    fn an_allow_on_the_method_arn_admits_with_the_context_as_identity() {
        let identity = verdict(Ok(policy("Allow", ARN)), ARN).expect("allowed");
        assert_eq!(
            identity,
            json!({"principalId": "user-1", "username": "alice", "admin": false, "n": 3})
        );
        let wildcard = policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:api/*");
        assert!(verdict(Ok(wildcard), ARN).is_ok());
    }

    #[test]
    fn a_deny_or_an_allow_elsewhere_is_403() {
        assert_eq!(verdict(Ok(policy("Deny", ARN)), ARN), Err(FORBIDDEN));
        let elsewhere = policy(
            "Allow",
            "arn:aws:execute-api:us-east-1:123456789012:other/*",
        );
        assert_eq!(verdict(Ok(elsewhere), ARN), Err(FORBIDDEN));
    }

    #[test]
    fn unauthorized_is_401_and_other_failures_500() {
        let error = json!({"errorType": "Unauthorized", "errorMessage": "Unauthorized"});
        assert_eq!(verdict(Err(error), ARN), Err(UNAUTHORIZED));
        let crash = json!({"errorType": "Runtime.ExitError", "errorMessage": "boom"});
        assert_eq!(verdict(Err(crash), ARN), Err(FAILED));
        let mut nested = policy("Allow", ARN);
        nested["context"]["groups"] = json!(["a"]);
        assert_eq!(verdict(Ok(nested), ARN), Err(FAILED));
        assert_eq!(verdict(Ok(json!({"policyDocument": {}})), ARN), Err(FAILED));
        let mut big = policy("Allow", ARN);
        big["context"]["pad"] = json!("x".repeat(MAX_OUTPUT_BYTES));
        assert_eq!(verdict(Ok(big), ARN), Err(FAILED));
    }

    #[test]
    fn globs_match_as_iam_does() {
        assert!(glob("*", "anything"));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(!glob("abc", "abcd"));
    }
}
