//! Authentication, scopes and rate limits (SPEC §0, §1).
//!
//! A bearer key is split into prefix and secret; the stored key is found by prefix
//! and its secret hash compared in constant time. Stored keys are read through the
//! cache for [`ServerConfig::key_cache_ttl`] so the hot path does not read the
//! store on every request; a revocation invalidates the key's scope, so it takes
//! effect at once on every replica that shares the cache. Rate limits (per key and
//! per tenant) are token buckets in the cache: with Redis, shared by every
//! replica. Last-use times are buffered and written in batches.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};
use bytes::Bytes;
use jiff::Timestamp;
use keel_core::{
    apikey::{ApiKey, Scope, Scopes, SecretHash},
    clock::Clock,
};
use keel_store::{cache::Limit, Store, TenantId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{
    cached_reads::{Cached, CachedReads},
    problem::ApiError,
    server_config::ServerConfig,
};

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

/// What authentication needs of a stored key: cheap to copy on every request (the
/// tenant, prefix and scopes are shared behind the `Arc`).
#[derive(Clone)]
struct KnownKey {
    secret_hash: SecretHash,
    revoked: bool,
    context: Arc<KeyContext>,
}

/// A stored key as the cache keeps it.
#[derive(Serialize, Deserialize)]
struct CachedKey {
    tenant: String,
    prefix: String,
    scopes: String,
    hash: String,
    revoked: bool,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    reads: Arc<CachedReads>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    /// The cached bytes last seen for each prefix, decoded: a hit with the same
    /// bytes is not decoded again.
    decoded: Mutex<HashMap<String, (Bytes, KnownKey)>>,
    key_limit: Limit,
    tenant_limit: Limit,
    uses: Arc<Mutex<HashMap<String, Timestamp>>>,
}

/// Bound on [`Authenticator::decoded`]; past it the map starts again.
const MAX_DECODED: usize = 50_000;

impl Authenticator {
    pub fn new(
        store: Arc<dyn Store>,
        reads: Arc<CachedReads>,
        clock: Arc<dyn Clock>,
        config: &ServerConfig,
    ) -> Self {
        Self {
            store,
            reads,
            clock,
            ttl: config.key_cache_ttl,
            decoded: Mutex::new(HashMap::new()),
            key_limit: Limit::new(config.rate_limit_per_second, config.rate_limit_burst),
            tenant_limit: Limit::new(
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
        self.verify(&presented).await.map(Caller::Key)
    }

    /// The live key `presented` names, with its rate limits taken (the bearer
    /// header's check, and the console's sign-in).
    pub async fn verify(&self, presented: &ApiKey) -> Result<Arc<KeyContext>, AuthFailure> {
        let fail = |tenant_id, key_prefix, why: &str| AuthFailure {
            tenant_id,
            key_prefix,
            error: ApiError::Unauthorized(why.to_owned()),
        };
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
        if !stored.secret_hash.matches(presented) || stored.revoked {
            return Err(fail(tenant(), Some(prefix), BAD_KEY));
        }
        self.admit(stored.context, prefix).await
    }

    /// The key behind a console session, by its prefix (the session proved the
    /// secret when it began): `None` once the key is revoked or gone, so a
    /// revocation ends its sessions. Rate limits apply as to a bearer key.
    pub async fn authenticate_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<Arc<KeyContext>>, AuthFailure> {
        let stored = self.lookup(prefix).await.map_err(|error| AuthFailure {
            tenant_id: None,
            key_prefix: Some(prefix.to_owned()),
            error,
        })?;
        match stored {
            Some(stored) if !stored.revoked => self
                .admit(stored.context, prefix.to_owned())
                .await
                .map(Some),
            _ => Ok(None),
        }
    }

    /// Takes the key's and its tenant's rate-limit tokens and notes the use.
    async fn admit(
        &self,
        context: Arc<KeyContext>,
        prefix: String,
    ) -> Result<Arc<KeyContext>, AuthFailure> {
        let tenant = || Some(context.tenant_id.clone());
        let buckets = [
            (format!("key/{prefix}"), self.key_limit),
            (
                format!("tenant/{}", context.tenant_id.as_str()),
                self.tenant_limit,
            ),
        ];
        let buckets = buckets
            .each_ref()
            .map(|(name, limit)| (name.as_str(), *limit));
        if let Err(refused) = self.reads.cache().take(&buckets).await {
            let whose = ["this key", "this tenant"][refused.bucket.min(1)];
            let retry_after_s = refused.retry_after_s;
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
        Ok(context)
    }

    async fn lookup(&self, prefix: &str) -> Result<Option<KnownKey>, ApiError> {
        let scope = CachedReads::key_scope(prefix);
        let cached = self
            .reads
            .read(Cached::keys, &scope, "", self.ttl, || async {
                // An unknown prefix is cached too (as null): guessing costs no
                // store read.
                let stored = self.store.key_by_prefix(prefix).await?;
                let cached = stored.map(|key| CachedKey {
                    tenant: key.tenant_id.0,
                    prefix: key.prefix,
                    scopes: key.scopes.to_csv(),
                    hash: key.secret_hash.to_hex(),
                    revoked: key.revoked_at.is_some(),
                });
                serde_json::to_vec(&cached)
                    .map(Bytes::from)
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .await?;
        if let Some((bytes, known)) = self.decoded.lock().get(prefix) {
            if *bytes == cached {
                return Ok(Some(known.clone()));
            }
        }
        let Some(key) = serde_json::from_slice::<Option<CachedKey>>(&cached)
            .map_err(|e| ApiError::Internal(format!("cached key: {e}")))?
        else {
            return Ok(None);
        };
        let known = KnownKey {
            secret_hash: SecretHash::from_hex(&key.hash)
                .ok_or_else(|| ApiError::Internal("cached key: bad hash".into()))?,
            revoked: key.revoked,
            context: Arc::new(KeyContext {
                tenant_id: TenantId(key.tenant),
                prefix: key.prefix,
                scopes: Scopes::parse_csv(&key.scopes)
                    .map_err(|e| ApiError::Internal(format!("cached key: {e}")))?,
            }),
        };
        let mut decoded = self.decoded.lock();
        if decoded.len() >= MAX_DECODED {
            decoded.clear();
        }
        decoded.insert(prefix.to_owned(), (cached, known.clone()));
        Ok(Some(known))
    }

    /// Drops a key from the cache (every replica's, with Redis), so a revocation
    /// takes effect on the next request.
    pub async fn forget(&self, prefix: &str) {
        self.reads.invalidate(&CachedReads::key_scope(prefix)).await;
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
