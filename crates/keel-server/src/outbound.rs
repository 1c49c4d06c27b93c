//! Outbound HTTP calls (webhook deliveries) that cannot reach inside.
//!
//! Every call goes through one [`Outbound`]: its client resolves host names itself
//! and drops every address the [`AddressPolicy`] refuses *before connecting*, so a
//! name that resolves — or is rebound — to an internal address never gets a
//! connection; IP literals (including odd spellings like `0177.0.0.1`, which URL
//! parsing normalises) are checked the same way before the request is made.
//! Redirects are never followed and no proxy from the environment is used.
//! Concurrency is capped globally and per tenant, so one tenant's slow receivers
//! cannot hold every socket.

use std::{collections::HashMap, fmt, net::SocketAddr, sync::Arc, time::Duration};

pub use keel_core::outbound::AddressPolicy;
use keel_store::TenantId;
use parking_lot::Mutex;
use reqwest::{
    dns::{Addrs, Name, Resolve, Resolving},
    Url,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::Limits;

/// Why a destination is refused; shown to the tenant as is, so it says nothing
/// about what (if anything) listens there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

const NOT_PUBLIC: Refused = Refused("the destination is not a public address (see webhook_allow)");

/// Resolves with the system resolver, then keeps only permitted addresses.
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    refusal: Refused,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let refusal = self.refusal.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = if policy.allows_host(&host) {
                found
            } else {
                found
                    .into_iter()
                    .filter(|a| policy.permits_address(a.ip()))
                    .collect()
            };
            if allowed.is_empty() {
                return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A client that connects only to addresses `policy` permits (names resolved
/// here, every address checked before connecting), follows no redirects and uses
/// no proxy from the environment; `refusal` is what a refused name reports.
pub fn guarded_client(
    policy: Arc<AddressPolicy>,
    refusal: Refused,
    user_agent: &'static str,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy, refusal }))
}

pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    allow_http: bool,
    global: Arc<Semaphore>,
    global_max: usize,
    per_tenant_max: usize,
    per_tenant: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

/// Both permits of one call; dropping it frees them.
pub struct CallPermit {
    _global: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

impl Outbound {
    pub fn new(limits: &Limits) -> Self {
        let policy = Arc::new(
            AddressPolicy::parse(&limits.webhook_allow)
                .expect("webhook_allow is validated with the configuration"),
        );
        let client = guarded_client(policy.clone(), NOT_PUBLIC, "keel-webhook/1")
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(8)
            .build()
            .expect("the outbound HTTP client builds");
        Self {
            client,
            policy,
            allow_http: limits.webhook_allow_http,
            global: Arc::new(Semaphore::new(limits.outbound_max_in_flight)),
            global_max: limits.outbound_max_in_flight,
            per_tenant_max: limits.outbound_max_in_flight_per_tenant,
            per_tenant: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Checks what can be known of a URL without resolving it: the scheme, and an
    /// IP-literal or `localhost` host. Used when a subscription is saved (so the
    /// tenant hears at once) and before every call.
    pub fn check_url(&self, raw: &str) -> Result<Url, Refused> {
        let url = Url::parse(raw).map_err(|_| Refused("the URL cannot be parsed"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(Refused(
                    "webhook URLs must use https (see webhook_allow_http)",
                ))
            }
            _ => return Err(Refused("webhook URLs are http(s)")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused("webhook URLs carry no user name or password"));
        }
        if self.policy.permits_url_host(url.host()) {
            Ok(url)
        } else {
            Err(NOT_PUBLIC)
        }
    }

    /// Waits for a place among the calls in flight, globally and for `tenant`.
    pub async fn permit(&self, tenant: &TenantId) -> CallPermit {
        let tenant_semaphore = self
            .per_tenant
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant_max)))
            .clone();
        let tenant = tenant_semaphore
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let global = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        CallPermit {
            _global: global,
            _tenant: tenant,
        }
    }

    /// Calls in flight now, over all tenants.
    pub fn in_flight(&self) -> usize {
        self.global_max - self.global.available_permits()
    }
}

/// What an attempt records about a failed call: generic on purpose, so the
/// attempt log cannot be used to probe what answers where.
pub fn describe_failure(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return format!("refused: {refused}");
        }
        source = e.source();
    }
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}
