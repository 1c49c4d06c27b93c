//! `keel_core::account` (Email, Password) and `keel_core::counter` (CounterName,
//! CounterValue): accepted values obey their documented rules.
#![no_main]

use keel_core::{
    account::{Email, Password},
    counter::{CounterName, CounterValue},
};
use keel_fuzz::arb_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_email(raw: &str) {
    let Ok(email) = Email::parse(raw) else {
        if let Err(e) = Email::parse(raw) {
            assert_eq!(e.pointer, "/email");
        }
        return;
    };
    assert!(!raw.is_empty() && raw.len() <= Email::MAX_LEN);
    assert_eq!(email.as_str(), raw.to_lowercase());
    assert_eq!(raw.matches('@').count(), 1);
    let (local, domain) = raw.split_once('@').unwrap();
    assert!(!local.is_empty());
    assert!(domain.contains('.') && domain.split('.').all(|l| !l.is_empty()));
    assert!(!raw.chars().any(|c| c.is_whitespace() || c.is_control()));
    // The stored (lower-cased) form is itself a valid email naming the same account.
    let stored = email.as_str();
    {
        assert!(
            stored.len() <= Email::MAX_LEN,
            "stored email is {} bytes (> {}) for {} input bytes: {raw:?}",
            stored.len(),
            Email::MAX_LEN,
            raw.len()
        );
        assert_eq!(Email::parse(stored), Ok(email.clone()));
    }
}

fn check_password(raw: &str) {
    let n = raw.chars().count();
    match Password::parse(raw) {
        Ok(p) => {
            assert!((8..=1024).contains(&n));
            assert_eq!(p.expose(), raw);
            assert_eq!(format!("{p:?}"), "Password(***)");
        }
        Err(e) => {
            assert!(!(8..=1024).contains(&n));
            assert_eq!(e.pointer, "/password");
        }
    }
}

fn check_counter_name(raw: &str) {
    let expected = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    match CounterName::parse(raw) {
        Ok(name) => {
            assert!(expected, "accepted counter name {raw:?}");
            assert_eq!(name.as_str(), raw);
        }
        Err(e) => {
            assert!(!expected, "refused counter name {raw:?}");
            assert_eq!(e.pointer, "/name");
        }
    }
}

fn check_counter_value(value: &Value) {
    let expected = match value {
        Value::Number(n) => n.as_u64().filter(|n| *n <= i64::MAX as u64),
        _ => None,
    };
    match CounterValue::from_json(value, "/current") {
        Ok(v) => {
            assert!((0..=i64::MAX).contains(&v.get()));
            assert_eq!(Some(v.get() as u64), expected, "accepted {value}");
            assert_eq!(CounterValue::new(v.get()), Some(v));
        }
        Err(e) => {
            assert_eq!(expected, None, "refused {value}");
            assert_eq!(e.pointer, "/current");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Split the bytes into three strings on 0x00: email, password, counter name.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let (email, password, name) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    check_email(email);
    check_email(&text);
    check_password(password);
    check_password(&text);
    check_counter_name(name);
    check_counter_name(&text);

    // Counter values from JSON text (as a request carries them) and from
    // structured values.
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        check_counter_value(&v);
    }
    let mut u = arbitrary::Unstructured::new(data);
    if let Ok(v) = arb_json(&mut u, 2) {
        check_counter_value(&v);
    }
    if let Some(n) = CounterValue::new(i64::from_le_bytes(
        data.get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 8]),
    )) {
        assert!(n.get() >= 0);
    }
});
