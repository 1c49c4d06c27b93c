//! Password logins cannot exhaust memory and cannot be guessed at will; bad keys
//! all look alike. Its own test binary, so the memory it measures is its own.

mod common;

use common::{spawn_app_with, Bearer, ExpectProblem};
use keel_server::ServerConfig;
use serde_json::{json, Value};

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bad_logins_get_429_and_memory_stays_bounded() {
    let mut config = ServerConfig::default();
    // Generous guessing limits: this test is about concurrent hashing.
    config.limits.login_failures_per_minute_per_address = 10_000;
    config.limits.login_failures_per_minute_per_email = 10_000;
    config.limits.password_hashes_in_flight = 2;
    let app = spawn_app_with(config).await;
    app.register("victim@example.com").await;
    let before = resident_kib();
    let attempts = (0..64).map(|i| {
        let request = app.post_json(
            "/v1/keys",
            json!({"email": "victim@example.com", "password": format!("wrong-password-{i}")}),
        );
        async move { request.send().await.unwrap() }
    });
    let answers = futures_join_all(attempts).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "no attempt was turned away: {statuses:?}"
    );
    let too_many = answers.iter().find(|r| r.status() == 429).unwrap();
    assert!(too_many.headers().contains_key("retry-after"));
    let grown_mib = resident_kib().saturating_sub(before) / 1024;
    // Two hashes at ~19 MiB each, plus slack; unbounded it was over 1 GB.
    assert!(grown_mib < 150, "resident memory grew by {grown_mib} MiB");
}

async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn password_guessing_is_throttled_and_shown_to_the_owner() {
    let mut config = ServerConfig::default();
    config.limits.login_failures_per_minute_per_email = 5;
    let app = spawn_app_with(config).await;
    let owner_key = app.register("owner@example.com").await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let response = app
            .post_json(
                "/v1/keys",
                json!({"email": "owner@example.com", "password": format!("guess-number-{i}")}),
            )
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right password waits until the bucket refills: guessing is slow.
    app.post_json(
        "/v1/keys",
        json!({"email": "owner@example.com", "password": "correct horse"}),
    )
    .problem(429)
    .await;
    // The owner sees the failures in its own audit trail.
    let audit: Value = app.get_json("/v1/audit", &owner_key).await;
    let failed = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "/v1/keys" && e["status"] == 401)
        .count();
    assert_eq!(failed, 5, "{audit}");
}

#[tokio::test]
async fn every_bad_key_gets_the_same_answer() {
    let app = spawn_app_with(ServerConfig::default()).await;
    let key = app.register("keys@example.com").await;
    let prefix = key.split('_').nth(1).unwrap();
    let unknown = app
        .get("/v1/me")
        .key("keel_zzzzzzzz_0123456789abcdef0123456789")
        .problem(401)
        .await;
    let wrong_secret = app
        .get("/v1/me")
        .key(&format!("keel_{prefix}_0123456789abcdef0123456789"))
        .problem(401)
        .await;
    assert_eq!(unknown["detail"], wrong_secret["detail"]);
    app.request(reqwest::Method::DELETE, &format!("/v1/keys/{prefix}"))
        .key(&key)
        .send()
        .await
        .unwrap();
    let revoked = app.get("/v1/me").key(&key).problem(401).await;
    assert_eq!(revoked["detail"], unknown["detail"]);
}
