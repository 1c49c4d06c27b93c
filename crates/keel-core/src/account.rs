//! Registration input for the counters service (SPEC §3): an email that names the
//! account and a password long enough to be worth hashing.

use crate::FieldError;

/// An email address, kept lower-cased so that `Ana@Example.com` and
/// `ana@example.com` are one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// Deliberately modest: one `@`, a non-empty local part, a dotted domain, no
    /// whitespace or control characters. Deliverability is not ours to decide.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid =
            || FieldError::new("/email", "email must be an address like name@example.com");
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !domain_ok {
            return Err(invalid());
        }
        // Lower-casing can lengthen text (`İ` is two bytes, its lower case three):
        // the limit holds for what is stored.
        let lowered = raw.to_lowercase();
        if lowered.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        Ok(Self(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 1,024 characters. The upper bound keeps one request from
/// buying minutes of Argon2 time.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(FieldError::new(
                "/password",
                format!("password must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(FieldError::new(
                "/password",
                format!("password must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("Ana@Example.COM").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@example",
            "a b@x.io",
            "a@b@c.io",
            "a@x..io",
            "a@.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("ééééééé").is_err());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-secret").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn the_length_limit_holds_for_the_stored_lower_case() {
        // Found by fuzzing (FUZZING.md F4): "İ" lower-cases from 2 to 3 bytes.
        let raw = format!("{}@x.io", "İ".repeat(124));
        assert!(raw.len() <= Email::MAX_LEN);
        assert!(Email::parse(&raw).is_err());
    }
}
