//! Probers as replicas (SPEC §7): two real `keel serve` processes with the prober
//! role on one PostgreSQL share the monitors — each monitor is checked once per
//! interval, counted by the hits on a local target — and when one is SIGKILLed
//! the other takes its monitors within one interval. Runs when
//! `KEEL_TEST_POSTGRES_URL` is set (a database of its own).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::Path, extract::State, routing::get, Router};
use keel_store::testing::{postgres_url, TestDatabase};
use nix::sys::signal::Signal;
use serde_json::json;

mod common;
use common::{Keel, OPERATOR_KEY};

const MONITORS: usize = 20;
const INTERVAL_S: u64 = 4;
const TIMEOUT_MS: u64 = 1_000;

/// Every hit on the target, by monitor number, as time since the test began.
type Hits = Arc<Mutex<HashMap<usize, Vec<Duration>>>>;

async fn start_target(began: Instant) -> (u16, Hits) {
    let hits: Hits = Arc::default();
    let app = Router::new()
        .route(
            "/m/{n}",
            get(
                |State((hits, began)): State<(Hits, Instant)>, Path(n): Path<usize>| async move {
                    hits.lock()
                        .unwrap()
                        .entry(n)
                        .or_default()
                        .push(began.elapsed());
                    "ok"
                },
            ),
        )
        .with_state((hits.clone(), began));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

async fn probe_results(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("keel_probe_results_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The hits of each monitor between `from` and `to`.
fn hits_between(hits: &Hits, from: Duration, to: Duration) -> Vec<Vec<Duration>> {
    let hits = hits.lock().unwrap();
    (0..MONITORS)
        .map(|n| {
            hits.get(&n)
                .map(|all| {
                    all.iter()
                        .copied()
                        .filter(|t| *t >= from && *t < to)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_probers_check_each_monitor_once_per_interval_and_survive_a_kill() {
    let Some(server) = postgres_url("the probers test") else {
        return;
    };
    let database = TestDatabase::create(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let (port, hits) = start_target(began).await;
    let settings = |roles: &str| {
        vec![
            ("KEEL_STORE", database.url.clone()),
            ("KEEL_ROLES", roles.to_owned()),
            ("KEEL_PROBE_ALLOW", "127.0.0.0/8".to_owned()),
        ]
    };
    let first = Keel::start_with(dir.path(), &settings("api,prober"));
    let mut second = Keel::start_with(dir.path(), &settings("api,prober"));
    let client = reqwest::Client::new();
    for n in 0..MONITORS {
        let response = client
            .post(format!("{}/v1/monitors", first.base))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({
                "name": format!("m{n}"), "kind": "http",
                "target": format!("http://127.0.0.1:{port}/m/{n}"),
                "interval_s": INTERVAL_S, "timeout_ms": TIMEOUT_MS,
                "conditions": ["status == 200"]
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let created = began.elapsed();
    let interval = Duration::from_secs(INTERVAL_S);

    // Three intervals with both probers: every monitor once per interval.
    tokio::time::sleep(interval * 3 + Duration::from_millis(500)).await;
    let both_until = began.elapsed();
    // Each monitor's first slot is within one interval of its creation.
    let window = hits_between(&hits, created, both_until);
    for (n, times) in window.iter().enumerate() {
        assert!(
            (3..=4).contains(&times.len()),
            "monitor {n} was checked {} times in three intervals: {times:?}",
            times.len()
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap > interval - Duration::from_millis(500),
                "monitor {n} was checked twice in one interval: {times:?}"
            );
        }
    }
    // Every probe result is one hit on the target. Checks go on while the
    // metrics are read, so the count lies between the hits settled a second
    // before the reading (a local check takes milliseconds) and those after it.
    let reading = began.elapsed();
    let (a, b) = (
        probe_results(&first.base).await,
        probe_results(&second.base).await,
    );
    let total = |to: Duration| -> u64 {
        hits_between(&hits, Duration::ZERO, to)
            .iter()
            .map(|t| t.len() as u64)
            .sum()
    };
    let (settled, after_reading) = (
        total(reading - Duration::from_secs(1)),
        total(began.elapsed()),
    );
    assert!(a > 0 && b > 0, "both probers share the work: {a} and {b}");
    assert!(
        (settled..=after_reading).contains(&(a + b)),
        "{a} + {b} probe results for between {settled} and {after_reading} hits"
    );

    // SIGKILL one: the other checks every monitor on, none left out for longer
    // than an interval (plus the dead prober's leases: timeout and margin).
    second.signal(Signal::SIGKILL);
    second.wait_exit(Duration::from_secs(5));
    let killed = began.elapsed();
    tokio::time::sleep(interval * 3).await;
    let end = began.elapsed();
    let after = hits_between(&hits, killed, end);
    let last_before = hits_between(&hits, created, killed);
    for n in 0..MONITORS {
        let mut times: Vec<Duration> = last_before[n].last().copied().into_iter().collect();
        times.extend(&after[n]);
        assert!(
            after[n].len() >= 2,
            "monitor {n} after the kill: {:?}",
            after[n]
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap <= interval + Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(3),
                "monitor {n} went unchecked for {gap:?} around the kill: {times:?}"
            );
            assert!(
                gap > interval - Duration::from_millis(500),
                "monitor {n} was checked twice in one interval: {times:?}"
            );
        }
    }
    drop(first);
}
