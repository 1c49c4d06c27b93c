//! When a TLS certificate expires: `notAfter` read from the DER of an X.509
//! certificate (RFC 5280 §4.1), for `cert_expires_in_days`. Only the path to that
//! one field is walked — certificate, TBS certificate, version, serial number,
//! signature algorithm, issuer, validity — so no ASN.1 library is needed; the
//! certificate itself was already verified by the TLS stack.

use jiff::{civil::DateTime, tz::TimeZone, Timestamp};

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let length = rest[..octets]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[octets..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter`; `None` when the bytes are not a certificate.
pub fn not_after(der: &[u8]) -> Option<Timestamp> {
    let (tag, certificate, _) = element(der)?;
    (tag == SEQUENCE).then_some(())?;
    let (tag, tbs, _) = element(certificate)?;
    (tag == SEQUENCE).then_some(())?;
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (tag, validity, _) = element(rest)?;
    (tag == SEQUENCE).then_some(())?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// `YYMMDDHHMMSSZ` (years 1950–2049) or `YYYYMMDDHHMMSSZ`.
fn parse_time(tag: u8, text: &str) -> Option<Timestamp> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i16 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let part = |i: usize| rest[i..i + 2].parse::<i8>().ok();
    let at = DateTime::new(year, part(0)?, part(2)?, part(4)?, part(6)?, part(8)?, 0).ok()?;
    at.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// Whole days from `now` until the certificate expires (negative once expired).
pub fn days_left(der: &[u8], now: Timestamp) -> Option<i64> {
    let end = not_after(der)?;
    Some((end.as_second() - now.as_second()).div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    /// `openssl req -x509 -newkey ec … -days 30 -subj /CN=keel-test`:
    /// notAfter=Jan  1 20:05:02 2027 GMT.
    const CERT: &str = "MIIBazCCARCgAwIBAgIBBzAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlrZWVsLXRlc3QwHhcNMjYxMjAyMjAwNTAyWhcNMjcwMTAxMjAwNTAyWjAUMRIwEAYDVQQDDAlrZWVsLXRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR8qI6wl3dGuE4I6vKEkLd1Qdi3TOUNfozQ3iKgB0l9UEYTQPopur8HWIVYg8da0+RcQ2pmDDW/FxUtp68pfHmLo1MwUTAdBgNVHQ4EFgQUvfH8pXNO3tlolZKUgpRLHVCW+rcwHwYDVR0jBBgwFoAUvfH8pXNO3tlolZKUgpRLHVCW+rcwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAvkuIsM0up/t6DLlvk0vSfpak8HiuftPYNxSfvrY4g74CIQDM9OjL+DfvBsu4Aep6/DmvNK+23goWs3YR68K11/KQ9g==";

    fn der() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(CERT)
            .unwrap()
    }

    #[test]
    fn not_after_of_a_real_certificate() {
        assert_eq!(
            not_after(&der()).unwrap(),
            "2027-01-01T20:05:02Z".parse::<Timestamp>().unwrap()
        );
        let now: Timestamp = "2026-12-02T20:05:03Z".parse().unwrap();
        assert_eq!(days_left(&der(), now), Some(29));
        let later: Timestamp = "2027-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(days_left(&der(), later), Some(-1));
    }

    #[test]
    fn anything_else_is_none_never_a_panic() {
        let der = der();
        for cut in 0..der.len() {
            let _ = not_after(&der[..cut]);
        }
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            parse_time(UTC_TIME, "991231235959Z").unwrap().to_string(),
            "1999-12-31T23:59:59Z"
        );
        assert_eq!(
            parse_time(GENERALIZED_TIME, "20501231235959Z")
                .unwrap()
                .to_string(),
            "2050-12-31T23:59:59Z"
        );
        assert_eq!(parse_time(UTC_TIME, "991331235959Z"), None);
    }
}
