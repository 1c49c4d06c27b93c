//! `keel_core::filter::FilterPolicy`: parse arbitrary JSON as a policy, evaluate it
//! against arbitrary documents, and check the algebra the SPEC promises.
#![no_main]

use keel_core::filter::FilterPolicy;
use keel_fuzz::{json_inputs, resolves};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const BASE: &str = "/filter";

fn parse(policy: &Value) -> Result<FilterPolicy, keel_core::FieldError> {
    FilterPolicy::parse(policy, BASE)
}

/// Parses a policy the fuzz target built itself from a known-good shape.
fn must_parse(policy: Value) -> FilterPolicy {
    parse(&policy).unwrap_or_else(|e| panic!("constructed policy {policy} refused: {e}"))
}

/// Properties of one parse, whatever the input.
fn check_parse(policy: &Value) -> Option<FilterPolicy> {
    let first = parse(policy);
    // Deterministic.
    assert_eq!(
        first,
        parse(policy),
        "parse is not deterministic for {policy}"
    );
    match first {
        Err(e) => {
            // The pointer is prefixed with the base and names a part of the policy
            // that exists (escaped per RFC 6901).
            let rest = e.pointer.strip_prefix(BASE).unwrap_or_else(|| {
                panic!(
                    "pointer {:?} lacks the {BASE} prefix for {policy}",
                    e.pointer
                )
            });
            assert!(
                resolves(policy, rest),
                "pointer {:?} does not resolve in {policy}",
                e.pointer
            );
            assert!(!e.detail.is_empty());
            None
        }
        Ok(p) => Some(p),
    }
}

fn scalar(v: &Value) -> bool {
    !(v.is_array() || v.is_object())
}

/// For every path of object keys down to a scalar (or list) in `doc`, the nested
/// policies naming that value must hold. `path` never contains "$or", which a
/// policy reads as a group, not a key.
fn check_own_values(doc: &Value, at: &Value, path: &mut Vec<String>) {
    let Some(obj) = at.as_object() else { return };
    for (k, v) in obj {
        if k == "$or" || path.len() >= 8 {
            continue;
        }
        path.push(k.clone());
        let wrap = |conditions: Value| -> Value {
            path.iter()
                .rev()
                .fold(conditions, |inner, key| json!({ key.clone(): inner }))
        };
        // exists: true holds whenever the key is there; exists: false never does.
        assert!(must_parse(wrap(json!([{"exists": true}]))).matches(doc));
        assert!(!must_parse(wrap(json!([{"exists": false}]))).matches(doc));
        if scalar(v) {
            let exact = must_parse(wrap(json!([v])));
            assert!(exact.matches(doc), "{{{k}: [{v}]}} does not match {doc}");
            // The same through $or with a policy that holds for nothing here.
            let or = json!({"$or": [wrap(json!([v])), {"\u{0}missing": ["x"]}]});
            assert!(must_parse(or).matches(doc));
            // anything-but its own value never holds.
            let but = must_parse(wrap(json!([{"anything-but": [v]}])));
            assert!(!but.matches(doc), "anything-but [{v}] matches {doc}");
            if let Some(s) = v.as_str() {
                for (i, _) in s.char_indices().chain([(s.len(), ' ')]).take(16) {
                    assert!(must_parse(wrap(json!([{"prefix": &s[..i]}]))).matches(doc));
                    assert!(must_parse(wrap(json!([{"suffix": &s[i..]}]))).matches(doc));
                }
                let upper = s.to_ascii_uppercase();
                assert!(
                    must_parse(wrap(json!([{"equals-ignore-case": upper}]))).matches(doc),
                    "equals-ignore-case {upper:?} does not match {s:?}"
                );
                let not_prefix = must_parse(wrap(json!([{"anything-but": {"prefix": s}}])));
                assert!(!not_prefix.matches(doc));
            }
            if v.is_number() {
                assert!(must_parse(wrap(json!([{"numeric": ["=", v]}]))).matches(doc));
                assert!(must_parse(wrap(json!([{"numeric": [">=", v, "<=", v]}]))).matches(doc));
                assert!(!must_parse(wrap(json!([{"numeric": ["<", v]}]))).matches(doc));
            }
        } else if let Some(items) = v.as_array() {
            // A list value holds when any element does.
            for item in items.iter().filter(|i| scalar(i)) {
                assert!(must_parse(wrap(json!([item]))).matches(doc));
            }
        } else {
            check_own_values(doc, v, path);
        }
        path.pop();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(values) = json_inputs(data, 3) else {
        return;
    };
    let (policy, doc, other) = (&values[0], &values[1], &values[2]);

    // A subscription without a filter receives everything.
    assert!(FilterPolicy::match_all().matches(doc));

    let parsed = check_parse(policy);
    let parsed_other = check_parse(other);

    if let Some(p) = &parsed {
        // Total and deterministic evaluation; a clone behaves the same.
        let m = p.matches(doc);
        assert_eq!(m, p.matches(doc));
        assert_eq!(m, p.clone().matches(doc));

        // $or of two policies holds iff either does (when the combination is
        // itself within the limits).
        if let Some(q) = &parsed_other {
            let either = json!({"$or": [policy, other]});
            if let Ok(or) = parse(&either) {
                assert_eq!(
                    or.matches(doc),
                    m || q.matches(doc),
                    "$or disagrees for {either} on {doc}"
                );
            }
        }
    }

    // {"k": [{"exists": false}]} holds exactly when k is absent.
    if let Some(obj) = doc.as_object() {
        for k in obj.keys().filter(|k| *k != "$or").take(4) {
            let absent = must_parse(json!({ k.clone(): [{"exists": false}] }));
            assert!(!absent.matches(doc));
        }
    }
    let missing = must_parse(json!({"\u{0}missing": [{"exists": false}]}));
    assert_eq!(
        missing.matches(doc),
        doc.get("\u{0}missing").is_none(),
        "exists:false on {doc}"
    );

    // A policy naming a document's own values matches it.
    check_own_values(doc, doc, &mut Vec::new());
});
