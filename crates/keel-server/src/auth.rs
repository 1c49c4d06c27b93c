//! Authentication, scopes and rate limits (SPEC §0, §1).
//!
//! A bearer key is split into prefix and secret; the stored key is found by prefix
//! and its secret hash compared in constant time. Verified keys are cached for
//! [`ServerConfig::key_cache_ttl`] so the hot path does not read the store on every
//! request; a revocation through this replica drops the entry at once. Last-use
//! times are buffered and written in batches.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};
use jiff::Timestamp;
use keel_core::{
    apikey::{ApiKey, Scope, Scopes, SecretHash},
    clock::Clock,
};
use keel_store::{Store, TenantId};
use parking_lot::Mutex;

use crate::{problem::ApiError, rate_limit::RateLimiter, server_config::ServerConfig};

/// Who is calling, as far as the edge has established.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// Shared with the key cache: cloning a caller costs a reference count.
    Key(Arc<KeyContext>),
}

#[derive(Debug, Clone)]
pub struct KeyContext {
    pub tenant_id: TenantId,
    pub prefix: String,
    pub scopes: Scopes,
}

impl KeyContext {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this key lacks the {:?} scope",
                scope.as_str()
            )))
        }
    }
}

/// Why authentication failed, with the tenant the presented prefix belongs to (if
/// any), so the failure can be audited under it.
#[derive(Debug)]
pub struct AuthFailure {
    pub tenant_id: Option<TenantId>,
    pub key_prefix: Option<String>,
    pub error: ApiError,
}

/// What authentication needs of a stored key: cheap to copy out of the cache on
/// every request (the tenant, prefix and scopes are shared behind the `Arc`).
#[derive(Clone)]
struct CachedKey {
    secret_hash: SecretHash,
    revoked: bool,
    context: Arc<KeyContext>,
    fetched: Instant,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    keys: Mutex<HashMap<String, CachedKey>>,
    limiter: RateLimiter,
    tenant_limiter: RateLimiter,
    uses: Arc<Mutex<HashMap<String, Timestamp>>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: &ServerConfig) -> Self {
        Self {
            store,
            clock,
            ttl: config.key_cache_ttl,
            keys: Mutex::new(HashMap::new()),
            limiter: RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
            tenant_limiter: RateLimiter::new(
                config.limits.tenant_rate_limit_per_second,
                config.limits.tenant_rate_limit_burst,
            ),
            uses: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Establishes the caller from the `Authorization` header. No header is an
    /// anonymous caller; a header that does not carry a live key is a failure.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthFailure> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let fail = |tenant_id, key_prefix, why: &str| AuthFailure {
            tenant_id,
            key_prefix,
            error: ApiError::Unauthorized(why.to_owned()),
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .and_then(ApiKey::parse)
            .ok_or_else(|| {
                fail(
                    None,
                    None,
                    "expected Authorization: Bearer keel_<prefix>_<secret>",
                )
            })?;
        let prefix = presented.prefix().to_owned();
        let stored = self.lookup(&prefix).await.map_err(|error| AuthFailure {
            tenant_id: None,
            key_prefix: Some(prefix.clone()),
            error,
        })?;
        // One answer for every bad key, so a caller cannot learn which prefixes
        // exist; the audit event (under the key's tenant) keeps the difference.
        let Some(stored) = stored else {
            return Err(fail(None, Some(prefix), BAD_KEY));
        };
        let tenant = || Some(stored.context.tenant_id.clone());
        if !stored.secret_hash.matches(&presented) || stored.revoked {
            return Err(fail(tenant(), Some(prefix), BAD_KEY));
        }
        let limited = self
            .limiter
            .check(&prefix)
            .map_err(|s| (s, "this key"))
            .and_then(|()| {
                self.tenant_limiter
                    .check(stored.context.tenant_id.as_str())
                    .map_err(|s| (s, "this tenant"))
            });
        if let Err((retry_after_s, whose)) = limited {
            return Err(AuthFailure {
                tenant_id: tenant(),
                key_prefix: Some(prefix),
                error: ApiError::TooManyRequests {
                    retry_after_s,
                    detail: format!(
                        "rate limit exceeded for {whose}; retry after the given seconds"
                    ),
                },
            });
        }
        let now = self.clock.now();
        let mut uses = self.uses.lock();
        match uses.get_mut(&prefix) {
            Some(at) => *at = now,
            None => {
                uses.insert(prefix, now);
            }
        }
        Ok(Caller::Key(stored.context))
    }

    async fn lookup(&self, prefix: &str) -> Result<Option<CachedKey>, ApiError> {
        if let Some(hit) = self.keys.lock().get(prefix) {
            if hit.fetched.elapsed() < self.ttl {
                return Ok(Some(hit.clone()));
            }
        }
        let Some(key) = self.store.key_by_prefix(prefix).await? else {
            return Ok(None);
        };
        let cached = CachedKey {
            secret_hash: key.secret_hash,
            revoked: key.revoked_at.is_some(),
            context: Arc::new(KeyContext {
                tenant_id: key.tenant_id,
                prefix: key.prefix,
                scopes: key.scopes,
            }),
            fetched: Instant::now(),
        };
        self.keys.lock().insert(prefix.to_owned(), cached.clone());
        Ok(Some(cached))
    }

    /// Forgets a cached key, so a revocation takes effect on the next request.
    pub fn forget(&self, prefix: &str) {
        self.keys.lock().remove(prefix);
    }

    /// Writes buffered last-use times every few seconds, until the state is dropped.
    pub(crate) fn start_use_flusher(&self) {
        let store = self.store.clone();
        let uses = Arc::downgrade(&self.uses);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USE_FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                let Some(uses) = uses.upgrade() else { return };
                write_uses(&*store, &uses).await;
            }
        });
    }

    /// Writes buffered last-use times now.
    pub async fn flush_uses(&self) {
        write_uses(&*self.store, &self.uses).await;
    }
}

const BAD_KEY: &str = "invalid, unknown or revoked API key";

const USE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

async fn write_uses(store: &dyn Store, uses: &Mutex<HashMap<String, Timestamp>>) {
    let batch: Vec<(String, Timestamp)> = uses.lock().drain().collect();
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.record_key_use(batch).await {
        tracing::warn!(error = %e, "could not record key use");
    }
}

/// The caller, from the extension the access middleware put on the request.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

/// A handler argument that demands a key: anonymous callers get 401.
pub struct Authed(pub Arc<KeyContext>);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Key(key) => Ok(Self(key)),
            Caller::Anonymous => Err(ApiError::Unauthorized(
                "this route needs Authorization: Bearer <api key>".into(),
            )),
        }
    }
}
