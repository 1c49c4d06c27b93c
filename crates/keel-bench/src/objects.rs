//! A large object through the real `keel` binary (issue 9: "a 1 GiB object
//! uploaded and downloaded with flat memory"): upload and download rates beside
//! the same bytes written to and read from a file on the same disk (the
//! baseline), and the server's peak RSS (`VmHWM`) before and after.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "keel_benchobj_0123456789abcdefghij0123456789";
const CHUNK: usize = 1024 * 1024;

fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    let kib: f64 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok(kib / 1024.0)
}

fn chunk() -> bytes::Bytes {
    bytes::Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// The baseline: the same bytes written to a file (and fsync'd), then read back.
async fn raw_file(dir: &Path, bytes: u64) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("raw-baseline");
    let data = chunk();
    let started = Instant::now();
    let mut file = tokio::fs::File::create(&path).await?;
    for _ in 0..bytes / CHUNK as u64 {
        file.write_all(&data).await?;
    }
    file.sync_all().await?;
    let write = started.elapsed();
    let started = Instant::now();
    let mut file = tokio::fs::File::open(&path).await?;
    let mut buffer = vec![0u8; CHUNK];
    while file.read(&mut buffer).await? > 0 {}
    let read = started.elapsed();
    std::fs::remove_file(&path)?;
    Ok((rate(bytes, write), rate(bytes, read)))
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

pub async fn run(binary: &Path, data_dir: &Path, mib: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        binary.exists(),
        "{} not found: run `cargo build --release` first",
        binary.display()
    );
    let dir = data_dir.join("objects-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bytes = mib * 1024 * 1024;
    let (raw_write, raw_read) = raw_file(&dir, bytes).await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&dir)
        .env("KEEL_LOG", "warn")
        .env("KEEL_BOOTSTRAP_ADMIN_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "keel did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let measured = async {
        let created = client
            .put(format!("{base}/v1/buckets/bench"))
            .bearer_auth(KEY)
            .send()
            .await?;
        anyhow::ensure!(
            created.status().is_success(),
            "bucket: {}",
            created.status()
        );
        let before = peak_rss_mib(child.id())?;

        let data = chunk();
        let body = futures::stream::iter(
            (0..bytes / CHUNK as u64).map(move |_| Ok::<_, std::io::Error>(data.clone())),
        );
        let started = Instant::now();
        let put = client
            .put(format!("{base}/v1/buckets/bench/objects/large.bin"))
            .bearer_auth(KEY)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await?;
        anyhow::ensure!(put.status() == 200, "upload: {}", put.status());
        let upload = started.elapsed();
        let after_upload = peak_rss_mib(child.id())?;

        let started = Instant::now();
        let got = client
            .get(format!("{base}/v1/buckets/bench/objects/large.bin"))
            .bearer_auth(KEY)
            .send()
            .await?;
        anyhow::ensure!(got.status() == 200, "download: {}", got.status());
        let mut stream = got.bytes_stream();
        let mut received = 0u64;
        while let Some(piece) = stream.next().await {
            received += piece?.len() as u64;
        }
        anyhow::ensure!(received == bytes, "downloaded {received} of {bytes} bytes");
        let download = started.elapsed();
        let after_download = peak_rss_mib(child.id())?;
        Ok((before, upload, after_upload, download, after_download))
    }
    .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    let (before, upload, after_upload, download, after_download) = measured?;

    println!();
    println!(
        "One {mib} MiB object through `keel serve` (files), 1 MiB chunks, beside a plain file"
    );
    println!("  plain file write + fsync (baseline)        {raw_write:>8.0} MiB/s");
    println!(
        "  PUT /v1/buckets/…/objects (streamed)        {:>8.0} MiB/s",
        rate(bytes, upload)
    );
    println!("  plain file read (baseline)                 {raw_read:>8.0} MiB/s");
    println!(
        "  GET /v1/buckets/…/objects (streamed)        {:>8.0} MiB/s",
        rate(bytes, download)
    );
    println!(
        "  => server peak RSS: {before:.1} MiB before, {after_upload:.1} MiB after the upload, \
         {after_download:.1} MiB after the download (flat: {})",
        if after_download - before < 64.0 {
            "yes"
        } else {
            "NO"
        }
    );
    Ok(())
}
