//! `keel_core::objects`: object keys, bucket names, notification rules, the S3
//! key encoding of event records and `Range` headers — every parser of outside
//! input the objects routes use.
#![no_main]

use arbitrary::Arbitrary;
use keel_core::objects::{
    decode_key_from_event, encode_key_for_event, parse_range, parse_rules, BucketName, ObjectEvent,
    ObjectKey,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    key: String,
    bucket: String,
    /// Parsed as JSON when it is JSON: a rule set.
    rules: String,
    range: String,
    size: u64,
}

fuzz_target!(|input: Input| {
    if let Ok(key) = ObjectKey::parse(&input.key) {
        let raw = key.as_str();
        assert!(!raw.is_empty() && raw.len() <= 1024);
        assert!(!raw.contains('\0') && !raw.starts_with('/'));
        assert!(raw.split('/').all(|segment| segment != ".."));
        let encoded = encode_key_for_event(&key);
        assert!(!encoded.contains(' '), "{encoded:?}");
        assert_eq!(
            decode_key_from_event(&encoded).as_deref(),
            Some(raw),
            "{encoded:?}"
        );
    }
    if let Ok(bucket) = BucketName::parse(&input.bucket) {
        let raw = bucket.as_str();
        assert!((3..=63).contains(&raw.len()) && !raw.contains(".."));
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&input.rules) {
        match parse_rules(&value) {
            Ok(rules) => {
                // Accepted rules never overlap: no key and event match two of them.
                if let Ok(key) = ObjectKey::parse(&input.key) {
                    for event in [ObjectEvent::Put, ObjectEvent::Delete] {
                        let matching = rules.iter().filter(|r| r.matches(event, &key)).count();
                        assert!(matching <= 1, "{matching} rules match {key:?}");
                    }
                }
            }
            Err(e) => assert!(!e.detail.is_empty()),
        }
    }
    if let Ok(range) = parse_range(&input.range, input.size) {
        assert!(
            range.start < range.end && range.end <= input.size,
            "{range:?}"
        );
    }
});
