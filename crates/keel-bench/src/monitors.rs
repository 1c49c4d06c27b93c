//! SPEC §10 / issue 10's prober target: 10,000 HTTP monitors at a 30 s interval
//! against a local target, checked by the release `keel serve` on SQLite — RSS
//! ≤ 150 MB, ≤ 25% of one core, check starts within 1 s of their slots.
//!
//! Beside it, in the same run: the same `keel serve` idle (no monitors), and a
//! bare prober — this benchmark binary re-run as a child process that fires the
//! same GETs from 10,000 timers with reqwest and stores nothing. The target counts
//! hits per monitor and the gaps between them, so each monitor's "once per
//! interval" is seen from the outside, not taken from Keel's own metrics.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{extract::Path as UrlPath, routing::get, Router};

use crate::load::{self, Target};

const KEY: &str = "keel_monbench1_0123456789abcdefghij0123456789";

/// What the local target saw, per monitor.
struct Hits {
    started: Instant,
    /// Hits per monitor since the last reset.
    count: Vec<AtomicU32>,
    /// Microseconds since `started` of each monitor's last hit (0 = none yet).
    last_us: Vec<AtomicU64>,
    /// Gaps between consecutive hits of one monitor, in microseconds, since the
    /// last reset.
    gaps_us: Mutex<Vec<u64>>,
}

impl Hits {
    fn new(monitors: usize) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            count: (0..monitors).map(|_| AtomicU32::new(0)).collect(),
            last_us: (0..monitors).map(|_| AtomicU64::new(0)).collect(),
            gaps_us: Mutex::new(Vec::new()),
        })
    }

    fn hit(&self, monitor: usize) {
        let Some(count) = self.count.get(monitor) else {
            return;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_micros() as u64;
        let last = self.last_us[monitor].swap(now, Ordering::Relaxed);
        if last != 0 {
            self.gaps_us.lock().expect("not poisoned").push(now - last);
        }
    }

    fn reset(&self) {
        for c in &self.count {
            c.store(0, Ordering::Relaxed);
        }
        self.gaps_us.lock().expect("not poisoned").clear();
    }

    fn forget_last(&self) {
        for l in &self.last_us {
            l.store(0, Ordering::Relaxed);
        }
    }

    /// (total hits, fewest per monitor, most per monitor).
    fn counts(&self) -> (u64, u32, u32) {
        let counts: Vec<u32> = self
            .count
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (
            counts.iter().map(|c| u64::from(*c)).sum(),
            counts.iter().copied().min().unwrap_or(0),
            counts.iter().copied().max().unwrap_or(0),
        )
    }

    /// The largest |gap − interval| among `share` of the gaps, and overall, in ms.
    fn gap_deviation_ms(&self, interval: Duration, share: f64) -> (f64, f64) {
        let interval_us = interval.as_micros() as i64;
        let mut deviations: Vec<u64> = self
            .gaps_us
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|g| (*g as i64 - interval_us).unsigned_abs())
            .collect();
        if deviations.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        deviations.sort_unstable();
        let at = ((deviations.len() as f64 * share).ceil() as usize).clamp(1, deviations.len());
        (
            deviations[at - 1] as f64 / 1e3,
            *deviations.last().expect("not empty") as f64 / 1e3,
        )
    }
}

async fn start_target(hits: Arc<Hits>) -> anyhow::Result<SocketAddr> {
    let app = Router::new().route(
        "/m/{i}",
        get(move |UrlPath(i): UrlPath<usize>| {
            hits.hit(i);
            async { "ok" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// CPU time (user + system) a process has used, and its resident memory.
struct Usage {
    cpu: Duration,
    rss_kib: u64,
}

fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks.
    let after = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow::anyhow!("odd /proc stat"))?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("0")
        .parse()?;
    Ok(Usage {
        cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()),
        rss_kib,
    })
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process watched over `window`: its share of one core and its peak RSS
/// (sampled every 250 ms).
struct Watched {
    core_percent: f64,
    peak_rss_mb: f64,
}

async fn watch(pid: u32, window: Duration) -> anyhow::Result<Watched> {
    let before = usage(pid)?;
    let started = Instant::now();
    let mut peak = before.rss_kib;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(usage(pid)?.rss_kib);
    }
    let after = usage(pid)?;
    Ok(Watched {
        core_percent: (after.cpu - before.cpu).as_secs_f64() / started.elapsed().as_secs_f64()
            * 100.0,
        peak_rss_mb: peak as f64 / 1024.0,
    })
}

fn start_keel(binary: &Path, dir: &Path, addr: SocketAddr) -> anyhow::Result<Child> {
    let child = Command::new(binary)
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir)
        .env("KEEL_BOOTSTRAP_ADMIN_KEY", KEY)
        .env("KEEL_PROBE_ALLOW", "127.0.0.1/32")
        // Creating 10,000 monitors is one client's burst; the limits are not
        // what is measured.
        .env("KEEL_RATE_LIMIT_PER_SECOND", "1000000000")
        .env("KEEL_RATE_LIMIT_BURST", "1000000000")
        .env("KEEL_TENANT_RATE_LIMIT_PER_SECOND", "1000000000")
        .env("KEEL_TENANT_RATE_LIMIT_BURST", "1000000000")
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

/// Creates the monitors through the API, 16 requests at a time.
async fn create_monitors(
    keel: SocketAddr,
    target: SocketAddr,
    monitors: usize,
    interval: Duration,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let next = next.clone();
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= monitors {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = serde_json::json!({
                    "name": format!("m{i}"),
                    "kind": "http",
                    "target": format!("http://{target}/m/{i}"),
                    "interval_s": interval.as_secs(),
                    "conditions": ["status == 200"],
                })
                .to_string();
                load::one(&Target::post(keel, "/v1/monitors", Some(KEY), body)).await?;
            }
        }));
    }
    for client in clients {
        client.await??;
    }
    Ok(())
}

/// `keel_probe_start_lateness_seconds` from `/metrics`: (checks within 1 s,
/// all checks, checks within 100 ms).
async fn lateness(keel: SocketAddr) -> anyhow::Result<(u64, u64, u64)> {
    let text = load::one(&Target::get(keel, "/metrics", None)).await?;
    let text = String::from_utf8_lossy(&text);
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Ok((
        value("keel_probe_start_lateness_seconds_bucket{le=\"1.0\"}"),
        value("keel_probe_start_lateness_seconds_count"),
        value("keel_probe_start_lateness_seconds_bucket{le=\"0.1\"}"),
    ))
}

pub struct Options<'a> {
    pub binary: &'a Path,
    pub data_dir: &'a Path,
    pub monitors: usize,
    pub interval: Duration,
    pub window: Duration,
}

fn report_hits(hits: &Hits, o: &Options) -> (u64, u32, u32) {
    let (total, fewest, most) = hits.counts();
    let (p99, worst) = hits.gap_deviation_ms(o.interval, 0.99);
    println!(
        "    target saw {total} checks ({:.0}/s; {:.0} expected, {:.0}/s), per monitor {fewest}–{most}; gap − interval: p99 {p99:.0} ms, worst {worst:.0} ms",
        total as f64 / o.window.as_secs_f64(),
        o.monitors as f64 * o.window.as_secs_f64() / o.interval.as_secs_f64(),
        o.monitors as f64 / o.interval.as_secs_f64(),
    );
    (total, fewest, most)
}

pub async fn run(o: Options<'_>) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.binary.exists(),
        "{} not found: run `cargo build --release` first",
        o.binary.display()
    );
    let dir = o.data_dir.join("monitors");
    let _ = std::fs::remove_dir_all(&dir);
    let hits = Hits::new(o.monitors);
    let target = start_target(hits.clone()).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let warm = o.interval + Duration::from_secs(5);
    println!();
    println!(
        "Probers: {} HTTP monitors every {} s against a local target, measured over {} s after {} s of warm-up",
        o.monitors,
        o.interval.as_secs(),
        o.window.as_secs(),
        warm.as_secs()
    );

    // The bare prober first, alone.
    let mut bare = Command::new(std::env::current_exe()?)
        .args([
            "--bare-prober",
            &format!("http://{target}"),
            "--monitors",
            &o.monitors.to_string(),
            "--monitor-interval-s",
            &o.interval.as_secs().to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()?;
    tokio::time::sleep(warm).await;
    hits.reset();
    let bare_usage = watch(bare.id(), o.window).await;
    bare.kill()?;
    bare.wait()?;
    let bare_usage = bare_usage?;
    println!(
        "  bare prober: timers + reqwest, nothing stored (baseline)   {:>5.1}% of a core   peak RSS {:>6.1} MB",
        bare_usage.core_percent, bare_usage.peak_rss_mb
    );
    report_hits(&hits, &o);

    let mut keel = start_keel(o.binary, &dir, addr)?;
    let result = measure_keel(&o, &hits, &keel, addr, target, warm).await;
    keel.kill()?;
    keel.wait()?;
    result
}

async fn measure_keel(
    o: &Options<'_>,
    hits: &Hits,
    keel: &Child,
    addr: SocketAddr,
    target: SocketAddr,
    warm: Duration,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = watch(keel.id(), Duration::from_secs(10)).await?;
    println!(
        "  keel serve, no monitors (baseline)                          {:>5.1}% of a core   peak RSS {:>6.1} MB",
        idle.core_percent, idle.peak_rss_mb
    );
    let created = Instant::now();
    create_monitors(addr, target, o.monitors, o.interval).await?;
    println!(
        "    {} monitors created through POST /v1/monitors in {:.1} s",
        o.monitors,
        created.elapsed().as_secs_f64()
    );
    hits.forget_last();
    tokio::time::sleep(warm).await;
    hits.reset();
    let (within_before, all_before, tight_before) = lateness(addr).await?;
    let busy = watch(keel.id(), o.window).await?;
    let (within_after, all_after, tight_after) = lateness(addr).await?;
    println!(
        "  keel serve --roles api,worker,prober, SQLite                {:>5.1}% of a core   peak RSS {:>6.1} MB",
        busy.core_percent, busy.peak_rss_mb
    );
    let (total, _, most) = report_hits(hits, o);
    let checks = all_after - all_before;
    let within = within_after - within_before;
    println!(
        "    keel_probe_start_lateness_seconds: {checks} checks, {} started within 100 ms of their slot, {} within 1 s",
        tight_after - tight_before,
        within
    );
    crate::verdict(
        &format!("peak RSS = {:.1} MB", busy.peak_rss_mb),
        busy.peak_rss_mb <= 150.0,
        "target ≤ 150 MB",
    );
    crate::verdict(
        &format!("CPU = {:.1}% of one core", busy.core_percent),
        busy.core_percent <= 25.0,
        "target ≤ 25%",
    );
    let expected = o.monitors as f64 * o.window.as_secs_f64() / o.interval.as_secs_f64();
    crate::verdict(
        &format!(
            "{within} of {checks} checks started within 1 s of their slot; {total} hits for {expected:.0} slots, at most {most} per monitor"
        ),
        checks > 0
            && within == checks
            && (total as f64) >= expected * 0.99
            && f64::from(most) <= (o.window.as_secs_f64() / o.interval.as_secs_f64()).ceil() + 1.0,
        "target: all within 1 s, every monitor once per interval",
    );
    Ok(())
}

/// The baseline prober (run as `keel-bench --bare-prober URL`): one timer per
/// monitor, each firing a GET at its phase of the interval, results discarded.
/// Runs until killed.
pub async fn bare_prober(base: &str, monitors: usize, interval: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .timeout(Duration::from_secs(10))
        .build()?;
    let start = tokio::time::Instant::now();
    for i in 0..monitors {
        let client = client.clone();
        let url = format!("{base}/m/{i}");
        let phase = interval.mul_f64(i as f64 / monitors as f64);
        tokio::spawn(async move {
            let mut slot = start + phase;
            loop {
                tokio::time::sleep_until(slot).await;
                if let Ok(response) = client.get(&url).send().await {
                    let _ = response.bytes().await;
                }
                slot += interval;
            }
        });
    }
    std::future::pending::<()>().await;
    Ok(())
}
