//! Password logins that cannot exhaust the server (`POST /v1/users`, and
//! `POST /v1/keys` with email and password).
//!
//! Argon2id is memory-hard on purpose (~19 MiB and tens of milliseconds per hash),
//! so anonymous callers must not be able to start many at once: hashes run under a
//! semaphore sized to the cores, and a request that finds it full gets 429 with
//! `Retry-After` instead of queueing memory. Failed logins are counted per client
//! address and per email; when either runs out, further attempts get 429 before
//! any hashing, which bounds password guessing.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use keel_store::cache::RateLimiter;

use crate::{limits::Limits, problem::ApiError};

pub struct LoginGuard {
    hashing: Arc<Semaphore>,
    by_address: RateLimiter,
    by_email: RateLimiter,
}

/// How long a caller who found every hashing slot busy should wait.
const HASHING_BUSY_RETRY_S: u64 = 1;

impl LoginGuard {
    pub fn new(limits: &Limits) -> Self {
        let per_minute = |n: u32| RateLimiter::new(f64::from(n) / 60.0, f64::from(n));
        Self {
            hashing: Arc::new(Semaphore::new(limits.hashing_permits())),
            by_address: per_minute(limits.login_failures_per_minute_per_address),
            by_email: per_minute(limits.login_failures_per_minute_per_email),
        }
    }

    /// A slot to hash a password in, or 429 when every slot is taken. The permit
    /// is moved into the hashing task, so a caller that gives up does not free
    /// the slot before the hash is done.
    pub fn hashing_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.hashing
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyRequests {
                retry_after_s: HASHING_BUSY_RETRY_S,
                detail: "too many password checks at once; retry shortly".into(),
            })
    }

    /// 429 when this address or this email has used up its failed logins.
    pub fn check(&self, address: Option<IpAddr>, email: &str) -> Result<(), ApiError> {
        let refused = |retry_after_s| ApiError::TooManyRequests {
            retry_after_s,
            detail: "too many failed logins; retry later".into(),
        };
        if let Some(address) = address {
            self.by_address
                .peek(&address.to_string())
                .map_err(refused)?;
        }
        self.by_email.peek(&email_key(email)).map_err(refused)
    }

    /// 429 when this address has used up its failed logins (console sign-in
    /// with a key, which has no email).
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match address {
            Some(address) => self
                .by_address
                .peek(&address.to_string())
                .map_err(|retry_after_s| ApiError::TooManyRequests {
                    retry_after_s,
                    detail: "too many failed sign-ins; retry later".into(),
                }),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in against the address.
    pub fn failed_address(&self, address: Option<IpAddr>) {
        if let Some(address) = address {
            self.by_address.take(&address.to_string());
        }
    }

    /// Counts a failed login against the address and the email.
    pub fn failed(&self, address: Option<IpAddr>, email: &str) {
        if let Some(address) = address {
            self.by_address.take(&address.to_string());
        }
        self.by_email.take(&email_key(email));
    }
}

fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The client's address, when the server knows it.
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_run_out_per_address_and_per_email() {
        let limits = Limits {
            login_failures_per_minute_per_address: 3,
            login_failures_per_minute_per_email: 2,
            ..Limits::default()
        };
        let guard = LoginGuard::new(&limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        guard.check(Some(a), "x@example.com").unwrap();
        guard.failed(Some(a), "x@example.com");
        guard.failed(Some(a), "X@example.com ");
        // The email is spent, from any address.
        assert!(guard.check(Some(b), "x@example.com").is_err());
        guard.check(Some(a), "y@example.com").unwrap();
        guard.failed(Some(a), "y@example.com");
        // The address is spent, for any email.
        assert!(guard.check(Some(a), "z@example.com").is_err());
        guard.check(Some(b), "z@example.com").unwrap();
    }

    #[test]
    fn hashing_slots_are_bounded() {
        let limits = Limits {
            password_hashes_in_flight: 2,
            ..Limits::default()
        };
        let guard = LoginGuard::new(&limits);
        let first = guard.hashing_permit().unwrap();
        let _second = guard.hashing_permit().unwrap();
        assert!(guard.hashing_permit().is_err());
        drop(first);
        assert!(guard.hashing_permit().is_ok());
    }
}
