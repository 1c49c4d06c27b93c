//! Opaque pagination cursors (SPEC §0).
//!
//! A store pages by what it knows — a row sequence, an id — but handing those out
//! would tell a tenant how many rows every tenant wrote between two pages, and
//! invite clients to forge them. A cursor is therefore the store's position
//! encrypted and authenticated under a server key, bound to a *scope* (the tenant
//! and the listing), so it reveals nothing and works only where it was issued:
//!
//! `base64url(nonce[12] ‖ position XOR keystream ‖ tag[16])`, where the keystream
//! is HMAC-SHA256(key, "stream" ‖ nonce ‖ block counter) and the tag is
//! HMAC-SHA256(key, "tag" ‖ scope ‖ nonce ‖ ciphertext) — a PRF-based stream
//! cipher with encrypt-then-MAC, built from the HMAC the project already uses.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const NONCE: usize = 12;
const TAG: usize = 16;
/// Positions are row ids or sequence numbers; [`CursorCodec::encode`] takes up to
/// this many bytes, and `decode` reads every cursor it makes.
pub const MAX_POSITION: usize = 1024;

#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

impl CursorCodec {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    fn keystream_xor(&self, nonce: &[u8], data: &mut [u8]) {
        for (block, chunk) in data.chunks_mut(32).enumerate() {
            let mut mac = self.mac();
            mac.update(b"stream");
            mac.update(nonce);
            mac.update(&(block as u32).to_be_bytes());
            let pad = mac.finalize().into_bytes();
            for (byte, key) in chunk.iter_mut().zip(pad.iter()) {
                *byte ^= key;
            }
        }
    }

    fn tag(&self, scope: &str, nonce: &[u8], ciphertext: &[u8]) -> [u8; TAG] {
        let mut mac = self.mac();
        mac.update(b"tag");
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(nonce);
        mac.update(ciphertext);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&full[..TAG]);
        tag
    }

    /// The opaque cursor for `position` (at most [`MAX_POSITION`] bytes) within
    /// `scope`.
    pub fn encode(&self, scope: &str, position: &str) -> String {
        assert!(
            position.len() <= MAX_POSITION,
            "a cursor position is a row id or sequence, not {} bytes",
            position.len()
        );
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the operating system has randomness");
        let mut body = position.as_bytes().to_vec();
        self.keystream_xor(&nonce, &mut body);
        let tag = self.tag(scope, &nonce, &body);
        let mut token = Vec::with_capacity(NONCE + body.len() + TAG);
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&body);
        token.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The position inside a cursor this codec issued for `scope`; `None` for
    /// anything else (forged, altered, from another scope or another server key).
    pub fn decode(&self, scope: &str, cursor: &str) -> Option<String> {
        if cursor.len() > (NONCE + MAX_POSITION + TAG).div_ceil(3) * 4 {
            return None;
        }
        let token = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if token.len() < NONCE + TAG {
            return None;
        }
        let (nonce, rest) = token.split_at(NONCE);
        let (body, tag) = rest.split_at(rest.len() - TAG);
        let expected = self.tag(scope, nonce, body);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], tag)) {
            return None;
        }
        let mut position = body.to_vec();
        self.keystream_xor(nonce, &mut position);
        String::from_utf8(position).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new([7; 32])
    }

    #[test]
    fn cursors_hide_their_position_and_bind_their_scope() {
        let c = codec();
        let token = c.encode("tenant-a/audit", "123456");
        assert!(!token.contains("123456"));
        assert_ne!(token, c.encode("tenant-a/audit", "123456"), "nonces differ");
        assert_eq!(
            c.decode("tenant-a/audit", &token).as_deref(),
            Some("123456")
        );
        assert_eq!(c.decode("tenant-b/audit", &token), None);
        assert_eq!(
            CursorCodec::new([8; 32]).decode("tenant-a/audit", &token),
            None
        );
        for junk in ["", "123456", "!!!", "AAAA", &"A".repeat(5000)] {
            assert_eq!(c.decode("tenant-a/audit", junk), None, "{junk}");
        }
    }

    #[test]
    fn the_longest_position_round_trips() {
        // FUZZING.md F5: every position `encode` takes, `decode` reads back.
        let c = codec();
        let longest = "9".repeat(MAX_POSITION);
        let token = c.encode("s", &longest);
        assert_eq!(c.decode("s", &token), Some(longest));
    }

    proptest! {
        #[test]
        fn round_trip(scope in ".{0,40}", position in ".{0,80}") {
            let c = codec();
            let token = c.encode(&scope, &position);
            prop_assert_eq!(c.decode(&scope, &token), Some(position));
        }

        #[test]
        fn any_change_is_refused(position in "[0-9]{1,19}", at in 0usize..64, bit in 0u8..8) {
            let c = codec();
            let token = c.encode("s", &position);
            let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let at = at % raw.len();
            raw[at] ^= 1 << bit;
            prop_assert_eq!(c.decode("s", &URL_SAFE_NO_PAD.encode(raw)), None);
        }

        #[test]
        fn decoding_never_panics(junk in ".{0,200}") {
            let _ = codec().decode("s", &junk);
        }
    }
}
