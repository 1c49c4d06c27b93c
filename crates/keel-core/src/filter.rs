//! SNS-syntax filter policies (SPEC §4): which messages a subscription receives.
//!
//! A policy is a JSON object. Its keys name message attributes (or, with
//! `"filter_scope": "body"`, fields of the JSON body, nested objects naming nested
//! fields); each key's value is a list of conditions of which one must hold, and all
//! keys must hold. `"$or": [policy, …]` holds when any of its policies does.
//! Conditions: an exact string, number, boolean or null; `{"prefix": s}`,
//! `{"suffix": s}`, `{"equals-ignore-case": s}`, `{"anything-but": v | [v…] |
//! {"prefix": s}}`, `{"numeric": [op, n (, op, n)]}` with op in `= < <= > >=`, and
//! `{"exists": bool}`. When the value in the message is a list, the key holds if any
//! element satisfies a condition. [`FilterPolicy::parse`] rejects a malformed policy
//! with a pointer to the bad part.

use serde_json::{Map, Value};

use crate::FieldError;

/// Bounds that keep a policy cheap to evaluate on every message.
pub const MAX_DEPTH: usize = 8;
/// Conditions, `$or` alternatives and keys together (SNS allows 150 combinations).
pub const MAX_CONDITIONS: usize = 150;
/// Alternatives in one `$or`.
pub const MAX_OR_ALTERNATIVES: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    /// Every key must hold.
    keys: Vec<KeyRule>,
    /// Each `$or` group needs one of its policies to hold.
    any_of: Vec<Vec<FilterPolicy>>,
}

#[derive(Debug, Clone, PartialEq)]
struct KeyRule {
    path: Vec<String>,
    /// One must hold.
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(Value),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    AnythingBut(Vec<Value>),
    AnythingButPrefix(String),
    Numeric(Vec<(NumericOp, f64)>),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumericOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl FilterPolicy {
    /// A policy that matches everything (a subscription without a filter).
    pub fn match_all() -> Self {
        Self {
            keys: Vec::new(),
            any_of: Vec::new(),
        }
    }

    /// Parses a policy; errors point into it, prefixed with `base` (e.g. `/filter`).
    pub fn parse(policy: &Value, base: &str) -> Result<Self, FieldError> {
        let mut count = 0;
        let parsed = parse_object(policy, base, &mut Vec::new(), 0, &mut count)?;
        Ok(parsed)
    }

    /// Whether `document` (the attributes object, or the body) satisfies the policy.
    pub fn matches(&self, document: &Value) -> bool {
        self.keys.iter().all(|rule| rule.matches(document))
            && self
                .any_of
                .iter()
                .all(|group| group.iter().any(|p| p.matches(document)))
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn parse_object(
    value: &Value,
    pointer: &str,
    path: &mut Vec<String>,
    depth: usize,
    count: &mut usize,
) -> Result<FilterPolicy, FieldError> {
    let object = value
        .as_object()
        .ok_or_else(|| FieldError::new(pointer, "a filter policy must be a JSON object"))?;
    if depth > MAX_DEPTH {
        return Err(FieldError::new(
            pointer,
            format!("filter policies nest at most {MAX_DEPTH} levels"),
        ));
    }
    let mut policy = FilterPolicy::match_all();
    for (key, rule) in object {
        let here = format!("{pointer}/{}", escape(key));
        if key == "$or" {
            let alternatives = rule.as_array().filter(|a| a.len() >= 2).ok_or_else(|| {
                FieldError::new(&here, "$or takes a list of at least two policies")
            })?;
            if alternatives.len() > MAX_OR_ALTERNATIVES {
                return Err(FieldError::new(
                    &here,
                    format!("$or takes at most {MAX_OR_ALTERNATIVES} policies"),
                ));
            }
            let mut group = Vec::new();
            for (i, alternative) in alternatives.iter().enumerate() {
                count_one(count, &format!("{here}/{i}"))?;
                let mut inner_path = path.clone();
                group.push(parse_object(
                    alternative,
                    &format!("{here}/{i}"),
                    &mut inner_path,
                    depth + 1,
                    count,
                )?);
            }
            policy.any_of.push(group);
            continue;
        }
        path.push(key.clone());
        match rule {
            Value::Object(_) => {
                let nested = parse_object(rule, &here, path, depth + 1, count)?;
                policy.keys.extend(nested.keys);
                policy.any_of.extend(nested.any_of);
            }
            Value::Array(conditions) => {
                if conditions.is_empty() {
                    return Err(FieldError::new(&here, "a key needs at least one condition"));
                }
                let mut parsed = Vec::new();
                for (i, condition) in conditions.iter().enumerate() {
                    count_one(count, &format!("{here}/{i}"))?;
                    parsed.push(parse_condition(condition, &format!("{here}/{i}"))?);
                }
                policy.keys.push(KeyRule {
                    path: path.clone(),
                    conditions: parsed,
                });
            }
            _ => {
                return Err(FieldError::new(
                    &here,
                    "a key's value must be a list of conditions or a nested policy",
                ));
            }
        }
        path.pop();
    }
    Ok(policy)
}

/// Counts one more part of the policy against [`MAX_CONDITIONS`].
fn count_one(count: &mut usize, pointer: &str) -> Result<(), FieldError> {
    *count += 1;
    if *count > MAX_CONDITIONS {
        return Err(FieldError::new(
            pointer,
            format!("a policy holds at most {MAX_CONDITIONS} conditions and $or alternatives"),
        ));
    }
    Ok(())
}

fn parse_condition(condition: &Value, pointer: &str) -> Result<Condition, FieldError> {
    let Value::Object(operator) = condition else {
        return Ok(Condition::Exact(condition.clone()));
    };
    if operator.len() != 1 {
        return Err(FieldError::new(
            pointer,
            "a condition object has exactly one operator",
        ));
    }
    let (name, argument) = operator.iter().next().expect("one entry");
    let at = format!("{pointer}/{}", escape(name));
    let string = |what: &str| {
        argument
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| FieldError::new(&at, format!("{what} takes a string")))
    };
    match name.as_str() {
        "prefix" => Ok(Condition::Prefix(string("prefix")?)),
        "suffix" => Ok(Condition::Suffix(string("suffix")?)),
        "equals-ignore-case" => Ok(Condition::EqualsIgnoreCase(
            // Lowered the same way as the values it is compared with.
            string("equals-ignore-case")?
                .chars()
                .flat_map(char::to_lowercase)
                .collect(),
        )),
        "exists" => argument
            .as_bool()
            .map(Condition::Exists)
            .ok_or_else(|| FieldError::new(&at, "exists takes true or false")),
        "anything-but" => parse_anything_but(argument, &at),
        "numeric" => parse_numeric(argument, &at),
        other => Err(FieldError::new(&at, format!("unknown operator {other:?}"))),
    }
}

fn parse_anything_but(argument: &Value, at: &str) -> Result<Condition, FieldError> {
    match argument {
        Value::Object(inner) => match (inner.len(), inner.get("prefix")) {
            (1, Some(Value::String(prefix))) => Ok(Condition::AnythingButPrefix(prefix.clone())),
            _ => Err(FieldError::new(
                at,
                "anything-but takes a value, a list of values or {\"prefix\": s}",
            )),
        },
        Value::Array(values) => {
            if values.is_empty() || values.iter().any(|v| v.is_object() || v.is_array()) {
                return Err(FieldError::new(
                    at,
                    "anything-but takes a non-empty list of strings or numbers",
                ));
            }
            Ok(Condition::AnythingBut(values.clone()))
        }
        scalar => Ok(Condition::AnythingBut(vec![scalar.clone()])),
    }
}

fn parse_numeric(argument: &Value, at: &str) -> Result<Condition, FieldError> {
    let parts = argument
        .as_array()
        .filter(|p| p.len() == 2 || p.len() == 4)
        .ok_or_else(|| FieldError::new(at, "numeric takes [op, n] or [op, n, op, n]"))?;
    let mut bounds = Vec::new();
    for (i, pair) in parts.chunks(2).enumerate() {
        let op = match pair[0].as_str() {
            Some("=") => NumericOp::Eq,
            Some("<") => NumericOp::Lt,
            Some("<=") => NumericOp::Le,
            Some(">") => NumericOp::Gt,
            Some(">=") => NumericOp::Ge,
            _ => {
                return Err(FieldError::new(
                    format!("{at}/{}", 2 * i),
                    "operator must be one of = < <= > >=",
                ))
            }
        };
        let n = pair[1].as_f64().ok_or_else(|| {
            FieldError::new(format!("{at}/{}", 2 * i + 1), "bound must be a number")
        })?;
        bounds.push((op, n));
    }
    if let [(first, _), (second, _)] = bounds.as_slice() {
        let lower = |op: &NumericOp| matches!(op, NumericOp::Gt | NumericOp::Ge);
        let upper = |op: &NumericOp| matches!(op, NumericOp::Lt | NumericOp::Le);
        if !(lower(first) && upper(second)) {
            return Err(FieldError::new(
                at,
                "a range is [\">\" or \">=\", low, \"<\" or \"<=\", high]",
            ));
        }
        if bounds[0].1 > bounds[1].1 {
            return Err(FieldError::new(
                at,
                "the range's low bound is above its high bound",
            ));
        }
    }
    Ok(Condition::Numeric(bounds))
}

impl KeyRule {
    fn matches(&self, document: &Value) -> bool {
        let found = lookup(document, &self.path);
        self.conditions.iter().any(|condition| match found {
            None => matches!(condition, Condition::Exists(false)),
            Some(Value::Array(items)) => match condition {
                Condition::Exists(exists) => *exists,
                // anything-but on a list: no element may be excluded.
                Condition::AnythingBut(_) | Condition::AnythingButPrefix(_) => {
                    !items.is_empty() && items.iter().all(|item| condition.holds(item))
                }
                _ => items.iter().any(|item| condition.holds(item)),
            },
            Some(value) => condition.holds(value),
        })
    }
}

fn lookup<'a>(document: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = document;
    for segment in path {
        current = current
            .as_object()
            .and_then(|o: &Map<String, Value>| o.get(segment))?;
    }
    Some(current)
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Condition {
    fn holds(&self, value: &Value) -> bool {
        match self {
            Condition::Exact(expected) => same_scalar(expected, value),
            Condition::Prefix(p) => value.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Condition::Suffix(p) => value.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            // Compared char by char, stopping at the first difference: a huge
            // attribute costs no more than the (short) pattern, and nothing is
            // allocated per message.
            Condition::EqualsIgnoreCase(p) => value
                .as_str()
                .is_some_and(|s| s.chars().flat_map(char::to_lowercase).eq(p.chars())),
            Condition::AnythingBut(excluded) => {
                !value.is_null() && !excluded.iter().any(|e| same_scalar(e, value))
            }
            Condition::AnythingButPrefix(p) => {
                value.as_str().is_some_and(|s| !s.starts_with(p.as_str()))
            }
            Condition::Numeric(bounds) => value.as_f64().is_some_and(|n| {
                bounds.iter().all(|(op, bound)| match op {
                    NumericOp::Eq => n == *bound,
                    NumericOp::Lt => n < *bound,
                    NumericOp::Le => n <= *bound,
                    NumericOp::Gt => n > *bound,
                    NumericOp::Ge => n >= *bound,
                })
            }),
            Condition::Exists(exists) => *exists,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn policy(v: Value) -> FilterPolicy {
        FilterPolicy::parse(&v, "/filter").unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    /// The examples from SNS's filter policy documentation, as tables of
    /// (policy, message, expected).
    #[test]
    fn or_lists_and_empty_alternatives_are_bounded() {
        let many: Vec<Value> = (0..MAX_OR_ALTERNATIVES + 1).map(|_| json!({})).collect();
        let err = FilterPolicy::parse(&json!({"$or": many}), "/filter").unwrap_err();
        assert_eq!(err.pointer, "/filter/$or");
        // Empty alternatives still count towards the total.
        let groups: Vec<Value> = (0..6)
            .map(
                |_| json!({"$or": (0..MAX_OR_ALTERNATIVES).map(|_| json!({})).collect::<Vec<_>>()}),
            )
            .collect();
        let err = FilterPolicy::parse(&json!({"$or": groups}), "/filter").unwrap_err();
        assert!(err.detail.contains("at most"), "{err:?}");
    }

    #[test]
    fn equals_ignore_case_on_a_huge_value_stops_early() {
        let policy =
            FilterPolicy::parse(&json!({"a": [{"equals-ignore-case": "HeLLo"}]}), "/f").unwrap();
        assert!(policy.matches(&json!({"a": "hello"})));
        assert!(policy.matches(&json!({"a": "HELLO"})));
        assert!(!policy.matches(&json!({"a": "hello!"})));
        assert!(!policy.matches(&json!({"a": "x".repeat(1 << 20)})));
    }

    #[test]
    fn sns_examples() {
        let attributes = json!({
            "customer_interests": ["soccer", "rugby", "hockey"],
            "store": "example_corp",
            "event": "order_placed",
            "price_usd": 210.75,
            "encrypted": false
        });
        let cases = [
            (json!({"store": ["example_corp"]}), true),
            (json!({"store": ["other_corp"]}), false),
            (json!({"store": ["other_corp", "example_corp"]}), true),
            (json!({"customer_interests": ["rugby"]}), true),
            (json!({"customer_interests": ["baseball"]}), false),
            (json!({"price_usd": [{"numeric": [">=", 100]}]}), true),
            (
                json!({"price_usd": [{"numeric": [">", 0, "<=", 150]}]}),
                false,
            ),
            (json!({"price_usd": [{"numeric": ["=", 210.75]}]}), true),
            (json!({"price_usd": [210.75]}), true),
            (json!({"event": [{"prefix": "order-"}]}), false),
            (json!({"event": [{"prefix": "order_"}]}), true),
            (json!({"event": [{"suffix": "_placed"}]}), true),
            (
                json!({"store": [{"equals-ignore-case": "EXAMPLE_CORP"}]}),
                true,
            ),
            (json!({"store": [{"anything-but": "example_corp"}]}), false),
            (json!({"store": [{"anything-but": ["a", "b"]}]}), true),
            (
                json!({"store": [{"anything-but": {"prefix": "example"}}]}),
                false,
            ),
            (
                json!({"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}),
                false,
            ),
            (
                json!({"customer_interests": [{"anything-but": ["tennis"]}]}),
                true,
            ),
            (json!({"encrypted": [false]}), true),
            (json!({"missing": [{"exists": false}]}), true),
            (json!({"missing": [{"exists": true}]}), false),
            (json!({"store": [{"exists": true}]}), true),
            (json!({"store": [{"exists": false}]}), false),
            (json!({"missing": [{"anything-but": "x"}]}), false),
            (
                json!({"store": ["example_corp"], "event": ["order_cancelled"]}),
                false,
            ),
            (
                json!({"store": ["example_corp"], "event": ["order_placed"]}),
                true,
            ),
            (
                json!({"$or": [{"store": ["nope"]}, {"event": ["order_placed"]}]}),
                true,
            ),
            (
                json!({"$or": [{"store": ["nope"]}, {"event": ["nope"]}]}),
                false,
            ),
            (
                json!({"store": ["example_corp"], "$or": [{"price_usd": [{"numeric": ["<", 10]}]}, {"encrypted": [false]}]}),
                true,
            ),
            (json!({}), true),
        ];
        for (p, expected) in cases {
            assert_eq!(policy(p.clone()).matches(&attributes), expected, "{p}");
        }
    }

    #[test]
    fn body_scope_nests() {
        let body = json!({"order": {"total": 42, "lines": [{"sku": "a"}], "country": "PT"}, "kind": "created"});
        assert!(
            policy(json!({"order": {"country": ["PT", "ES"]}, "kind": ["created"]})).matches(&body)
        );
        assert!(!policy(json!({"order": {"country": ["FR"]}})).matches(&body));
        assert!(
            policy(json!({"order": {"total": [{"numeric": [">", 40, "<", 50]}]}})).matches(&body)
        );
        assert!(
            !policy(json!({"order": {"missing": {"deeper": [{"exists": true}]}}})).matches(&body)
        );
        assert!(policy(json!({"order": {"missing": [{"exists": false}]}})).matches(&body));
    }

    #[test]
    fn malformed_policies_point_at_the_bad_part() {
        let cases = [
            (json!([]), "/filter"),
            (json!({"a": "x"}), "/filter/a"),
            (json!({"a": []}), "/filter/a"),
            (json!({"a": [{"prefix": 1}]}), "/filter/a/0/prefix"),
            (json!({"a": ["ok", {"bogus": 1}]}), "/filter/a/1/bogus"),
            (
                json!({"a": [{"prefix": "x", "suffix": "y"}]}),
                "/filter/a/0",
            ),
            (
                json!({"a": [{"numeric": [">", "x"]}]}),
                "/filter/a/0/numeric/1",
            ),
            (
                json!({"a": [{"numeric": ["~", 1]}]}),
                "/filter/a/0/numeric/0",
            ),
            (
                json!({"a": [{"numeric": [">", 1, ">", 2]}]}),
                "/filter/a/0/numeric",
            ),
            (
                json!({"a": [{"numeric": [">", 5, "<", 2]}]}),
                "/filter/a/0/numeric",
            ),
            (json!({"a": [{"exists": "yes"}]}), "/filter/a/0/exists"),
            (
                json!({"a": [{"anything-but": []}]}),
                "/filter/a/0/anything-but",
            ),
            (
                json!({"a": [{"anything-but": {"suffix": "x"}}]}),
                "/filter/a/0/anything-but",
            ),
            (json!({"$or": [{"a": ["x"]}]}), "/filter/$or"),
            (json!({"$or": [{"a": ["x"]}, {"b": 1}]}), "/filter/$or/1/b"),
            (json!({"a/b": [{"nope": 1}]}), "/filter/a~1b/0/nope"),
        ];
        for (p, pointer) in cases {
            let err = FilterPolicy::parse(&p, "/filter").expect_err(&p.to_string());
            assert_eq!(err.pointer, pointer, "{p}: {}", err.detail);
        }
        let too_many: Vec<Value> = (0..151).map(|i| json!(i)).collect();
        assert!(FilterPolicy::parse(&json!({"a": too_many}), "/filter").is_err());
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-z]{0,6}".prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ]
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            scalar(),
            Just(Value::Null),
            (-1e6f64..1e6).prop_map(Value::from)
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    "[a-z$]{1,8}|prefix|numeric|exists|anything-but|\\$or",
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever arrives as a policy, parsing answers and never panics; a parsed
        /// policy evaluates any document without panicking.
        #[test]
        fn parsing_and_matching_never_panic(p in any_json(), doc in any_json()) {
            if let Ok(policy) = FilterPolicy::parse(&p, "/filter") {
                let _ = policy.matches(&doc);
            }
        }

        /// A policy naming a message's own values matches it; anything-but its own
        /// value does not.
        #[test]
        fn own_values_match(attrs in prop::collection::btree_map("[a-z]{1,5}", scalar(), 1..5)) {
            let doc = Value::Object(attrs.clone().into_iter().collect());
            let exact = Value::Object(attrs.iter().map(|(k, v)| (k.clone(), json!([v]))).collect());
            prop_assert!(policy(exact).matches(&doc));
            for (k, v) in &attrs {
                let but = policy(json!({ k.clone(): [{"anything-but": [v]}] }));
                let exists = policy(json!({ k.clone(): [{"exists": true}] }));
                prop_assert!(!but.matches(&doc));
                prop_assert!(exists.matches(&doc));
            }
        }

        /// A numeric range holds exactly for the numbers inside it.
        #[test]
        fn numeric_ranges(n in -1e6f64..1e6, low in -1e6f64..1e6, width in 0f64..1e6) {
            let high = low + width;
            let p = policy(json!({"n": [{"numeric": [">=", low, "<", high]}]}));
            prop_assert_eq!(p.matches(&json!({"n": n})), n >= low && n < high);
            prop_assert!(!p.matches(&json!({"n": n.to_string()})), "numbers in strings are strings");
        }
    }
}
