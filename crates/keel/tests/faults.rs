//! SPEC §11: PostgreSQL, Redis and NATS stopped under publish load and started again.
//! Meanwhile writes answer 503 with Retry-After and `/readyz` 503; the process
//! neither panics nor needs a restart; every record answered 202 is stored
//! exactly once. The servers are the test's own (`PrivatePostgres`,
//! `PrivateRedis`, `PrivateNats`), so stopping them disturbs no other test; each
//! runs when its server's `KEEL_TEST_*_URL` is set, as the other tests of it do.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use keel_store::testing::{postgres_url, PrivateNats, PrivatePostgres, PrivateRedis, NATS_URL_VAR};
use serde_json::json;

mod common;
use common::{assert_stored_exactly_once, stored_records, wait_drained, Keel, OPERATOR_KEY};

#[derive(Default)]
struct Load {
    accepted: Mutex<Vec<(u64, u64)>>,
    unavailable: AtomicU64,
    unavailable_without_retry_after: AtomicU64,
    other_failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    fn accepted_count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Waits until the load has been accepted `more` more times.
    async fn until_accepting(&self, more: usize, within: Duration) {
        let target = self.accepted_count() + more;
        let deadline = Instant::now() + within;
        while self.accepted_count() < target {
            assert!(
                Instant::now() < deadline,
                "Keel did not recover: {} of {target} accepted",
                self.accepted_count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn publish(base: String, client_id: u64, load: Arc<Load>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for n in 0.. {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let response = client
            .post(format!("{base}/v1/collections/faults/records"))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({"client": client_id, "n": n}))
            .send()
            .await;
        match response {
            Ok(r) if r.status() == 202 => load.accepted.lock().unwrap().push((client_id, n)),
            Ok(r) if r.status() == 503 => {
                load.unavailable.fetch_add(1, Ordering::SeqCst);
                if !r.headers().contains_key("retry-after") {
                    load.unavailable_without_retry_after
                        .fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => {
                let failure = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                load.other_failures.lock().unwrap().push(failure);
            }
            Err(e) => load.other_failures.lock().unwrap().push(e.to_string()),
        }
    }
}

/// Stops the load and checks what every outage must leave: Keel still running,
/// only 202 and 503 (with Retry-After) answered, every 202'd record stored once.
async fn stop_and_check(
    load: Arc<Load>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    mut keel: Keel,
) {
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        keel.child.try_wait().unwrap().is_none(),
        "Keel exited during the outage"
    );
    let failures = load.other_failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "answers other than 202/503: {failures:?}"
    );
    assert_eq!(
        load.unavailable_without_retry_after.load(Ordering::SeqCst),
        0,
        "every 503 carries Retry-After"
    );
    wait_drained(&keel.base, "faults", Duration::from_secs(90)).await;
    let accepted = load.accepted.lock().unwrap().clone();
    let rows = stored_records(&keel.base, "faults").await;
    assert_stored_exactly_once(&accepted, &rows);
    eprintln!(
        "{} records accepted, {} answers 503 during the outage, all stored once",
        accepted.len(),
        load.unavailable.load(Ordering::SeqCst)
    );
    keel.signal(nix::sys::signal::Signal::SIGTERM);
    keel.wait_exit(Duration::from_secs(15));
}

async fn readyz(base: &str) -> u16 {
    reqwest::get(format!("{base}/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_stopped_under_load_lose_nothing() {
    if postgres_url("postgres_and_redis_stopped_under_load_lose_nothing").is_none() {
        return;
    }
    let postgres = PrivatePostgres::start();
    let mut redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let keel = Keel::start_with(
        dir.path(),
        &[
            ("KEEL_STORE", postgres.url()),
            ("KEEL_CACHE", redis.url()),
            ("KEEL_POSTGRES_ACQUIRE_TIMEOUT_MS", "1000".into()),
            ("KEEL_POSTGRES_STATEMENT_TIMEOUT_MS", "3000".into()),
        ],
    );
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..6)
        .map(|c| tokio::spawn(publish(keel.base.clone(), c, load.clone())))
        .collect();
    load.until_accepting(200, Duration::from_secs(20)).await;

    // PostgreSQL goes away (as in a crash) and comes back.
    postgres.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz(&keel.base).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ready without PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = load.unavailable.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while load.unavailable.load(Ordering::SeqCst) < before + 5 {
        assert!(Instant::now() < deadline, "writes did not answer 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    postgres.start_again();
    load.until_accepting(200, Duration::from_secs(30)).await;
    assert_eq!(readyz(&keel.base).await, 200);

    // Redis goes away and comes back: the cache is bypassed, writes go on.
    redis.stop();
    load.until_accepting(200, Duration::from_secs(30)).await;
    assert_eq!(
        readyz(&keel.base).await,
        200,
        "Redis is not needed to be ready"
    );
    redis.restart();
    load.until_accepting(200, Duration::from_secs(30)).await;

    stop_and_check(load, clients, keel).await;
}

/// The bus on NATS JetStream (the store on SQLite); `nats-server` is killed under
/// publish load and started again on the same directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_under_load_loses_nothing() {
    if std::env::var(NATS_URL_VAR).is_err() {
        eprintln!("skipping nats_killed_under_load_loses_nothing: {NATS_URL_VAR} is not set");
        return;
    }
    let mut nats = PrivateNats::start();
    let dir = tempfile::tempdir().unwrap();
    let keel = Keel::start_with(dir.path(), &[("KEEL_BUS", nats.url())]);
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..6)
        .map(|c| tokio::spawn(publish(keel.base.clone(), c, load.clone())))
        .collect();
    load.until_accepting(200, Duration::from_secs(20)).await;

    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&keel.base).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ready without NATS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = load.unavailable.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.unavailable.load(Ordering::SeqCst) < before + 5 {
        assert!(Instant::now() < deadline, "publishes did not answer 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nats.start_again();
    load.until_accepting(200, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&keel.base).await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop_and_check(load, clients, keel).await;
}
