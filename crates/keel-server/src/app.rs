//! One place that builds a running Keel from its backends and settings: the
//! binary, the HTTP tests and the benchmarks all start Keel through [`App`], so
//! they cannot drift apart.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use keel_core::clock::Clock;
use keel_store::Backends;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{request_log::RequestLog, AppState, ServerConfig};

/// Which roles this process runs (SPEC §9: `--roles api,worker,prober`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub worker: bool,
    pub prober: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        worker: true,
        prober: true,
    };

    /// `api,worker,prober` in any mix; `all` for every role.
    pub fn parse(csv: &str) -> Result<Self, String> {
        let mut roles = Roles {
            api: false,
            worker: false,
            prober: false,
        };
        for role in csv.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "all" => roles = Roles::ALL,
                "api" => roles.api = true,
                "worker" => roles.worker = true,
                "prober" => roles.prober = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?}: expected api, worker, prober or all"
                    ))
                }
            }
        }
        if roles
            == (Roles {
                api: false,
                worker: false,
                prober: false,
            })
        {
            return Err("no role given: expected api, worker, prober or all".into());
        }
        Ok(roles)
    }
}

/// How to start: the clock, the settings, the roles and where requests are logged.
pub struct AppOptions {
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    pub roles: Roles,
    pub request_log: RequestLog,
}

/// A running Keel: its state, the HTTP server (api role) and the workers (worker
/// role).
pub struct App {
    pub state: AppState,
    /// Where the api role listens.
    pub address: Option<SocketAddr>,
    server: Option<JoinHandle<io::Result<()>>>,
    workers: Option<JoinHandle<()>>,
    prober: Option<JoinHandle<()>>,
    stop_server: watch::Sender<bool>,
}

impl App {
    /// Starts the roles on the current runtime; the api role serves `listener`
    /// (required when `options.roles.api`).
    pub fn start(backends: Backends, options: AppOptions, listener: Option<TcpListener>) -> Self {
        let AppOptions {
            clock,
            config,
            roles,
            request_log,
        } = options;
        let state = AppState::with_request_log(backends, clock, config, request_log);
        let (stop_server, stop_rx) = watch::channel(false);
        let mut address = None;
        let server = match (roles.api, listener) {
            (true, Some(listener)) => {
                address = listener.local_addr().ok();
                tokio::spawn(crate::console::session::prune(state.clone()));
                let state = state.clone();
                let mut stop = stop_rx;
                Some(tokio::spawn(async move {
                    crate::serve(listener, state, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
                }))
            }
            (true, None) => {
                tracing::warn!("the api role needs a listener; not serving HTTP");
                None
            }
            (false, _) => None,
        };
        let workers = roles
            .worker
            .then(|| crate::workers::spawn(state.worker_context()));
        let prober = roles
            .prober
            .then(|| crate::prober::spawn(state.prober_context()));
        tokio::spawn(crate::prober::maintenance::run(
            state.maintenance.clone(),
            state.stop_signal(),
        ));
        if roles.prober {
            tokio::spawn(crate::slo::evaluate::run(state.evaluator_context()));
        }
        // Request SLIs are counted by the api role; every role keeps the list
        // of SLOs (the prober counts monitor SLI events on `/metrics`).
        tokio::spawn(crate::slo::requests::run(
            state.request_slis.clone(),
            state.stop_signal(),
        ));
        // Every replica publishes queued incident and alert notices (whichever
        // role queued them); they share the work through leases.
        tokio::spawn(state.notices.clone().relay(state.stop_signal()));
        // Every replica prunes old monitor results; they share the work.
        tokio::spawn(crate::prober::prune(
            state.store.clone(),
            state.clock.clone(),
            keel_store::monitors::MonitorRetention::default(),
            state.stop_signal(),
        ));
        if roles.api || roles.worker {
            // Every such replica relays object events, collects unused blobs and
            // prunes old telemetry; they share the work (leases, small deletes).
            let objects = state.objects.clone();
            tokio::spawn(crate::objects::relay(
                objects.clone(),
                state.bus.clone(),
                state.stop_signal(),
            ));
            tokio::spawn(crate::objects::collect(objects, state.stop_signal()));
            // Telemetry past its retention goes in small steps; replicas share it.
            let retention = Duration::from_secs(
                state
                    .config
                    .limits
                    .telemetry_retention_days
                    .saturating_mul(86_400),
            );
            tokio::spawn(crate::ingest::prune(
                state.store.clone(),
                state.clock.clone(),
                retention,
                state.stop_signal(),
            ));
        }
        Self {
            state,
            address,
            server,
            workers,
            prober,
            stop_server,
        }
    }

    /// Graceful stop: `/readyz` turns 503, the server stops accepting and lets
    /// in-flight requests finish, workers hand back what they have not started,
    /// and buffered audit events and key uses are written. Each phase waits at
    /// most `grace`.
    pub async fn shutdown(self, grace: Duration) -> io::Result<()> {
        self.state.start_draining();
        let _ = self.stop_server.send(true);
        if let Some(server) = self.server {
            match tokio::time::timeout(grace, server).await {
                Ok(Ok(result)) => result?,
                Ok(Err(e)) => tracing::error!(error = %e, "the server task failed"),
                Err(_) => tracing::warn!(
                    "in-flight requests did not finish within {grace:?}; exiting anyway"
                ),
            }
        }
        if let Some(workers) = self.workers {
            // What does not finish is redelivered once its visibility timeout lapses.
            if tokio::time::timeout(grace, workers).await.is_err() {
                tracing::warn!("workers did not stop within {grace:?}; exiting anyway");
            }
        }
        if let Some(prober) = self.prober {
            // Checks not started are handed back; started ones are recorded.
            if tokio::time::timeout(grace, prober).await.is_err() {
                tracing::warn!("the prober did not stop within {grace:?}; exiting anyway");
            }
        }
        self.state.flush().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_in_any_mix() {
        assert_eq!(Roles::parse("all").unwrap(), Roles::ALL);
        assert_eq!(Roles::parse("api,worker,prober").unwrap(), Roles::ALL);
        let worker = Roles::parse(" worker ").unwrap();
        assert!(worker.worker && !worker.api && !worker.prober);
        assert!(Roles::parse("api,cook").unwrap_err().contains("cook"));
        assert!(Roles::parse("").is_err());
    }
}
