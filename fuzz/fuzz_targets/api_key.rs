//! `keel_core::apikey`: API key parsing, secret-hash hex round trips and scope lists.
#![no_main]

use keel_core::apikey::{ApiKey, Scopes, SecretHash};
use libfuzzer_sys::fuzz_target;

fn token_ok(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The grammar `keel_<prefix>_<secret>` restated independently of the parser.
fn oracle(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix("keel_") else {
        return false;
    };
    let Some((prefix, secret)) = rest.split_once('_') else {
        return false;
    };
    (4..=32).contains(&prefix.len())
        && (16..=128).contains(&secret.len())
        && token_ok(prefix)
        && token_ok(secret)
}

fn check_key(raw: &str) {
    let parsed = ApiKey::parse(raw);
    assert_eq!(
        parsed.is_some(),
        oracle(raw),
        "parse disagrees with the grammar on {raw:?}"
    );
    let Some(key) = parsed else { return };
    // The canonical form is the input itself.
    assert_eq!(key.reveal(), raw);
    let again = ApiKey::parse(&key.reveal()).expect("a revealed key parses");
    assert_eq!(again.prefix(), key.prefix());
    assert!(again == key);
    assert!(raw.starts_with(&format!("keel_{}_", key.prefix())));
    // Debug output never shows the secret: it is exactly the masked form.
    assert_eq!(
        format!("{key:?}"),
        format!("ApiKey(keel_{}_***)", key.prefix())
    );
    // The stored hash verifies the key it came from.
    let hash = key.secret_hash();
    assert!(hash.matches(&key));
    check_hash(hash);
}

fn check_hash(hash: SecretHash) {
    let hex = hash.to_hex();
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(SecretHash::from_hex(&hex) == Some(hash));
    assert!(SecretHash::from_hex(&hex.to_ascii_uppercase()) == Some(hash));
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let raw = raw.as_ref();

    check_key(raw);
    // Also with the fixed head, so the fuzzer spends its time past it.
    check_key(&format!("keel_{raw}"));

    // Generated keys always parse back to themselves.
    if data.first() == Some(&0) {
        let key = ApiKey::generate();
        assert_eq!(ApiKey::parse(&key.reveal()), Some(key.clone()));
        check_key(&key.reveal());
    }

    // Any 32 bytes round-trip through hex.
    if data.len() >= 32 {
        check_hash(SecretHash(data[..32].try_into().unwrap()));
    }

    // from_hex on arbitrary text: accepted only when it is 64 hex digits, and then
    // it is the same hash the (lower-cased) text names.
    if let Some(hash) = SecretHash::from_hex(raw) {
        let canonical = raw.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(canonical, "from_hex accepted non-hex text {raw:?}");
        assert_eq!(hash.to_hex(), raw.to_ascii_lowercase());
    }

    // Scope lists: whatever parses re-parses from its canonical CSV to the same set.
    if let Ok(scopes) = Scopes::parse_csv(raw) {
        let csv = scopes.to_csv();
        assert_eq!(Scopes::parse_csv(&csv), Ok(scopes.clone()));
        assert!(scopes.iter().count() >= 1);
    }
});
