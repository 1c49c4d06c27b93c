//! Slow and abusive clients cannot hold the server (SPEC §11), written as the
//! attack over raw TCP: a stalled request head, a trickled body, idle sockets, more
//! connections than the cap, oversized request lines and headers, and long
//! unknown methods.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_app_with, TestApp};
use keel_server::ServerConfig;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn tight() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.limits.header_read_timeout_ms = 400;
    config.limits.body_read_timeout_ms = 400;
    config.limits.idle_timeout_ms = 800;
    config
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes; returns what it sent and how long that took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Sends one request on `stream` and reads one response head and its body.
async fn round_trip(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_stalled_request_head_is_cut_off() {
    let app = spawn_app_with(tight()).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\nX-Slow: ")
            .await
            .unwrap();
        stalled.push(stream);
    }
    for stream in &mut stalled {
        let (_, took) = read_until_closed(stream, Duration::from_secs(3)).await;
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
    }
    // Meanwhile, and after, the server answers everyone else.
    let ok = app.get("/healthz").send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_head_sent_one_byte_at_a_time_is_cut_off() {
    let app = spawn_app_with(tight()).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: keel\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            panic!("still accepting the trickled head after 3 s");
        }
    }
    let (text, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(
        !text.contains("200 OK"),
        "the trickled head was served: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_trickled_body_gets_408_in_time() {
    let app = spawn_app_with(tight()).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /v1/users HTTP/1.1\r\nHost: keel\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
        stream
    });
    let mut stream = writer.await.unwrap();
    let (text, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let app = spawn_app_with(tight()).await;
    let mut silent = connect(&app).await;
    let (_, took) = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(700),
        "closed too soon: {took:?}"
    );
    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = connect(&app).await;
    let answer = round_trip(&mut kept, "GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    read_until_closed(&mut kept, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn the_connection_cap_holds_while_existing_connections_keep_working() {
    let mut config = ServerConfig::default();
    config.limits.max_connections = 4;
    let app = spawn_app_with(config).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        let answer = round_trip(&mut stream, "GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    // The fifth is accepted by the kernel but not served while four are open.
    let mut fifth = connect(&app).await;
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fifth.read(&mut buf))
            .await
            .is_err(),
        "the fifth connection was served past the cap"
    );
    // The existing ones still are.
    let again = round_trip(&mut open[0], "GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n").await;
    assert!(again.starts_with("HTTP/1.1 200"));
    // One leaves; the fifth is served.
    drop(open.pop());
    let n = tokio::time::timeout(Duration::from_secs(3), fifth.read(&mut buf))
        .await
        .expect("served once a place was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

async fn problem_status(app: &TestApp, request: String) -> (u16, Value) {
    let mut stream = connect(app).await;
    let text = round_trip(&mut stream, &request).await;
    let status: u16 = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn oversized_targets_and_headers_are_problem_documents() {
    let app = spawn_app_with(ServerConfig::default()).await;
    let long_path = format!("/hello/{}", "a".repeat(10_000));
    let (status, problem) = problem_status(
        &app,
        format!("GET {long_path} HTTP/1.1\r\nHost: keel\r\n\r\n"),
    )
    .await;
    assert_eq!((status, problem["status"].as_u64()), (414, Some(414)));
    assert!(problem["instance"].as_str().unwrap().len() <= 256);

    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: keel\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    assert_eq!(problem_status(&app, big_header).await.0, 431);

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_headers = format!("GET /healthz HTTP/1.1\r\nHost: keel\r\n{many}\r\n");
    assert_eq!(problem_status(&app, many_headers).await.0, 431);
}

#[tokio::test]
async fn long_unknown_methods_are_refused_and_never_become_labels() {
    let app = spawn_app_with(ServerConfig::default()).await;
    let metrics = || async {
        app.get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The first refusal creates its (fixed) series; later ones must add nothing.
    let first = format!(
        "{} /v1/next HTTP/1.1\r\nHost: keel\r\n\r\n",
        "M".repeat(8000)
    );
    assert_eq!(problem_status(&app, first).await.0, 405);
    // A scrape records itself after rendering: the second one is the baseline.
    metrics().await;
    let before = metrics().await;
    for i in 0..20 {
        let method = format!("X{i}{}", "Q".repeat(8000));
        let (status, _) = problem_status(
            &app,
            format!("{method} /v1/next HTTP/1.1\r\nHost: keel\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 405);
    }
    let after = metrics().await;
    assert!(!after.contains("QQQQ"), "a method became a label");
    assert!(
        after.len() < before.len() + 200,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    // Nor audit rows.
    let audit: Value = app.get_json("/v1/audit", &app.operator_key).await;
    assert!(!audit.to_string().contains("QQQQ"));
}
