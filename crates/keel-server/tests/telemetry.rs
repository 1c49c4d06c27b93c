//! SPEC §6 telemetry through HTTP: the simple shape in (bad input too; OTLP/HTTP is
//! `tests/otlp.rs`), logs and metric queries out, and retention; the seed's flow
//! end to end is `tests/telemetry_import.rs`. Runs on SQLite + files, and in CI again on
//! PostgreSQL + Redis + NATS + S3 (`KEEL_TEST_HTTP_BACKEND=postgres`).

mod common;

use std::time::Duration;

use common::{
    spawn_app, spawn_app_with,
    telemetry::{bodies, gzip, logs, FROM, TO},
    Bearer, ExpectProblem, TestApp,
};
use keel_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

async fn post_telemetry(
    app: &TestApp,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.request(Method::POST, "/v1/telemetry")
        .key(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn simple_telemetry_is_stored_and_queried_by_account_level_words_and_time() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    // The seed's shape: one object with a log and a metric (counted as 1).
    let seed = post_telemetry(
        &app,
        &key,
        "application/json",
        br#"{"log": "sample_log_data", "metric": "sample_metric_data", "account": "111"}"#.to_vec(),
    )
    .await;
    assert_eq!(seed.status(), 202);
    assert_eq!(
        seed.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "rejected": 0, "errors": []})
    );

    let array = json!([
        {"log": "Disk full on /dev/sda1", "level": "ERROR", "ts": "2024-06-15T10:00:00Z", "account": "111", "attributes": {"host": "a"}},
        {"log": "disk quota exceeded", "level": "warn", "ts": "2024-06-15T11:00:00Z", "resource": {"cloud.account.id": "222"}},
        {"metric": "cpu", "value": 0.5, "ts": "2024-06-15T10:00:10Z", "labels": {"host": "a"}, "account": "111"},
        {"metric": "cpu", "value": 1.5, "ts": "2024-06-15T10:00:50Z", "labels": {"host": "b"}, "account": "111"},
        {"metric": "cpu", "value": 4.0, "ts": "2024-06-15T10:01:10Z", "labels": {"host": "a"}, "account": "222"},
        {"nothing": "here"}
    ]);
    let response = post_telemetry(
        &app,
        &key,
        "application/json",
        array.to_string().into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 202);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(5), Some(1))
    );
    assert!(
        report["errors"][0].as_str().unwrap().starts_with("/5:"),
        "{report}"
    );

    // NDJSON, gzipped, with a broken line and one far too long.
    let huge = format!("{{\"log\": \"{}\"}}", "x".repeat(300 * 1024));
    let ndjson = format!(
        "{{\"log\": \"service started\", \"ts\": \"2024-06-15T09:00:00Z\", \"account\": \"111\"}}\n{{not json\n{huge}\n"
    );
    let response = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(ndjson.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{report}"
    );
    assert!(report["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("line 2: not JSON"));
    assert!(report["errors"][1]
        .as_str()
        .unwrap()
        .contains("longer than"));

    // Queries: newest first, by words, level, account and time.
    let all = logs(&app, &key, "").await;
    assert_eq!(
        bodies(&all),
        [
            "sample_log_data",
            "disk quota exceeded",
            "Disk full on /dev/sda1",
            "service started"
        ]
    );
    assert_eq!(all[2]["level"], "ERROR");
    assert_eq!(all[2]["account"], "111");
    assert_eq!(all[2]["attributes"]["host"], "a");
    assert_eq!(all[2]["ts"], "2024-06-15T10:00:00Z");
    assert_eq!(
        bodies(&logs(&app, &key, "q=DISK").await),
        ["disk quota exceeded", "Disk full on /dev/sda1"]
    );
    assert_eq!(
        bodies(&logs(&app, &key, "q=disk%20full&level=error").await),
        ["Disk full on /dev/sda1"]
    );
    assert_eq!(
        bodies(&logs(&app, &key, "account=222").await),
        ["disk quota exceeded"]
    );
    let window = app
        .get_json(
            "/v1/logs?from=2024-06-15T09:30:00Z&to=2024-06-15T10:30:00Z",
            &key,
        )
        .await;
    assert_eq!(
        bodies(window["logs"].as_array().unwrap()),
        ["Disk full on /dev/sda1"]
    );
    // The default window is the last hour: the seed line (sent "now") only.
    let recent = app.get_json("/v1/logs", &key).await;
    assert_eq!(
        bodies(recent["logs"].as_array().unwrap()),
        ["sample_log_data"]
    );
    // Cursors.
    let first = app
        .get_json(&format!("/v1/logs?from={FROM}&to={TO}&limit=3"), &key)
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(
            &format!("/v1/logs?from={FROM}&to={TO}&limit=3&cursor={cursor}"),
            &key,
        )
        .await;
    assert_eq!(
        bodies(rest["logs"].as_array().unwrap()),
        ["service started"]
    );
    assert!(rest["next_cursor"].is_null());

    // Metrics: one series per step, each aggregation, labels and account.
    let series = |query: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            app.get_json(
                &format!(
                    "/v1/metrics/cpu?from=2024-06-15T10:00:00Z&to=2024-06-15T10:02:00Z&{query}"
                ),
                &key,
            )
            .await
        }
    };
    let avg = series("step=1m").await;
    assert_eq!(avg["metric"], "cpu");
    assert_eq!(avg["agg"], "avg");
    assert_eq!(
        avg["points"],
        json!([{"ts": "2024-06-15T10:00:00Z", "value": 1.0}, {"ts": "2024-06-15T10:01:00Z", "value": 4.0}])
    );
    assert_eq!(
        series("agg=sum").await["points"],
        json!([{"ts": "2024-06-15T10:00:00Z", "value": 6.0}])
    );
    assert_eq!(series("agg=count").await["points"][0]["value"], 3.0);
    assert_eq!(
        series("agg=max&account=111").await["points"][0]["value"],
        1.5
    );
    assert_eq!(
        series("agg=p99&label.host=a").await["points"][0]["value"],
        4.0
    );
    assert_eq!(
        series("agg=min&label.host=a&account=111").await["points"][0]["value"],
        0.5
    );
    let seed_metric = app
        .get_json("/v1/metrics/sample_metric_data?agg=sum", &key)
        .await;
    assert_eq!(seed_metric["points"][0]["value"], 1.0);

    // Another tenant sees none of it.
    let other = app.register("other@example.com").await;
    assert!(logs(&app, &other, "").await.is_empty());
    let theirs = app
        .get_json(
            "/v1/metrics/cpu?from=2024-06-15T10:00:00Z&to=2024-06-15T10:02:00Z",
            &other,
        )
        .await;
    assert_eq!(theirs["points"], json!([]));
}

#[tokio::test]
async fn bad_telemetry_gets_clear_answers() {
    let mut config = ServerConfig::default();
    config.limits.telemetry_max_bytes = 64 * 1024;
    let app = spawn_app_with(config).await;
    let key = app.register("o@example.com").await;
    let wrong_type = post_telemetry(&app, &key, "text/plain", b"{\"log\": \"x\"}".to_vec()).await;
    assert_eq!(wrong_type.status(), 415);
    let not_json = post_telemetry(&app, &key, "application/json", b"{nope".to_vec()).await;
    assert_eq!(not_json.status(), 400);
    let too_big = post_telemetry(&app, &key, "application/x-ndjson", vec![b' '; 65 * 1024]).await;
    assert_eq!(too_big.status(), 413);
    // A gzip bomb: 66 bytes on the wire, 10 MiB inflated.
    let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
    assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
    let response = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(bomb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let broken_gzip = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(broken_gzip.status(), 400);
    let brotli = app
        .request(Method::POST, "/v1/telemetry")
        .key(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(b"{}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.status(), 415);
    // Queries refuse what they cannot answer.
    for bad in [
        "/v1/logs?from=yesterday",
        "/v1/logs?from=2024-06-15T12:00:00Z&to=2024-06-15T11:00:00Z",
        "/v1/metrics/cpu?agg=median",
        "/v1/metrics/cpu?step=0",
        "/v1/metrics/cpu?step=1s&from=2024-01-01T00:00:00Z&to=2024-06-01T00:00:00Z",
        "/v1/metrics/cpu?color=red",
        "/v1/metrics/1cpu",
        "/v1/logs?account=%00",
        "/v1/metrics/cpu?label.host=a%00",
    ] {
        app.get(bad).key(&key).problem(400).await;
    }
    // A read-only key cannot write telemetry.
    let reader = app
        .post_json_with("/v1/keys", json!({"scopes": ["read"]}), &key)
        .await["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = post_telemetry(
        &app,
        &reader,
        "application/json",
        b"{\"log\": \"x\"}".to_vec(),
    )
    .await;
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn retention_is_per_tenant_and_pruning_takes_only_what_is_older() {
    let app = spawn_app().await;
    let short = app.register("short@example.com").await;
    let long = app.register("long@example.com").await;
    assert_eq!(
        app.get_json("/v1/telemetry/retention", &short).await,
        json!({"days": 7, "default": true})
    );
    let set = app
        .put_json("/v1/telemetry/retention", json!({"days": 1}))
        .key(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"days": 1, "default": false})
    );
    for bad in [
        json!({"days": 0}),
        json!({"days": 3651}),
        json!({"days": "week"}),
    ] {
        app.put_json("/v1/telemetry/retention", bad)
            .key(&short)
            .problem(400)
            .await;
    }
    // The clock says 2024-06-15T12:00:00Z: one line two days old, one new.
    let lines = json!([
        {"log": "two days old", "ts": "2024-06-13T12:00:00Z"},
        {"log": "fresh", "ts": "2024-06-15T11:59:00Z"},
        {"metric": "old_metric", "ts": "2024-06-13T12:00:00Z"}
    ]);
    for key in [&short, &long] {
        let response = post_telemetry(
            &app,
            key,
            "application/json",
            lines.to_string().into_bytes(),
        )
        .await;
        assert_eq!(response.status(), 202);
    }
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let gone = keel_server::ingest::prune_once(
        &*app.state.store,
        &*app.state.clock,
        Duration::from_secs(7 * 86_400),
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(gone, 2, "the short tenant's old line and old point");
    let june = |key: &str| {
        let app = &app;
        let key = key.to_owned();
        async move {
            let found = app
                .get_json(
                    "/v1/logs?from=2024-06-01T00:00:00Z&to=2024-06-16T00:00:00Z",
                    &key,
                )
                .await;
            found["logs"].as_array().unwrap().clone()
        }
    };
    assert_eq!(bodies(&june(&short).await), ["fresh"]);
    assert_eq!(bodies(&june(&long).await), ["fresh", "two days old"]);
    let old = "/v1/metrics/old_metric?from=2024-06-01T00:00:00Z&to=2024-06-16T00:00:00Z&agg=count";
    assert_eq!(app.get_json(old, &short).await["points"], json!([]));
    assert_eq!(app.get_json(old, &long).await["points"][0]["value"], 1.0);
    let reset = app
        .put_json("/v1/telemetry/retention", json!({"days": null}))
        .key(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reset.json::<Value>().await.unwrap(),
        json!({"days": 7, "default": true})
    );
}
