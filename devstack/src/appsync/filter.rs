//! Enhanced subscription filters, evaluated on each published mutation result.
//!
//! Place in the data path: resolver Lambda --publishChunk--> AppSync ->
//! fan-out -> **filter (per subscription)** -> subscriber.
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
    /// The result field tested (`fieldName`), e.g. `owner` or `usage.totalTokens`.
    pub field_name: String,
    /// One of [`OPERATORS`], e.g. `eq`, `in`, `beginsWith`.
    pub operator: String,
    /// The operand: one value, or a list for `in`, `notIn`, `between` and
    /// `containsAny`.
    #[serde(default)]
    pub value: Value,
}

/// Conditions that must all hold (`filters`, ANDed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterGroup {
    /// The conditions of the group.
    pub filters: Vec<Condition>,
}

/// A whole filter: delivered when any group matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// The groups (`filterGroup`), ORed.
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

/// The limits of an enhanced filter, from
/// <https://docs.aws.amazon.com/appsync/latest/devguide/aws-appsync-real-time-enhanced-filtering.html>
/// and the operator table of
/// <https://docs.aws.amazon.com/appsync/latest/devguide/extensions-js.html>.
pub mod limits {
    /// Filter groups in one filter.
    pub const MAX_GROUPS: usize = 10;
    /// Filters (conditions) in one group.
    pub const MAX_FILTERS_PER_GROUP: usize = 5;
    /// Values of an `in` or `notIn` list.
    pub const MAX_IN_VALUES: usize = 5;
    /// Values of a `containsAny` list.
    pub const MAX_CONTAINS_ANY_VALUES: usize = 20;
    /// Levels of a dotted `fieldName` path.
    pub const MAX_FIELD_DEPTH: usize = 5;
}

/// The operators an enhanced filter may use.
pub const OPERATORS: [&str; 13] = [
    "eq",
    "ne",
    "le",
    "lt",
    "ge",
    "gt",
    "contains",
    "notContains",
    "beginsWith",
    "in",
    "notIn",
    "between",
    "containsAny",
];

/// Why a filter a subscription resolver set cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// More than [`limits::MAX_GROUPS`] groups.
    #[error("a filter may have at most {max} filter groups, this one has {found}")]
    TooManyGroups {
        /// Groups in the filter.
        found: usize,
        /// The limit, [`limits::MAX_GROUPS`].
        max: usize,
    },
    /// A group with more than [`limits::MAX_FILTERS_PER_GROUP`] conditions.
    #[error("a filter group may have at most {max} filters, group {group} has {found}")]
    TooManyFilters {
        /// The group's index, from 0.
        group: usize,
        /// Conditions in that group.
        found: usize,
        /// The limit, [`limits::MAX_FILTERS_PER_GROUP`].
        max: usize,
    },
    /// An `in`, `notIn` or `containsAny` list over its limit.
    #[error("the operator '{operator}' of field '{field}' takes at most {max} values, got {found}")]
    TooManyValues {
        /// The condition's `fieldName`.
        field: String,
        /// The condition's operator.
        operator: String,
        /// Values in the list.
        found: usize,
        /// The operator's limit.
        max: usize,
    },
    /// A `fieldName` of more than [`limits::MAX_FIELD_DEPTH`] levels.
    #[error("the field path '{0}' is deeper than 5 levels")]
    FieldTooDeep(String),
    /// A `fieldName` that is empty or has an empty part (`a..b`).
    #[error("the field path '{0}' is empty or has an empty part")]
    BadFieldName(String),
    /// An operator not in [`OPERATORS`].
    #[error("unknown filter operator '{0}'")]
    UnknownOperator(String),
    /// A value of the wrong shape for its operator (e.g. `between` without two values).
    #[error("the operator '{operator}' of field '{field}' needs {needs}")]
    BadValue {
        /// The condition's `fieldName`.
        field: String,
        /// The condition's operator.
        operator: String,
        /// What the operator needs, e.g. `a list of two values`.
        needs: &'static str,
    },
    /// No groups, or a group without conditions.
    #[error("a filter needs at least one group, and each group at least one filter")]
    Empty,
}

impl Filter {
    /// Checks the filter against AppSync's limits and operator rules.
    ///
    /// # Errors
    ///
    /// The first broken rule, as a [`FilterError`].
    pub fn validate(&self) -> Result<(), FilterError> {
        use limits::*;
        if self.filter_group.is_empty() {
            return Err(FilterError::Empty);
        }
        if self.filter_group.len() > MAX_GROUPS {
            return Err(FilterError::TooManyGroups {
                found: self.filter_group.len(),
                max: MAX_GROUPS,
            });
        }
        for (i, group) in self.filter_group.iter().enumerate() {
            if group.filters.is_empty() {
                return Err(FilterError::Empty);
            }
            if group.filters.len() > MAX_FILTERS_PER_GROUP {
                return Err(FilterError::TooManyFilters {
                    group: i,
                    found: group.filters.len(),
                    max: MAX_FILTERS_PER_GROUP,
                });
            }
            for c in &group.filters {
                c.validate()?;
            }
        }
        Ok(())
    }
}

impl Condition {
    fn validate(&self) -> Result<(), FilterError> {
        let parts: Vec<&str> = self.field_name.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(FilterError::BadFieldName(self.field_name.clone()));
        }
        if parts.len() > limits::MAX_FIELD_DEPTH {
            return Err(FilterError::FieldTooDeep(self.field_name.clone()));
        }
        let op = self.operator.as_str();
        if !OPERATORS.contains(&op) {
            return Err(FilterError::UnknownOperator(self.operator.clone()));
        }
        let bad = |needs| FilterError::BadValue {
            field: self.field_name.clone(),
            operator: self.operator.clone(),
            needs,
        };
        let max = match op {
            "in" | "notIn" => limits::MAX_IN_VALUES,
            "containsAny" => limits::MAX_CONTAINS_ANY_VALUES,
            "between" => {
                return match self.value.as_array() {
                    Some(a) if a.len() == 2 => Ok(()),
                    _ => Err(bad("a list of two values")),
                };
            }
            _ => return Ok(()),
        };
        let Some(values) = self.value.as_array() else {
            return Err(bad("a list of values"));
        };
        if values.len() > max {
            return Err(FilterError::TooManyValues {
                field: self.field_name.clone(),
                operator: self.operator.clone(),
                found: values.len(),
                max,
            });
        }
        Ok(())
    }

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

    fn filter_of(groups: usize, per_group: usize, cond: &Condition) -> Filter {
        Filter {
            filter_group: (0..groups)
                .map(|_| FilterGroup {
                    filters: vec![cond.clone(); per_group],
                })
                .collect(),
        }
    }

    fn cond(field: &str, op: &str, value: Value) -> Condition {
        Condition {
            field_name: field.into(),
            operator: op.into(),
            value,
        }
    }

    #[test]
    fn group_and_filter_counts_are_limited() {
        let c = cond("owner", "eq", json!("a"));
        assert_eq!(filter_of(10, 5, &c).validate(), Ok(()));
        assert!(matches!(
            filter_of(11, 1, &c).validate(),
            Err(FilterError::TooManyGroups { found: 11, max: 10 })
        ));
        assert!(matches!(
            filter_of(1, 6, &c).validate(),
            Err(FilterError::TooManyFilters {
                found: 6,
                max: 5,
                ..
            })
        ));
        assert_eq!(filter_of(0, 1, &c).validate(), Err(FilterError::Empty));
        assert_eq!(filter_of(1, 0, &c).validate(), Err(FilterError::Empty));
    }

    #[test]
    fn list_operators_are_limited() {
        let list = |n: usize| Value::Array((0..n).map(|i| json!(i)).collect());
        for op in ["in", "notIn"] {
            assert_eq!(filter_of(1, 1, &cond("n", op, list(5))).validate(), Ok(()));
            assert!(matches!(
                filter_of(1, 1, &cond("n", op, list(6))).validate(),
                Err(FilterError::TooManyValues {
                    found: 6,
                    max: 5,
                    ..
                })
            ));
            assert!(matches!(
                filter_of(1, 1, &cond("n", op, json!(1))).validate(),
                Err(FilterError::BadValue { .. })
            ));
        }
        assert_eq!(
            filter_of(1, 1, &cond("tags", "containsAny", list(20))).validate(),
            Ok(())
        );
        assert!(matches!(
            filter_of(1, 1, &cond("tags", "containsAny", list(21))).validate(),
            Err(FilterError::TooManyValues {
                found: 21,
                max: 20,
                ..
            })
        ));
        assert!(matches!(
            filter_of(1, 1, &cond("n", "between", list(3))).validate(),
            Err(FilterError::BadValue { .. })
        ));
        assert!(matches!(
            filter_of(1, 1, &cond("n", "like", json!("x"))).validate(),
            Err(FilterError::UnknownOperator(_))
        ));
    }

    #[test]
    fn field_paths_are_at_most_five_deep() {
        assert_eq!(
            filter_of(1, 1, &cond("a.b.c.d.e", "eq", json!(1))).validate(),
            Ok(())
        );
        assert!(matches!(
            filter_of(1, 1, &cond("a.b.c.d.e.f", "eq", json!(1))).validate(),
            Err(FilterError::FieldTooDeep(_))
        ));
        assert!(matches!(
            filter_of(1, 1, &cond("a..b", "eq", json!(1))).validate(),
            Err(FilterError::BadFieldName(_))
        ));
        let deep = json!({"a": {"b": {"c": {"d": {"e": 1}}}}});
        assert!(filter_of(1, 1, &cond("a.b.c.d.e", "eq", json!(1))).matches(&deep));
    }
}
