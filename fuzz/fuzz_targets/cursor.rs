//! `keel_core::cursor::CursorCodec`: opaque pagination cursors round-trip within
//! their scope and key, and nothing else opens them.
#![no_main]

use arbitrary::Arbitrary;
use keel_core::cursor::{CursorCodec, MAX_POSITION};
use libfuzzer_sys::fuzz_target;

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Debug, Arbitrary)]
struct Input {
    key: [u8; 32],
    other_key: [u8; 32],
    scope: String,
    other_scope: String,
    position: String,
    /// Decoded as is: arbitrary text must never panic nor open.
    junk: String,
    /// Which character of a real cursor to change, and to what.
    flip_at: usize,
    flip_to: u8,
    cut: usize,
}

fuzz_target!(|input: Input| {
    let codec = CursorCodec::new(input.key);
    let (scope, position) = (input.scope.as_str(), input.position.as_str());

    // Arbitrary text never panics and never opens.
    assert_eq!(
        codec.decode(scope, &input.junk),
        None,
        "junk opened: {:?}",
        input.junk
    );

    // `encode` takes positions up to MAX_POSITION bytes (row ids, sequences).
    if position.len() > MAX_POSITION {
        return;
    }
    let token = codec.encode(scope, position);
    assert!(
        token.bytes().all(|b| B64.contains(&b)),
        "not base64url: {token:?}"
    );
    if position.len() >= 8 {
        assert!(!token.contains(position), "cursor shows its position");
    }

    // Round trip within the scope (and deterministic decode).
    let opened = codec.decode(scope, &token);
    assert_eq!(
        opened.as_deref(),
        Some(position),
        "round trip failed for a {}-byte position ({} chars of cursor)",
        position.len(),
        token.len()
    );
    assert_eq!(codec.decode(scope, &token), opened);

    // Another scope, another key: refused.
    if input.other_scope != input.scope {
        assert_eq!(codec.decode(&input.other_scope, &token), None);
    }
    if input.other_key != input.key {
        assert_eq!(
            CursorCodec::new(input.other_key).decode(scope, &token),
            None
        );
    }

    // Any changed character or any truncation: refused.
    let mut altered = token.clone().into_bytes();
    let at = input.flip_at % altered.len();
    let to = B64[usize::from(input.flip_to) % B64.len()];
    if altered[at] != to {
        altered[at] = to;
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(codec.decode(scope, &altered), None, "altered cursor opened");
    }
    let cut = input.cut % token.len();
    assert_eq!(
        codec.decode(scope, &token[..cut]),
        None,
        "truncated cursor opened"
    );
});
