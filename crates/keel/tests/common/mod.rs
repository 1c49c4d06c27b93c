//! Runs the real `keel` binary for process-level tests.
#![allow(dead_code)] // each test file uses a different part

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// GET `url` with the operator key; the body as JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub const OPERATOR_KEY: &str = "keel_testop01_0123456789abcdefghij0123456789";

pub use keel_store::testing::free_port;

pub struct Keel {
    pub child: Child,
    /// Where the api role listens (unused without it).
    pub base: String,
}

impl Keel {
    /// Every role on the embedded defaults under `data_dir`.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// As [`Keel::start`], with more `KEEL_*` settings (`KEEL_STORE`,
    /// `KEEL_CACHE`, `KEEL_ROLES`, …). Waits until the api role listens, if it runs.
    pub fn start_with(data_dir: &Path, settings: &[(&str, String)]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("serve")
            .env("KEEL_DATA_DIR", data_dir)
            .env("KEEL_LISTEN", format!("127.0.0.1:{port}"))
            .env("KEEL_BOOTSTRAP_ADMIN_KEY", OPERATOR_KEY)
            .env("KEEL_RATE_LIMIT_PER_SECOND", "1000000")
            .env("KEEL_RATE_LIMIT_BURST", "1000000")
            .env("KEEL_TENANT_RATE_LIMIT_PER_SECOND", "1000000")
            .env("KEEL_TENANT_RATE_LIMIT_BURST", "1000000")
            .env("KEEL_FANOUT_BYTES_PER_SECOND_PER_TENANT", "1000000000000")
            // The tests' webhook receivers listen on loopback over plain HTTP.
            .env("KEEL_WEBHOOK_ALLOW", "127.0.0.0/8")
            .env("KEEL_WEBHOOK_ALLOW_HTTP", "true")
            .env("KEEL_LOG", "warn")
            // The test's own settings win over the defaults above.
            .envs(settings.iter().map(|(name, value)| (*name, value)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keel");
        let keel = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let api = settings
            .iter()
            .find(|(name, _)| *name == "KEEL_ROLES")
            .is_none_or(|(_, roles)| roles.contains("api") || roles.contains("all"));
        if api {
            keel.wait_ready();
        }
        keel
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.base.trim_start_matches("http://")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("keel did not start listening");
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keel did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Keel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record in `collection`, keyed by its data's (`client`, `n`) → how many
/// rows carry it.
pub async fn stored_records(
    base: &str,
    collection: &str,
) -> std::collections::HashMap<(u64, u64), usize> {
    let mut counts = std::collections::HashMap::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(format!(
            "{base}/v1/collections/{collection}/records?limit=1000{cursor}"
        ))
        .await;
        for record in page["records"].as_array().unwrap() {
            let key = (
                record["data"]["client"].as_u64().unwrap(),
                record["data"]["n"].as_u64().unwrap(),
            );
            *counts.entry(key).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return counts,
        }
    }
}

/// Waits until the collection's queue holds nothing, visible or in flight.
pub async fn wait_drained(base: &str, collection: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stats = get_json(format!("{base}/v1/queues/{collection}/_collection")).await;
        if stats["depth"] == 0 && stats["in_flight"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never drained: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that every accepted (`client`, `n`) is stored exactly once.
pub fn assert_stored_exactly_once(
    accepted: &[(u64, u64)],
    rows: &std::collections::HashMap<(u64, u64), usize>,
) {
    for record in accepted {
        assert_eq!(
            rows.get(record),
            Some(&1),
            "record {record:?} was answered 202 but stored {:?} times",
            rows.get(record)
        );
    }
    assert!(rows.values().all(|n| *n == 1), "a record was stored twice");
}
