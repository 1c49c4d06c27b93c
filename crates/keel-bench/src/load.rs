//! A small HTTP/1.1 load generator: N keep-alive connections, each sending one
//! request at a time, either as fast as answers come back or at a fixed pace.
//! Latency is measured from the moment a request is sent; when paced, sends that
//! leave well after their schedule are counted, so a server (or generator) that
//! cannot keep the pace shows up instead of hiding.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;
use keel_core::latency::LatencyHistogram;

#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: Option<String>,
    pub method: Method,
    /// A JSON body, if any.
    pub body: Option<Bytes>,
}

impl Target {
    pub fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Self {
        Self {
            addr,
            path: path.to_owned(),
            bearer: bearer.map(str::to_owned),
            method: Method::GET,
            body: None,
        }
    }

    pub fn post(addr: SocketAddr, path: &str, bearer: Option<&str>, body: String) -> Self {
        Self {
            method: Method::POST,
            body: Some(Bytes::from(body)),
            ..Self::get(addr, path, bearer)
        }
    }

    pub fn put(addr: SocketAddr, path: &str, bearer: Option<&str>, body: String) -> Self {
        Self {
            method: Method::PUT,
            ..Self::post(addr, path, bearer, body)
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(header::HOST, "localhost");
        if let Some(key) = &self.bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if self.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request
            .body(Full::new(self.body.clone().unwrap_or_default()))
            .expect("a valid request")
    }
}

pub struct Outcome {
    pub requests: u64,
    /// Paced sends that left more than 2 ms after their scheduled time.
    pub late: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: LatencyHistogram,
    /// Response bodies, when asked for (to check counter values).
    pub bodies: Vec<Bytes>,
}

impl Outcome {
    fn empty() -> Self {
        Self {
            requests: 0,
            late: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: LatencyHistogram::default(),
            bodies: Vec::new(),
        }
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p_ms(&self, q: f64) -> f64 {
        self.latency.quantile(q).unwrap_or(f64::NAN) / 1000.0
    }
}

/// One request on a fresh connection; its body (for checks and set-up).
pub async fn one(target: &Target) -> anyhow::Result<Bytes> {
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(target.request()).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{} answered {}",
        target.path,
        response.status()
    );
    Ok(response.into_body().collect().await?.to_bytes())
}

/// `pace`: `None` = as fast as each connection can go; `Some(r)` = `r` requests/s
/// in total, spread evenly over the connections.
pub async fn run(
    target: &Target,
    connections: usize,
    duration: Duration,
    pace: Option<f64>,
    keep_bodies: bool,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let target = target.clone();
        let interval = pace.map(|r| Duration::from_secs_f64(connections as f64 / r));
        // Stagger paced connections so they do not fire in lockstep.
        let offset = interval
            .map(|d| d.mul_f64(i as f64 / connections as f64))
            .unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            connection(target, deadline, started + offset, interval, keep_bodies).await
        }));
    }
    let mut total = Outcome::empty();
    for task in tasks {
        let part = task.await.expect("load task");
        total.requests += part.requests;
        total.errors += part.errors;
        total.late += part.late;
        total.latency.merge(&part.latency);
        total.bodies.extend(part.bodies);
    }
    total.elapsed = started.elapsed();
    total
}

async fn connection(
    target: Target,
    deadline: Instant,
    first: Instant,
    interval: Option<Duration>,
    keep_bodies: bool,
) -> Outcome {
    let mut out = Outcome::empty();
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .expect("connect");
    stream.set_nodelay(true).ok();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut scheduled = first;
    loop {
        if interval.is_some() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        // tokio's timer wakes within about a millisecond of the schedule; later than
        // that, the generator or the server is not keeping up.
        if interval.is_some()
            && sent.saturating_duration_since(scheduled) > Duration::from_millis(2)
        {
            out.late += 1;
        }
        let request = target.request();
        if sender.ready().await.is_err() {
            out.errors += 1;
            break;
        }
        match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                match (ok, body) {
                    (true, Ok(body)) => {
                        out.requests += 1;
                        out.latency.record(sent.elapsed().as_micros() as u64);
                        if keep_bodies {
                            out.bodies.push(body);
                        }
                    }
                    _ => out.errors += 1,
                }
            }
            Err(_) => {
                out.errors += 1;
                break;
            }
        }
        if let Some(interval) = interval {
            scheduled += interval;
        }
    }
    out
}
