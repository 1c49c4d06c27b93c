//! The console's pages over HTTP (SPEC §12): every page authorises as the API
//! route behind it does and keeps tenants apart, lists page by their cursors,
//! and the stylesheet's colours are readable in both themes. Sessions are
//! `console.rs`.

mod common;

use common::{
    console::{location, Visitor},
    spawn_app, Bearer, TestApp,
};
use reqwest::header;
use serde_json::{json, Value};

async fn subscribe(app: &TestApp, key: &str, topic: &str, name: &str, target: Value) {
    let response = app
        .put_json(
            &format!("/v1/topics/{topic}/subscriptions/{name}"),
            json!({"target": target, "max_receives": 1, "visibility_timeout_s": 1}),
        )
        .key(key)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

/// The `rel="next"` link of a console list, unescaped, if there is one.
fn next_page(html: &str) -> Option<String> {
    let at = html.find("rel=\"next\" href=\"")? + "rel=\"next\" href=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].replace("&amp;", "&"))
}

#[tokio::test]
async fn collection_pages_follow_their_cursors_to_the_end() {
    let app = spawn_app().await;
    let key = app.register("owner@example.com").await;
    let records: Vec<Value> = (0..120).map(|n| json!({"n": n})).collect();
    let stored: Value = app
        .post_json_with(
            "/v1/collections/orders/records?wait=true",
            json!({"records": records}),
            &key,
        )
        .await;
    assert_eq!(
        stored["ids"].as_array().map(Vec::len),
        Some(120),
        "{stored}"
    );
    let visitor = Visitor::new(&app);
    visitor.sign_in(&key).await;

    // 50 a page: three pages, every record once, the last without a next link.
    let mut seen = std::collections::BTreeSet::new();
    let mut path = "/console/collections/orders".to_owned();
    let mut pages = 0;
    loop {
        let (status, html) = visitor.page(&path).await;
        assert_eq!(status, 200, "{path}: {html}");
        pages += 1;
        for id in stored["ids"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            if html.contains(&format!("/console/collections/orders/{id}\"")) {
                assert!(seen.insert(id.to_owned()), "{id} shown twice");
            }
        }
        match next_page(&html) {
            Some(next) => path = next,
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 120));

    // A link cut after `cursor=` is the first page, not an error.
    let (status, first) = visitor.page("/console/collections/orders?cursor=").await;
    assert_eq!(status, 200);
    assert!(next_page(&first).is_some());
    // A forged cursor is the API's 400, as a page.
    let (status, _) = visitor
        .page("/console/collections/orders?cursor=forged")
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn every_console_page_refuses_another_tenants_data() {
    let app = spawn_app().await;
    let alice = app.register("alice@example.com").await;
    let bob = app.register("bob@example.com").await;
    subscribe(
        &app,
        &alice,
        "a-orders",
        "a-queue",
        json!({"type": "queue"}),
    )
    .await;
    subscribe(
        &app,
        &alice,
        "a-orders",
        "a-store",
        json!({"type": "store", "collection": "a-records"}),
    )
    .await;
    let stored: Value = app
        .post_json_with(
            "/v1/collections/a-records/records?wait=true",
            json!({"secret": "alice-only"}),
            &alice,
        )
        .await;
    let record_id = stored["ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{stored}"))
        .to_owned();
    let monitor: Value = app
        .post_json_with(
            "/v1/monitors",
            json!({"name": "a-monitor", "kind": "push", "interval_s": 60}),
            &alice,
        )
        .await;
    let monitor_id = monitor["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{monitor}"));
    for (path, body) in [
        (
            "/v1/channels",
            json!({"name": "a-channel", "kind": "webhook", "url": "https://example.com/hook"}),
        ),
        (
            "/v1/maintenance",
            json!({"name": "a-window", "starts_at": "2024-06-16T02:00:00Z", "ends_at": "2024-06-16T03:00:00Z"}),
        ),
    ] {
        let made = app.post_json(path, body).key(&alice).send().await.unwrap();
        assert!(made.status().is_success(), "{path}: {}", made.status());
    }
    for (path, body) in [
        ("/v1/buckets/a-bucket", ""),
        (
            "/v1/buckets/a-bucket/objects/data/a-file.json",
            "{\"alice-only\": 1}",
        ),
    ] {
        let response = app
            .put_json(path, json!(null))
            .key(&alice)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    let bob_visitor = Visitor::new(&app);
    assert_eq!(bob_visitor.sign_in(&bob).await.status(), 303);
    // Alice's things by their names and ids: not found for Bob, and never shown.
    for path in [
        "/console/queues/a-orders/a-queue".to_owned(),
        "/console/queues/a-orders/a-store".to_owned(),
        format!("/console/collections/a-records/{record_id}"),
        format!("/console/monitors/{monitor_id}"),
        "/console/buckets/a-bucket".to_owned(),
        "/console/buckets/a-bucket/download/data/a-file.json".to_owned(),
    ] {
        let (status, html) = bob_visitor.page(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            !html.contains("alice-only") && !html.contains("a-monitor"),
            "{path}"
        );
    }
    for path in [
        "/console/queues",
        "/console/topics",
        "/console/collections",
        "/console/collections/a-records",
        "/console/monitors",
        "/console/slos",
        "/console/keys",
        "/console/audit",
        "/console/counters",
        "/console/buckets",
        "/console/logs",
        "/console/metrics?name=cpu",
        "/console/channels",
        "/console/maintenance",
    ] {
        let (status, html) = bob_visitor.page(path).await;
        assert_eq!(status, 200, "{path}");
        for secret in [
            "a-orders",
            "a-queue",
            "alice-only",
            "a-monitor",
            "alice@",
            "a-bucket",
        ] {
            assert!(!html.contains(secret), "{path} shows {secret}");
        }
    }
    // Bob's session cannot redrive or edit Alice's things either.
    let csrf = bob_visitor.csrf().await;
    let redrive = bob_visitor
        .post(
            "/console/queues/a-orders/a-queue/redrive",
            &[("csrf", &csrf), ("scope", "all")],
        )
        .await;
    assert_eq!(redrive.status(), 404);

    // Alice sees her own.
    let alice_visitor = Visitor::new(&app);
    assert_eq!(alice_visitor.sign_in(&alice).await.status(), 303);
    let (_, record) = alice_visitor
        .page(&format!("/console/collections/a-records/{record_id}"))
        .await;
    assert!(record.contains("alice-only"), "{record}");
    let (_, monitors) = alice_visitor.page("/console/monitors").await;
    assert!(
        monitors.contains("a-monitor") && monitors.contains("90 days of uptime"),
        "{monitors}"
    );
    let (_, channels) = alice_visitor.page("/console/channels").await;
    assert!(channels.contains("a-channel"), "{channels}");
    let (_, windows) = alice_visitor.page("/console/maintenance").await;
    assert!(windows.contains("a-window"), "{windows}");
    let (_, bucket) = alice_visitor
        .page("/console/buckets/a-bucket?prefix=data/")
        .await;
    assert!(bucket.contains("data/a-file.json"), "{bucket}");
    let download = alice_visitor
        .get("/console/buckets/a-bucket/download/data/a-file.json")
        .await;
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"a-file.json\""
    );
    assert_eq!(download.text().await.unwrap(), "{\"alice-only\": 1}");

    // An upload from the bucket page: streamed into the same handler as the API's
    // PUT, the file's name added to a key that ends in '/'; without the token, 403.
    let csrf = alice_visitor.csrf().await;
    let refused = alice_visitor
        .post_file(
            "/console/buckets/a-bucket/upload",
            &[("key", "data/")],
            "b.json",
            b"{}",
        )
        .await;
    assert_eq!(refused.status(), 403);
    let uploaded = alice_visitor
        .post_file(
            "/console/buckets/a-bucket/upload",
            &[("csrf", &csrf), ("key", "data/")],
            "b.json",
            b"{\"uploaded\": true}",
        )
        .await;
    assert_eq!(uploaded.status(), 303);
    assert!(
        location(&uploaded).contains("prefix=data%2F"),
        "{}",
        location(&uploaded)
    );
    let stored = app
        .get("/v1/buckets/a-bucket/objects/data/b.json")
        .key(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(stored.text().await.unwrap(), "{\"uploaded\": true}");
    let bob_csrf = bob_visitor.csrf().await;
    let bobs = bob_visitor
        .post_file(
            "/console/buckets/a-bucket/upload",
            &[("csrf", &bob_csrf), ("key", "x")],
            "x.json",
            b"{}",
        )
        .await;
    assert_eq!(bobs.status(), 404, "Bob cannot upload into Alice's bucket");

    // Telemetry: her log lines by word and her metric as a chart.
    let sent = app
        .post_json(
            "/v1/telemetry",
            json!([
                {"log": "kayak order shipped", "level": "info", "ts": "2024-06-15T11:50:00Z", "account": "111"},
                {"metric": "paddles", "value": 3.0, "ts": "2024-06-15T11:50:10Z", "account": "111"},
                {"metric": "paddles", "value": 5.0, "ts": "2024-06-15T11:51:10Z", "account": "111"}
            ]),
        )
        .key(&alice)
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    let (_, logs) = alice_visitor
        .page("/console/logs?q=kayak&account=111")
        .await;
    assert!(logs.contains("kayak order shipped"), "{logs}");
    let (_, none) = bob_visitor.page("/console/logs?q=kayak").await;
    assert!(!none.contains("kayak order shipped"));
    let (_, chart) = alice_visitor
        .page("/console/metrics?name=paddles&step=1m&agg=max")
        .await;
    assert!(
        chart.contains("max of paddles per 1m") && chart.contains("<svg"),
        "{chart}"
    );
}

/// The theme's colours, `--name: #rrggbb` of one `:root` block.
fn theme(block: &str) -> std::collections::HashMap<String, [f64; 3]> {
    block
        .split(';')
        .filter_map(|decl| {
            // The first declaration of a block follows its selector's `{`.
            let decl = decl.rsplit('{').next()?;
            let (name, value) = decl.split_once(':')?;
            let name = name.trim().strip_prefix("--")?;
            let hex = value.trim().strip_prefix('#')?;
            let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
            let rgb = [channel(0)?, channel(2)?, channel(4)?].map(|c| f64::from(c) / 255.0);
            Some((name.to_owned(), rgb))
        })
        .collect()
}

/// WCAG 2 contrast ratio of two sRGB colours.
fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
    let luminance = |c: [f64; 3]| {
        let lin = |v: f64| {
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    };
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn text_colours_meet_wcag_aa_in_both_themes() {
    let css = include_str!("../src/console/static/console.css");
    let (light, dark) = css
        .split_once("prefers-color-scheme: dark")
        .expect("a dark theme");
    for (name, colours) in [("light", theme(light)), ("dark", theme(dark))] {
        let pairs = ["fg", "muted", "link", "ok", "bad", "warn"]
            .iter()
            .flat_map(|text| [(*text, "bg"), (*text, "panel")])
            .chain([("on-accent", "accent")]);
        for (text, background) in pairs {
            let (Some(t), Some(b)) = (colours.get(text), colours.get(background)) else {
                panic!("{name} theme lacks --{text} or --{background}");
            };
            let ratio = contrast(*t, *b);
            assert!(
                ratio >= 4.5,
                "{name}: --{text} on --{background} is {ratio:.2}:1, under AA's 4.5:1"
            );
        }
    }
}
