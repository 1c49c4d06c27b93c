//! Webhooks cannot reach inside (issue: SSRF). Written as the attack: a tenant
//! points webhooks at internal addresses in every spelling, through a name that
//! resolves to loopback, and through a redirect — and a local listener counts
//! the connections Keel makes to it: none.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{http::StatusCode, response::IntoResponse, routing::post, Router};
use common::{local_webhooks, spawn_app_with, Bearer, ExpectProblem, TestApp};
use keel_server::{limits::Limits, outbound::Outbound, ServerConfig};
use reqwest::Method;
use serde_json::{json, Value};

/// A TCP listener that counts the connections made to it (and answers none).
async fn counting_listener(address: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, count)
}

async fn put_hook(app: &TestApp, key: &str, url: &str) -> reqwest::RequestBuilder {
    app.request(Method::PUT, "/v1/topics/events/subscriptions/hook")
        .json(&json!({
            "target": {"type": "webhook", "url": url, "secret": "a-secret-of-16-chars"},
            "max_receives": 1,
        }))
        .key(key)
}

#[tokio::test]
async fn internal_addresses_in_every_spelling_are_refused_when_subscribing() {
    // Plain http allowed, so that only the address decides.
    let mut config = ServerConfig::default();
    config.limits.webhook_allow_http = true;
    let app = spawn_app_with(config).await;
    let key = app.register("ssrf@example.com").await;
    let (port, connections) = counting_listener("127.0.0.1:0").await;
    for host in [
        "127.0.0.1",
        "[::1]",
        "localhost",
        "LOCALHOST.",
        "0177.0.0.1",
        "2130706433",
        "0x7f.1",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "10.0.0.1",
        "169.254.169.254",
        "192.168.1.1",
        "100.64.0.1",
        "[fd00::1]",
        "[fe80::1]",
    ] {
        let url = format!("http://{host}:{port}/hook");
        let problem = put_hook(&app, &key, &url).await.problem(400).await;
        assert_eq!(problem["errors"][0]["pointer"], "/target/url", "{url}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn plain_http_and_short_secrets_are_refused_by_default() {
    let app = spawn_app_with(ServerConfig::default()).await;
    let key = app.register("plain@example.com").await;
    let problem = put_hook(&app, &key, "http://hooks.example.com/x")
        .await
        .problem(400)
        .await;
    assert!(problem["detail"].as_str().unwrap().contains("https"));
    let short = app
        .request(Method::PUT, "/v1/topics/events/subscriptions/hook")
        .json(&json!({"target": {"type": "webhook", "url": "https://hooks.example.com/x", "secret": "short"}}))
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(short["errors"][0]["pointer"], "/target/secret");
}

#[tokio::test]
async fn a_name_that_resolves_inside_gets_no_connection() {
    // What a rebinding name does: passes the URL check, resolves to loopback at
    // call time. The client refuses every resolved internal address before it
    // connects.
    let limits = Limits {
        webhook_allow_http: true,
        ..Limits::default()
    };
    let outbound = Outbound::new(&limits);
    let (port, connections) = counting_listener("127.0.0.1:0").await;
    let error = outbound
        .client()
        .post(format!("http://localhost:{port}/hook"))
        .send()
        .await
        .unwrap_err();
    assert!(
        keel_server::outbound::describe_failure(&error).starts_with("refused:"),
        "{error:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    // The operator's allowlist opens exactly what it names.
    let allowed = Outbound::new(&Limits {
        webhook_allow_http: true,
        webhook_allow: vec!["localhost".into()],
        ..Limits::default()
    });
    let _ = allowed
        .client()
        .post(format!("http://localhost:{port}/hook"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    // Both listeners are allowed; the redirect alone must not be followed.
    let app = spawn_app_with(local_webhooks()).await;
    let key = app.register("redirect@example.com").await;
    let (inner_port, connections) = counting_listener("127.0.0.1:0").await;
    let location = format!("http://127.0.0.1:{inner_port}/admin");
    let redirector = Router::new().route(
        "/hook",
        post(move || {
            let location = location.clone();
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", location)],
                    "moved",
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outer = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirector).await.unwrap() });
    let response = put_hook(&app, &key, &outer).await.send().await.unwrap();
    assert_eq!(response.status(), 200);
    app.post_json("/v1/topics/events/messages", json!({"body": 1}))
        .key(&key)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempts: Value = app.get_json("/v1/queues/events/hook/attempts", &key).await;
        if let Some(first) = attempts["attempts"].get(0) {
            assert_eq!(first["error"], "HTTP 307");
            break;
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn outbound_calls_are_capped_per_tenant() {
    let outbound = Outbound::new(&Limits {
        outbound_max_in_flight: 8,
        outbound_max_in_flight_per_tenant: 2,
        ..Limits::default()
    });
    let tenant = keel_store::TenantId("t1".into());
    let first = outbound.permit(&tenant).await;
    let _second = outbound.permit(&tenant).await;
    assert_eq!(outbound.in_flight(), 2);
    let third = tokio::time::timeout(Duration::from_millis(100), outbound.permit(&tenant)).await;
    assert!(third.is_err(), "a third call of one tenant waits");
    let other = keel_store::TenantId("t2".into());
    let _elsewhere = tokio::time::timeout(Duration::from_millis(100), outbound.permit(&other))
        .await
        .expect("another tenant is not held up");
    drop(first);
    tokio::time::timeout(Duration::from_millis(100), outbound.permit(&tenant))
        .await
        .expect("a freed place is taken");
}
