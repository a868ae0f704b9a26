//! Enhanced subscription filters, evaluated on each published mutation result.
//! Place in the data path: publisher -> AppSync -> **filter** -> subscriber.
//!
//! The JSON form is what `util.transform.toSubscriptionFilter` produces:
//! `{"filterGroup":[{"filters":[{"fieldName","operator","value"}]}]}`; groups
//! are ORed, filters within a group ANDed
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-enhanced-filtering.html>).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One `fieldName operator value` test. `fieldName` may be a dotted path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub field_name: String,
    pub operator: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterGroup {
    pub filters: Vec<Condition>,
}

/// A whole filter: delivered when any group matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub filter_group: Vec<FilterGroup>,
}

impl Filter {
    /// The single-condition filter `field eq value`.
    pub fn eq(field: &str, value: Value) -> Self {
        Self {
            filter_group: vec![FilterGroup {
                filters: vec![Condition {
                    field_name: field.to_owned(),
                    operator: "eq".into(),
                    value,
                }],
            }],
        }
    }

    /// Does `result` (the mutation's result, cut to its selection set) pass?
    pub fn matches(&self, result: &Value) -> bool {
        self.filter_group
            .iter()
            .any(|g| g.filters.iter().all(|c| c.matches(result)))
    }
}

impl Condition {
    fn matches(&self, result: &Value) -> bool {
        let field = self
            .field_name
            .split('.')
            .try_fold(result, |v, key| v.get(key));
        let Some(field) = field else {
            return false;
        };
        let v = &self.value;
        match self.operator.as_str() {
            "eq" => field == v,
            "ne" => field != v,
            "le" => compare(field, v).is_some_and(|o| o.is_le()),
            "lt" => compare(field, v).is_some_and(|o| o.is_lt()),
            "ge" => compare(field, v).is_some_and(|o| o.is_ge()),
            "gt" => compare(field, v).is_some_and(|o| o.is_gt()),
            "contains" => contains(field, v),
            "notContains" => !contains(field, v),
            "beginsWith" => {
                matches!((field, v), (Value::String(f), Value::String(p)) if f.starts_with(p.as_str()))
            }
            "in" => v.as_array().is_some_and(|a| a.contains(field)),
            "notIn" => v.as_array().is_some_and(|a| !a.contains(field)),
            "between" => match v.as_array().map(Vec::as_slice) {
                Some([lo, hi]) => {
                    compare(field, lo).is_some_and(|o| o.is_ge())
                        && compare(field, hi).is_some_and(|o| o.is_le())
                }
                _ => false,
            },
            "containsAny" => match (field, v) {
                (Value::Array(items), Value::Array(wanted)) => {
                    wanted.iter().any(|w| items.contains(w))
                }
                _ => false,
            },
            _ => false,
        }
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn contains(field: &Value, v: &Value) -> bool {
    match (field, v) {
        (Value::String(f), Value::String(s)) => f.contains(s.as_str()),
        (Value::Array(items), x) => items.contains(x),
        _ => false,
    }
}

/// The filter a subscription's own arguments imply: every given argument must
/// equal the result's field of the same name.
pub fn argument_filter(arguments: &serde_json::Map<String, Value>) -> Option<Filter> {
    let filters: Vec<Condition> = arguments
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| Condition {
            field_name: k.clone(),
            operator: "eq".into(),
            value: v.clone(),
        })
        .collect();
    (!filters.is_empty()).then(|| Filter {
        filter_group: vec![FilterGroup { filters }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_or_and_filters_and() {
        let f: Filter = serde_json::from_value(json!({"filterGroup": [
            {"filters": [{"fieldName": "owner", "operator": "eq", "value": "a"},
                         {"fieldName": "seq", "operator": "ge", "value": 2}]},
            {"filters": [{"fieldName": "usage.totalTokens", "operator": "gt", "value": 100}]}
        ]}))
        .expect("filter");
        assert!(f.matches(&json!({"owner": "a", "seq": 3})));
        assert!(!f.matches(&json!({"owner": "a", "seq": 1})));
        assert!(f.matches(&json!({"owner": "b", "seq": 0, "usage": {"totalTokens": 101}})));
        assert!(!f.matches(&json!({"owner": "b"})));
    }

    #[test]
    fn every_operator() {
        let r = json!({"s": "hello", "n": 5, "tags": ["x", "y"]});
        let ok = |field: &str, op: &str, value: Value| {
            Filter {
                filter_group: vec![FilterGroup {
                    filters: vec![Condition {
                        field_name: field.into(),
                        operator: op.into(),
                        value,
                    }],
                }],
            }
            .matches(&r)
        };
        assert!(ok("s", "eq", json!("hello")) && ok("s", "ne", json!("x")));
        assert!(
            ok("n", "le", json!(5))
                && ok("n", "lt", json!(6))
                && ok("n", "ge", json!(5))
                && ok("n", "gt", json!(4))
        );
        assert!(ok("s", "contains", json!("ell")) && ok("s", "notContains", json!("z")));
        assert!(
            ok("s", "beginsWith", json!("he"))
                && ok("n", "in", json!([1, 5]))
                && ok("n", "notIn", json!([1]))
        );
        assert!(ok("n", "between", json!([1, 9])) && ok("tags", "containsAny", json!(["y", "q"])));
        assert!(!ok("missing", "eq", json!(null)));
    }

    #[test]
    fn argument_filters_ignore_null_arguments() {
        let mut args = serde_json::Map::new();
        args.insert("conversationId".into(), json!("c1"));
        args.insert("other".into(), Value::Null);
        let f = argument_filter(&args).expect("filter");
        assert!(f.matches(&json!({"conversationId": "c1"})));
        assert!(!f.matches(&json!({"conversationId": "c2"})));
        assert!(!f.matches(&json!({})));
    }
}
