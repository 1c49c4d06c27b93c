//! The publish body parser of `POST /v1/topics/{topic}/messages`
//! (`keel_server::routes::bus::{parse_batch, parse_message}`), driven the way the
//! `publish` handler drives it, against an independent statement of the rules.
#![no_main]

use keel_fuzz::{json_inputs, render_problem};
use keel_server::routes::bus::{parse_batch, parse_message, MAX_BATCH};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The pointers an error about `item` (at `at`) may carry, or `None` if the item is
/// a valid message. Several when more than one attribute is bad (any may be named).
fn expected_error(item: &Value, at: &str) -> Option<Vec<String>> {
    let Some(obj) = item.as_object() else {
        return Some(vec![at.to_owned()]);
    };
    if !obj.contains_key("body") {
        return Some(vec![format!("{at}/body")]);
    }
    match obj.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let bad: Vec<String> = map
                .iter()
                .filter(|(_, v)| !(v.is_string() || v.is_number()))
                .map(|(k, _)| format!("{at}/attributes/{}", escape(k)))
                .collect();
            if !bad.is_empty() {
                return Some(bad);
            }
        }
        Some(_) => return Some(vec![format!("{at}/attributes")]),
    }
    match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if (1..=128).contains(&id.len()) => None,
        Some(_) => Some(vec![format!("{at}/id")]),
    }
}

/// Checks one accepted message against the item it came from.
fn check_accepted(
    msg_body: &Value,
    attributes: &Map<String, Value>,
    id: Option<&str>,
    item: &Value,
) {
    assert_eq!(Some(msg_body), item.get("body"));
    for v in attributes.values() {
        assert!(
            v.is_string() || v.is_number(),
            "accepted attribute value {v}"
        );
    }
    match item.get("attributes") {
        Some(Value::Object(m)) => assert_eq!(attributes, m),
        _ => assert!(attributes.is_empty()),
    }
    if let Some(id) = id {
        assert!(
            (1..=128).contains(&id.len()),
            "accepted id of {} bytes",
            id.len()
        );
    }
    assert_eq!(id, item.get("id").and_then(Value::as_str));
}

/// An error pointer is one of the expected ones (attribute keys escaped as
/// RFC 6901 says: F3 in FUZZING.md, fixed).
fn check_pointer(pointer: &str, expected: &[String], item: &Value, _at: &str) {
    if expected.iter().any(|p| p == pointer) {
        return;
    }
    panic!("error pointer {pointer:?} is not one of {expected:?} for {item}");
}

fn check_batch(list: &[Value]) {
    let result = parse_batch(list, "messages", parse_message);
    let first_bad = list
        .iter()
        .enumerate()
        .find_map(|(i, item)| expected_error(item, &format!("/messages/{i}")).map(|e| (i, e)));
    match result {
        Ok(messages) => {
            assert!(!list.is_empty() && list.len() <= MAX_BATCH);
            assert!(
                first_bad.is_none(),
                "accepted a batch with a bad item {first_bad:?}"
            );
            assert_eq!(messages.len(), list.len());
            for (m, item) in messages.iter().zip(list) {
                check_accepted(&m.body, &m.attributes, m.dedup_id.as_deref(), item);
            }
        }
        Err(err) => {
            let (status, problem) = render_problem(err);
            if list.len() > MAX_BATCH {
                assert_eq!(status, 413);
                assert_eq!(problem["type"], "urn:keel:problem:payload-too-large");
            } else if list.is_empty() {
                assert_eq!(status, 400);
                assert_eq!(problem["errors"][0]["pointer"], "/messages");
            } else {
                assert_eq!(status, 400);
                let (i, expected) = first_bad.expect("a batch of valid items was refused");
                let errors = problem["errors"].as_array().expect("validation errors");
                assert_eq!(errors.len(), 1);
                let pointer = errors[0]["pointer"].as_str().unwrap();
                check_pointer(pointer, &expected, &list[i], &format!("/messages/{i}"));
            }
        }
    }
}

fn check_single(body: &Value) {
    let expected = expected_error(body, "");
    match parse_message(body, "") {
        Ok(m) => {
            assert!(expected.is_none(), "accepted {body}");
            check_accepted(&m.body, &m.attributes, m.dedup_id.as_deref(), body);
        }
        Err(e) => {
            let expected = expected.unwrap_or_else(|| panic!("refused valid {body}: {e}"));
            check_pointer(&e.pointer, &expected, body, "");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(values) = json_inputs(data, 1) else {
        return;
    };
    let body = &values[0];
    let mode = data[0];
    // As the handler does: a `messages` list is a batch, otherwise the body is one
    // message (a non-list `messages` is refused by the handler itself).
    match body.get("messages") {
        Some(Value::Array(list)) => {
            check_batch(list);
            // Around the size limit: the same items repeated to 990..=1009 entries.
            if mode & 4 != 0 && !list.is_empty() {
                let n = 990 + usize::from(mode >> 3) % 20;
                let big: Vec<Value> = list.iter().cycle().take(n).cloned().collect();
                check_batch(&big);
            }
        }
        Some(_) => {}
        None => check_single(body),
    }
    // Any list is also checked as a batch on its own.
    if let Value::Array(list) = body {
        check_batch(list);
    }
});
