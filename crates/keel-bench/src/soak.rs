//! SPEC §11's crash bar as a soak: the real `keel` binary under publish load is
//! killed with SIGKILL at a random moment, `cycles` times; after the last restart
//! every record that was answered 202 must be stored exactly once.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::load::{self, Target};

const KEY: &str = "keel_soak0001_0123456789abcdefghij0123456789";

fn start(binary: &Path, dir: &Path, addr: SocketAddr) -> anyhow::Result<Child> {
    let child = Command::new(binary)
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir)
        .env("KEEL_BOOTSTRAP_ADMIN_KEY", KEY)
        .env("KEEL_RATE_LIMIT_PER_SECOND", "1000000000")
        .env("KEEL_RATE_LIMIT_BURST", "1000000000")
        .env("KEEL_TENANT_RATE_LIMIT_PER_SECOND", "1000000000")
        .env("KEEL_TENANT_RATE_LIMIT_BURST", "1000000000")
        .env("KEEL_FANOUT_BYTES_PER_SECOND_PER_TENANT", "1000000000000")
        .env("KEEL_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "keel did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

/// A pseudo-random delay from the clock's nanoseconds: 100–600 ms.
fn random_delay() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Duration::from_millis(100 + u64::from(nanos % 500))
}

pub async fn run(binary: &Path, data_dir: &Path, cycles: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        binary.exists(),
        "{} not found: run `cargo build --release` first",
        binary.display()
    );
    let dir = data_dir.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let accepted: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    println!();
    println!("Crash soak: {cycles} × (8 clients publishing records, SIGKILL at a random moment, restart)");
    for cycle in 0..cycles as u64 {
        let mut child = start(binary, &dir, addr)?;
        let mut clients = Vec::new();
        for c in 0..8u64 {
            let accepted = accepted.clone();
            let id = cycle * 100 + c;
            clients.push(tokio::spawn(async move {
                for n in 0.. {
                    let body = format!("{{\"client\":{id},\"n\":{n}}}");
                    let target =
                        Target::post(addr, "/v1/collections/soak/records", Some(KEY), body);
                    match load::one(&target).await {
                        Ok(_) => accepted.lock().expect("not poisoned").push((id, n)),
                        Err(_) => return,
                    }
                }
            }));
        }
        tokio::time::sleep(random_delay()).await;
        child.kill()?; // SIGKILL
        child.wait()?;
        for client in clients {
            client.await?;
        }
    }
    let child = start(binary, &dir, addr)?;
    let accepted = accepted.lock().expect("not poisoned").clone();
    let result = verify(addr, &accepted).await;
    let mut child = child;
    child.kill()?;
    child.wait()?;
    let (accepted, stored, missing, duplicated) = result?;
    println!("  answered 202: {accepted}; stored: {stored}; missing: {missing}; stored twice: {duplicated}");
    crate::verdict(
        &format!("{missing} lost, {duplicated} duplicated over {cycles} kill -9 cycles"),
        missing == 0 && duplicated == 0,
        "target: 0 and 0",
    );
    Ok(())
}

async fn verify(
    addr: SocketAddr,
    accepted: &[(u64, u64)],
) -> anyhow::Result<(usize, usize, usize, usize)> {
    let stats = Target::get(addr, "/v1/queues/soak/_collection", Some(KEY));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: serde_json::Value = serde_json::from_slice(&load::one(&stats).await?)?;
        if s["depth"] == 0 && s["in_flight"] == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut counts: HashMap<(u64, u64), usize> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page = Target::get(
            addr,
            &format!("/v1/collections/soak/records?limit=1000{cursor}"),
            Some(KEY),
        );
        let page: serde_json::Value = serde_json::from_slice(&load::one(&page).await?)?;
        for r in page["records"].as_array().into_iter().flatten() {
            let key = (
                r["data"]["client"].as_u64().unwrap_or(u64::MAX),
                r["data"]["n"].as_u64().unwrap_or(u64::MAX),
            );
            *counts.entry(key).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let missing = accepted.iter().filter(|r| !counts.contains_key(r)).count();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    Ok((accepted.len(), counts.len(), missing, duplicated))
}
