//! API keys (SPEC §0, §1): `keel_<prefix>_<secret>`. The prefix is the key's public
//! name (listed, audited, looked up); only a SHA-256 hash of the secret is stored, and
//! hashes are compared in constant time. The secret is 192 bits from the OS's random
//! source, so a fast hash is enough — a slow password hash would only cost latency
//! on every request.

use std::{collections::BTreeSet, fmt, str::FromStr};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const PREFIX_LEN: usize = 12;
pub const SECRET_LEN: usize = 40;

/// A key as the caller presented it, split into its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    prefix: String,
    secret: String,
}

impl ApiKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            prefix: random_token(PREFIX_LEN),
            secret: random_token(SECRET_LEN),
        }
    }

    /// Splits `keel_<prefix>_<secret>`. Prefix and secret are lowercase ASCII letters
    /// and digits; the prefix 4 to 32 of them, the secret at least 16.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix("keel_")?;
        let (prefix, secret) = rest.split_once('_')?;
        let token_ok = |s: &str| s.bytes().all(|b| ALPHABET.contains(&b));
        if !(4..=32).contains(&prefix.len()) || secret.len() < 16 || secret.len() > 128 {
            return None;
        }
        if !token_ok(prefix) || !token_ok(secret) {
            return None;
        }
        Some(Self {
            prefix: prefix.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key, to hand to its owner exactly once.
    pub fn reveal(&self) -> String {
        format!("keel_{}_{}", self.prefix, self.secret)
    }

    pub fn secret_hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.secret.as_bytes()).into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(keel_{}_***)", self.prefix)
    }
}

/// SHA-256 of a key's secret: what the store keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Constant-time comparison, so response timing says nothing about how much of a
    /// guessed secret was right.
    pub fn matches(&self, presented: &ApiKey) -> bool {
        self.0.ct_eq(&presented.secret_hash().0).into()
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        // `from_str_radix` alone would take a leading `+`.
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

/// `len` characters from `[a-z0-9]`, each drawn uniformly from the OS random source
/// (5.17 bits each): keys' secrets, console session and CSRF tokens.
pub fn random_token(len: usize) -> String {
    // Rejection sampling keeps every character equally likely (256 is not a
    // multiple of 36).
    let limit = 256 - (256 % ALPHABET.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random source is available");
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// What a key may do (SPEC §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Read,
    Write,
    /// Manage the key's own tenant: keys, subscriptions, monitors, audit.
    Admin,
    /// Manage tenants.
    Operator,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Admin, Scope::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Operator => "operator",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}: expected read, write, admin or operator"))
    }
}

/// A non-empty set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Option<Self> {
        let set: BTreeSet<Scope> = scopes.into_iter().collect();
        (!set.is_empty()).then_some(Self(set))
    }

    /// What a key from `POST /v1/users` or `POST /v1/keys` gets: everything on its own
    /// tenant.
    pub fn account_owner() -> Self {
        Self([Scope::Read, Scope::Write, Scope::Admin].into())
    }

    /// What the bootstrap key gets.
    pub fn everything() -> Self {
        Self(Scope::ALL.into())
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// `read,write` — how scopes are written on the command line and in storage.
    pub fn to_csv(&self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }

    pub fn parse_csv(csv: &str) -> Result<Self, String> {
        let scopes = csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Scope::from_str)
            .collect::<Result<BTreeSet<_>, _>>()?;
        Scopes::new(scopes).ok_or_else(|| "at least one scope is required".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_verify() {
        let key = ApiKey::generate();
        let parsed = ApiKey::parse(&key.reveal()).unwrap();
        assert_eq!(parsed, key);
        assert!(key.secret_hash().matches(&parsed));
        let other = ApiKey::generate();
        assert!(!key.secret_hash().matches(&other));
        let hex = key.secret_hash().to_hex();
        assert_eq!(SecretHash::from_hex(&hex).unwrap(), key.secret_hash());
        assert!(!format!("{key:?}").contains(&key.reveal()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "keel_",
            "keel_abcd",
            "keel_abcd_short",
            "kee_abcd_0123456789abcdef",
            "keel_ABCD_0123456789abcdef",
            "keel_ab_0123456789abcdef",
            "keel_abcd_0123456789abcdeF",
            "Bearer keel_abcd_0123456789abcdef",
        ] {
            assert!(ApiKey::parse(bad).is_none(), "{bad}");
        }
        assert!(ApiKey::parse("keel_abcd_0123456789abcdef").is_some());
    }

    #[test]
    fn scopes() {
        let s = Scopes::parse_csv("write, read").unwrap();
        assert_eq!(s.to_csv(), "read,write");
        assert!(Scopes::parse_csv("").is_err());
        assert!(Scopes::parse_csv("read,root").is_err());
        assert!(!Scopes::account_owner().contains(Scope::Operator));
    }

    #[test]
    fn hashes_from_hex_are_hex_only() {
        // Found by fuzzing (FUZZING.md F2): a leading '+' was accepted.
        let plus = format!("{}+00000", "0".repeat(58));
        assert_eq!(plus.len(), 64);
        assert!(SecretHash::from_hex(&plus).is_none());
        assert!(SecretHash::from_hex(&"0f".repeat(32)).is_some());
    }
}
