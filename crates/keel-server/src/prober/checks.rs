//! Running one check: an HTTP request or a TCP connect, within the monitor's
//! timeout, to an address the probe policy permits (`probe_allow`), judged by its
//! conditions. Push monitors are never run: a claimed push slot means no
//! heartbeat came in time.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use jiff::Timestamp;
use keel_core::{
    outbound::AddressPolicy,
    uptime::{
        cert,
        condition::Observation,
        monitor::{MonitorKind, MonitorSpec},
    },
};
use tokio::time::Instant;

use crate::outbound::{guarded_client, Refused};

const NOT_PERMITTED: Refused = Refused("the destination is not a public address (see probe_allow)");
/// Most of a body read for conditions; the rest is not waited for.
const BODY_LIMIT: usize = 1024 * 1024;

/// What a check found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub up: bool,
    pub latency_us: Option<u64>,
    pub status: Option<u16>,
    pub failure: Option<String>,
}

impl Outcome {
    fn failed(why: impl Into<String>, latency_us: Option<u64>) -> Self {
        Self {
            up: false,
            latency_us,
            status: None,
            failure: Some(why.into()),
        }
    }

    /// `latency_us` is the measured duration: `seen.response_time_ms` is whole
    /// milliseconds for conditions, too coarse for the latency percentiles of
    /// fast targets (a sub-millisecond check would be stored as 0).
    fn judged(spec: &MonitorSpec, seen: Observation, latency_us: u64) -> Self {
        let failure = spec
            .parsed_conditions()
            .iter()
            .find_map(|c| c.check(&seen).err());
        Self {
            up: failure.is_none(),
            latency_us: Some(latency_us),
            status: seen.status,
            failure,
        }
    }
}

pub struct Probes {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Probes {
    pub fn new(allow: &[String]) -> Self {
        let policy = Arc::new(
            AddressPolicy::parse(allow).expect("probe_allow is validated with the configuration"),
        );
        let client = guarded_client(policy.clone(), NOT_PERMITTED, "keel-probe/1")
            .tls_info(true)
            .pool_max_idle_per_host(2)
            .build()
            .expect("the probe HTTP client builds");
        Self { client, policy }
    }

    /// Runs the check described by `spec`; `now` dates certificates.
    pub async fn run(&self, spec: &MonitorSpec, now: Timestamp) -> Outcome {
        let timeout = Duration::from_millis(u64::from(spec.timeout_ms));
        match spec.kind {
            MonitorKind::Http => self.http(spec, timeout, now).await,
            MonitorKind::Tcp => self.tcp(spec, timeout).await,
            MonitorKind::Push => Outcome::failed(
                format!("no heartbeat within {} s", spec.period_micros() / 1_000_000),
                None,
            ),
        }
    }

    async fn http(&self, spec: &MonitorSpec, timeout: Duration, now: Timestamp) -> Outcome {
        let Some(target) = spec.target.as_deref() else {
            return Outcome::failed("no target", None);
        };
        let Ok(url) = reqwest::Url::parse(target) else {
            return Outcome::failed("the target is not a URL", None);
        };
        if !self.policy.permits_url_host(url.host()) {
            return Outcome::failed(format!("refused: {NOT_PERMITTED}"), None);
        }
        let method =
            reqwest::Method::from_bytes(spec.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self.client.request(method, url).timeout(timeout);
        for (name, value) in &spec.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        let started = Instant::now();
        let elapsed_us = |started: Instant| started.elapsed().as_micros() as u64;
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Outcome::failed(
                    crate::outbound::describe_failure(&e),
                    Some(elapsed_us(started)),
                )
            }
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let cert_expires_in_days = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(|der| cert::days_left(der, now));
        let body = match read_body(response, timeout.saturating_sub(started.elapsed())).await {
            Ok(body) => body,
            Err(why) => return Outcome::failed(why, Some(elapsed_us(started))),
        };
        let took = started.elapsed();
        Outcome::judged(
            spec,
            Observation {
                status: Some(status),
                response_time_ms: took.as_millis() as u64,
                body: Some(body),
                headers,
                cert_expires_in_days,
            },
            took.as_micros() as u64,
        )
    }

    async fn tcp(&self, spec: &MonitorSpec, timeout: Duration) -> Outcome {
        let Some(target) = spec.target.as_deref() else {
            return Outcome::failed("no target", None);
        };
        let started = Instant::now();
        let connect = async {
            let (host, port) = target.rsplit_once(':').ok_or("expected host:port")?;
            let port: u16 = port.parse().map_err(|_| "expected host:port")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let named = host.parse::<std::net::IpAddr>().is_err();
            if named && !self.policy.permits_name(host) {
                return Err("refused: the destination is not a public address (see probe_allow)");
            }
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| "the name does not resolve")?
                .filter(|a| self.policy.allows_host(host) || self.policy.permits_address(a.ip()))
                .collect();
            if found.is_empty() {
                return Err("refused: the destination is not a public address (see probe_allow)");
            }
            tokio::net::TcpStream::connect(&found[..])
                .await
                .map(drop)
                .map_err(|_| "could not connect")
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(())) => {
                let took = started.elapsed();
                Outcome::judged(
                    spec,
                    Observation {
                        response_time_ms: took.as_millis() as u64,
                        ..Observation::default()
                    },
                    took.as_micros() as u64,
                )
            }
            Ok(Err(why)) => Outcome::failed(why, Some(started.elapsed().as_micros() as u64)),
            Err(_) => Outcome::failed("timed out", Some(started.elapsed().as_micros() as u64)),
        }
    }
}

/// Reads up to [`BODY_LIMIT`] of the body within `left`, as text.
async fn read_body(mut response: reqwest::Response, left: Duration) -> Result<String, String> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| crate::outbound::describe_failure(&e))?
        {
            let room = BODY_LIMIT - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= BODY_LIMIT {
                break;
            }
        }
        Ok::<_, String>(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(left, read)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}
