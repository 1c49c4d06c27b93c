//! Operations shared by several routes and by the command line: issuing keys,
//! password hashing, and bootstrapping the first operator key.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use keel_core::apikey::{ApiKey, Scopes};
use keel_store::{NewKey, Store, StoreError, StoreResult, StoredKey, TenantId};
use tokio::sync::OwnedSemaphorePermit;

use crate::problem::ApiError;

/// Makes a fresh key for `tenant` and stores its hash; the returned [`ApiKey`] is the
/// only copy of the secret.
pub async fn issue_key(
    store: &dyn Store,
    tenant: &TenantId,
    scopes: Scopes,
) -> StoreResult<(ApiKey, StoredKey)> {
    let key = ApiKey::generate();
    let stored = store
        .create_key(NewKey {
            tenant_id: tenant.clone(),
            prefix: key.prefix().to_owned(),
            secret_hash: key.secret_hash(),
            scopes,
        })
        .await?;
    Ok((key, stored))
}

/// Argon2id with the crate's default (OWASP-recommended) parameters, off the async
/// threads: one hash takes tens of milliseconds of CPU and ~19 MiB. `slot` (from
/// `LoginGuard::hashing_permit`) is held until the hash is done, even if the
/// caller stops waiting.
pub async fn hash_password(
    password: String,
    slot: OwnedSemaphorePermit,
) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("hashing task: {e}")))?
}

/// Checks `password` against a stored hash. With no stored hash (unknown account) it
/// still spends the same work on a dummy, so timing does not reveal which emails
/// are registered.
pub async fn verify_password(
    password: String,
    stored: Option<String>,
    slot: OwnedSemaphorePermit,
) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let argon = Argon2::default();
        match stored.as_deref().map(PasswordHash::new) {
            Some(Ok(hash)) => Ok(argon.verify_password(password.as_bytes(), &hash).is_ok()),
            Some(Err(e)) => Err(ApiError::Internal(format!("stored password hash: {e}"))),
            None => {
                let salt = SaltString::generate(&mut OsRng);
                let _ = argon.hash_password(password.as_bytes(), &salt);
                Ok(false)
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("hashing task: {e}")))?
}

/// What bootstrapping did.
#[derive(Debug)]
pub enum Bootstrap {
    /// A new key was made; print it once.
    Created(ApiKey),
    /// The configured `KEEL_BOOTSTRAP_ADMIN_KEY` was stored.
    Installed,
    /// An operator key already exists; nothing to do.
    AlreadyDone,
}

/// Ensures the store has an operator key. A configured key is installed if its
/// prefix is not stored yet; otherwise, on a store with no operator key, one is made.
pub async fn bootstrap(
    store: &dyn Store,
    configured: Option<&ApiKey>,
) -> Result<Bootstrap, String> {
    let default_tenant = TenantId::default_tenant();
    if let Some(key) = configured {
        // Replicas starting together may both find the key missing; the one whose
        // insert loses the race finds it installed on the second look.
        for _ in 0..2 {
            match store
                .key_by_prefix(key.prefix())
                .await
                .map_err(|e| e.to_string())?
            {
                Some(stored) if stored.secret_hash.matches(key) => {
                    return Ok(Bootstrap::AlreadyDone)
                }
                Some(_) => {
                    return Err(
                        "KEEL_BOOTSTRAP_ADMIN_KEY's prefix is already taken by a different key"
                            .into(),
                    )
                }
                None => {}
            }
            let created = store
                .create_key(NewKey {
                    tenant_id: default_tenant.clone(),
                    prefix: key.prefix().to_owned(),
                    secret_hash: key.secret_hash(),
                    scopes: Scopes::everything(),
                })
                .await;
            match created {
                Ok(_) => return Ok(Bootstrap::Installed),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        return Err("KEEL_BOOTSTRAP_ADMIN_KEY could not be installed".into());
    }
    if store.has_operator_key().await.map_err(|e| e.to_string())? {
        return Ok(Bootstrap::AlreadyDone);
    }
    let (key, _) = issue_key(store, &default_tenant, Scopes::everything())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Bootstrap::Created(key))
}
