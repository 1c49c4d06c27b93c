//! Start-up and idle footprint of the real `keel` binary (SPEC §10: cold start to
//! ready ≤ 100 ms on an existing data directory; idle RSS ≤ 30 MB).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn ready(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 16];
    matches!(stream.read(&mut head), Ok(n) if n >= 12 && &head[9..12] == b"200")
}

fn start(binary: &Path, data_dir: &Path, addr: &str) -> anyhow::Result<(Child, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["serve", "--listen", addr, "--data-dir"])
        .arg(data_dir)
        .env("KEEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while !ready(addr) {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("keel exited during start-up: {status}");
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "keel was not ready within 10 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok((child, started.elapsed()))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn stop(mut child: Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

pub fn run(binary: &Path, data_dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        binary.exists(),
        "{} not found: run `cargo build --release` first",
        binary.display()
    );
    let dir = data_dir.join("startup");
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (first, fresh) = start(binary, &dir, &addr)?;
    stop(first)?;
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        if let Some(child) = last.take() {
            stop(child)?;
        }
        let (child, took) = start(binary, &dir, &addr)?;
        times.push(took);
        last = Some(child);
    }
    let child = last.expect("ten starts");
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kib(child.id());
    stop(child)?;
    let rss = rss?;
    times.sort();
    let median = times[times.len() / 2];
    println!();
    println!(
        "keel serve start-up ({}), existing data directory, 10 starts",
        binary.display()
    );
    println!(
        "  first start on an empty directory            {:>7.1} ms",
        fresh.as_secs_f64() * 1e3
    );
    println!(
        "  start to /readyz 200: median {:.1} ms, worst {:.1} ms",
        median.as_secs_f64() * 1e3,
        times.last().expect("ten").as_secs_f64() * 1e3
    );
    println!(
        "  => cold start median = {:.1} ms (target ≤ 100 ms): {}",
        median.as_secs_f64() * 1e3,
        if median <= Duration::from_millis(100) {
            "MET"
        } else {
            "MISSED"
        }
    );
    println!(
        "  => idle RSS after 3 s = {:.1} MB (target ≤ 30 MB): {}",
        rss as f64 / 1024.0,
        if rss <= 30 * 1024 { "MET" } else { "MISSED" }
    );
    Ok(())
}
