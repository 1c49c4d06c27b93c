//! The real binary, as an operator runs it: start, kill -9 mid-burst, restart;
//! SIGTERM drains and exits 0; the CLI's tenant, key and config commands.

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

mod common;
use common::{free_port, get_json, Keel, OPERATOR_KEY};

async fn next_value(client: &reqwest::Client, base: &str) -> Result<i64, String> {
    let response = client
        .get(format!("{base}/v1/next"))
        .bearer_auth(OPERATOR_KEY)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    Ok(body["data"]["attributes"]["value"].as_i64().unwrap())
}

/// Fires `next` from `clients` tasks until they fail; returns every value answered.
async fn burst(
    base: &str,
    clients: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Mutex<Vec<i64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (base, seen) = (base.to_owned(), seen.clone());
        // Made before the burst: a client loads the system's root certificates,
        // which takes long enough in a debug build to matter here.
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            while let Ok(value) = next_value(&client, &base).await {
                seen.lock().unwrap().push(value);
            }
        }));
    }
    // The burst is under way once the first answer is in.
    let started = std::time::Instant::now();
    while seen.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (tasks, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_never_repeats_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_seen = Vec::new();
    for cycle in 0..3 {
        let mut keel = Keel::start(dir.path());
        let (tasks, seen) = burst(&keel.base, 16).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        keel.signal(Signal::SIGKILL);
        keel.wait_exit(Duration::from_secs(5));
        for task in tasks {
            task.await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "cycle {cycle}: the burst got no answers");
        all_seen.extend(seen);
    }
    let distinct: BTreeSet<i64> = all_seen.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all_seen.len(),
        "a value was handed out twice across kill -9"
    );

    let keel = Keel::start(dir.path());
    let after = next_value(&reqwest::Client::new(), &keel.base)
        .await
        .unwrap();
    let highest = *distinct.last().unwrap();
    assert!(
        after > highest,
        "after restart got {after}, but {highest} was already handed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut keel = Keel::start(dir.path());
    let (tasks, seen) = burst(&keel.base, 8).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    keel.signal(Signal::SIGTERM);
    let status = keel.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    for task in tasks {
        task.await.unwrap();
    }
    let highest = seen.lock().unwrap().iter().copied().max().unwrap();
    let keel = Keel::start(dir.path());
    let current: Value = get_json(format!("{}/v1/current", keel.base)).await;
    assert!(current["data"]["attributes"]["value"].as_i64().unwrap() >= highest);
    // The audit trail was flushed on the way out: every answered increment is there.
    let audit: Value = get_json(format!("{}/v1/audit?limit=1000", keel.base)).await;
    let audited = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "/v1/next" && e["status"] == 200)
        .count();
    assert!(
        audited as i64 >= highest.min(1000),
        "audited {audited}, handed out {highest}"
    );
}

#[test]
fn a_bootstrap_key_is_printed_once_and_the_store_continues() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("KEEL_BOOTSTRAP_ADMIN_KEY")
            .env("KEEL_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let read_until_listening = |child: &mut Child| {
        use std::io::{BufRead, BufReader};
        let mut lines = Vec::new();
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("listening");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    };
    let mut first = start();
    let lines = read_until_listening(&mut first);
    let key_line = lines
        .iter()
        .find(|l| l.contains("Bootstrap"))
        .expect("first start prints a key");
    let key = key_line.split_whitespace().last().unwrap().to_owned();
    assert!(key.starts_with("keel_"));
    kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap();
    assert!(first.wait().unwrap().success());

    let mut second = start();
    let lines = read_until_listening(&mut second);
    assert!(
        !lines.iter().any(|l| l.contains("Bootstrap")),
        "printed again: {lines:?}"
    );
    // The first key still works on the second start.
    let status = blocking_get_status(port, "/v1/me", &key);
    assert_eq!(status, 200);
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    assert!(second.wait().unwrap().success());
}

/// A blocking GET's status code, for tests without a runtime (and without
/// reqwest's blocking feature).
fn blocking_get_status(port: u16, path: &str, key: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn cli_creates_tenants_and_keys_and_masks_config() {
    let dir = tempfile::tempdir().unwrap();
    let keel = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .env("KEEL_DATA_DIR", dir.path())
            .env("KEEL_BOOTSTRAP_ADMIN_KEY", OPERATOR_KEY)
            .env("KEEL_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(keel(&["migrate"]).contains("migrations applied"));
    let tenant: Value = serde_json::from_str(&keel(&["tenant", "create", "acme"])).unwrap();
    let tenant_id = tenant["id"].as_str().unwrap();
    let key: Value = serde_json::from_str(&keel(&[
        "key",
        "create",
        "--tenant",
        tenant_id,
        "--scopes",
        "read,write",
    ]))
    .unwrap();
    assert_eq!(key["scopes"], "read,write");
    // A monitor set applied from a file, idempotently by name.
    let file = dir.path().join("monitors.yaml");
    let set = |interval: u32| {
        format!(
            "monitors:\n  - name: api\n    kind: http\n    target: https://example.com/health\n    interval_s: {interval}\n    conditions: [\"status == 200\"]\n  - name: nightly\n    kind: push\n    interval_s: 86400\n"
        )
    };
    std::fs::write(&file, set(30)).unwrap();
    let apply = |file: &std::path::Path| -> Value {
        serde_json::from_str(&keel(&[
            "monitors",
            "apply",
            file.to_str().unwrap(),
            "--tenant",
            "acme",
        ]))
        .unwrap()
    };
    assert_eq!(
        apply(&file),
        serde_json::json!({"created": ["api", "nightly"], "updated": [], "unchanged": []})
    );
    assert_eq!(
        apply(&file),
        serde_json::json!({"created": [], "updated": [], "unchanged": ["api", "nightly"]})
    );
    std::fs::write(&file, set(60)).unwrap();
    assert_eq!(
        apply(&file),
        serde_json::json!({"created": [], "updated": ["api"], "unchanged": ["nightly"]})
    );
    std::fs::write(&file, "monitors:\n  - name: broken\n    kind: http\n").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "monitors",
            "apply",
            file.to_str().unwrap(),
            "--tenant",
            "acme",
        ])
        .env("KEEL_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("monitors/0/target"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The report command finds the tenant by name; its figures are the
    // HTTP report's (tests/slos.rs in keel-server).
    let report = keel(&[
        "report", "uptime", "--period", "2026-10", "--tenant", "acme",
    ]);
    assert!(
        report.starts_with(
            "# Uptime report 2026-10 (UTC, 2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z)"
        ),
        "{report}"
    );
    assert!(report.contains("| Monitor | Uptime |"), "{report}");
    assert!(report.contains("| api |"), "{report}");
    // Without --tenant it is the default tenant's, which has no monitors.
    let default_report = keel(&["report", "uptime", "--period", "2026-10"]);
    assert!(
        default_report.starts_with("# Uptime report 2026-10")
            && !default_report.contains("| api |"),
        "{default_report}"
    );
    assert!(key["api_key"].as_str().unwrap().starts_with("keel_"));

    let config = keel(&["config"]);
    assert!(config.contains("listen = \"127.0.0.1:8080\""), "{config}");
    assert!(config.contains("keel_testop01_********"), "{config}");
    assert!(
        !config.contains("0123456789abcdefghij"),
        "secret leaked: {config}"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["key", "create", "--tenant", "nope"])
        .env("KEEL_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no tenant"));
}
