//! SPEC §2 through HTTP: every 400 case, each message shape, 29 February, tenants.

mod common;

use common::{expect_problem, spawn_app, spawn_app_with, Bearer, ExpectProblem};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn saves_then_greets_with_the_days_left() {
    let app = spawn_app().await; // today is 2024-06-15
    let put = app
        .put_json("/hello/Ana", json!({"dateOfBirth": "1990-06-20"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(put.content_length(), Some(0));
    let got: Value = app
        .get("/hello/Ana")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        got,
        json!({"message": "Hello, Ana! Your birthday is in 5 day(s)"})
    );
}

#[tokio::test]
async fn message_shapes() {
    let app = spawn_app().await;
    let cases = [
        (
            "2024-06-15T00:00:00Z",
            "1990-06-15",
            "Hello, Bo! Happy birthday!",
        ),
        (
            "2024-06-15T23:59:59Z",
            "1990-06-15",
            "Hello, Bo! Happy birthday!",
        ),
        (
            "2024-06-15T12:00:00Z",
            "1990-06-16",
            "Hello, Bo! Your birthday is in 1 day(s)",
        ),
        (
            "2024-06-15T12:00:00Z",
            "1990-06-14",
            "Hello, Bo! Your birthday is in 364 day(s)",
        ),
        (
            "2023-12-31T12:00:00Z",
            "1990-01-01",
            "Hello, Bo! Your birthday is in 1 day(s)",
        ),
        // 29 February falls on 28 February in common years …
        (
            "2023-02-28T12:00:00Z",
            "2000-02-29",
            "Hello, Bo! Happy birthday!",
        ),
        (
            "2023-02-27T12:00:00Z",
            "2000-02-29",
            "Hello, Bo! Your birthday is in 1 day(s)",
        ),
        // … and on 29 February in leap years.
        (
            "2024-02-28T12:00:00Z",
            "2000-02-29",
            "Hello, Bo! Your birthday is in 1 day(s)",
        ),
        (
            "2024-02-29T12:00:00Z",
            "2000-02-29",
            "Hello, Bo! Happy birthday!",
        ),
        (
            "2023-03-01T12:00:00Z",
            "2000-02-29",
            "Hello, Bo! Your birthday is in 365 day(s)",
        ),
    ];
    for (now, born, expected) in cases {
        app.set_today(now);
        let put = app
            .put_json("/hello/Bo", json!({"dateOfBirth": born}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 204, "{now} {born}");
        let got: Value = app
            .get("/hello/Bo")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["message"], expected, "today {now}, born {born}");
    }
}

#[tokio::test]
async fn every_invalid_put_is_a_400_with_a_pointer() {
    let app = spawn_app().await; // today is 2024-06-15
    let long = "a".repeat(65);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("Ana1", json!({"dateOfBirth": "1990-01-01"}), "/username"),
        ("Ana_B", json!({"dateOfBirth": "1990-01-01"}), "/username"),
        ("Ana%20B", json!({"dateOfBirth": "1990-01-01"}), "/username"),
        (
            "%F0%9F%98%80",
            json!({"dateOfBirth": "1990-01-01"}),
            "/username",
        ),
        (
            long.as_str(),
            json!({"dateOfBirth": "1990-01-01"}),
            "/username",
        ),
        ("Ana", json!({}), "/dateOfBirth"),
        ("Ana", json!({"dateofbirth": "1990-01-01"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": null}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": 19900101}), "/dateOfBirth"),
        (
            "Ana",
            json!({"dateOfBirth": ["1990-01-01"]}),
            "/dateOfBirth",
        ),
        ("Ana", json!({"dateOfBirth": "2023-02-29"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "1990-13-01"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "1990-04-31"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "1990-1-1"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "01-01-1990"}), "/dateOfBirth"),
        (
            "Ana",
            json!({"dateOfBirth": "1990-01-01T00:00:00Z"}),
            "/dateOfBirth",
        ),
        ("Ana", json!({"dateOfBirth": ""}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "2024-06-15"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "2024-06-16"}), "/dateOfBirth"),
        ("Ana", json!({"dateOfBirth": "2999-01-01"}), "/dateOfBirth"),
        ("Ana", json!(["1990-01-01"]), ""),
        ("Ana", json!("1990-01-01"), ""),
    ];
    for (username, body, pointer) in cases {
        let response = app
            .put_json(&format!("/hello/{username}"), body.clone())
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400).await;
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors for {username} {body}: {problem}"))
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(pointers.contains(&pointer), "{username} {body}: {problem}");
    }
    // Nothing invalid was stored.
    app.get("/hello/Ana").problem(404).await;
}

#[tokio::test]
async fn malformed_bodies_and_media_types() {
    let app = spawn_app().await;
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.request(Method::PUT, "/hello/Ana").body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request
    };
    raw("{\"dateOfBirth\": ", Some("application/json"))
        .problem(400)
        .await;
    raw("", Some("application/json")).problem(400).await;
    raw("{\"dateOfBirth\":\"1990-01-01\"}", Some("text/plain"))
        .problem(415)
        .await;
    raw("{\"dateOfBirth\":\"1990-01-01\"}", None)
        .problem(415)
        .await;
    let ok = raw(
        "{\"dateOfBirth\":\"1990-01-01\"}",
        Some("application/json; charset=utf-8"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 204);
}

#[tokio::test]
async fn get_rules() {
    let app = spawn_app().await;
    let problem = app.get("/hello/Nobody").problem(404).await;
    assert_eq!(problem["instance"], "/hello/Nobody");
    app.get("/hello/N0body").problem(400).await;
    // Unicode letters are names too.
    let put = app
        .put_json("/hello/Zo%C3%AB", json!({"dateOfBirth": "1990-06-16"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let got: Value = app
        .get("/hello/Zo%C3%AB")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["message"], "Hello, Zoë! Your birthday is in 1 day(s)");
    // Names are case-sensitive: Ana and ana are two users.
    app.put_json("/hello/Ana", json!({"dateOfBirth": "1990-06-16"}))
        .send()
        .await
        .unwrap();
    app.get("/hello/ana").problem(404).await;
}

#[tokio::test]
async fn put_replaces_the_date() {
    let app = spawn_app().await;
    app.put_json("/hello/Ana", json!({"dateOfBirth": "1990-06-16"}))
        .send()
        .await
        .unwrap();
    app.put_json("/hello/Ana", json!({"dateOfBirth": "1990-06-18"}))
        .send()
        .await
        .unwrap();
    let got: Value = app
        .get("/hello/Ana")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["message"], "Hello, Ana! Your birthday is in 3 day(s)");
}

#[tokio::test]
async fn with_a_key_users_live_in_the_keys_tenant() {
    let app = spawn_app().await;
    let key = app.register("greeter@example.com").await;
    let put = app
        .put_json("/hello/Ana", json!({"dateOfBirth": "1990-06-16"}))
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    // The public (default) tenant does not see it …
    app.get("/hello/Ana").problem(404).await;
    // … the key's tenant does.
    let got = app.get("/hello/Ana").key(&key).send().await.unwrap();
    assert_eq!(got.status(), 200);
    // A bad key is refused, not silently treated as anonymous.
    app.get("/hello/Ana")
        .key("keel_nope0000_0123456789abcdef")
        .problem(401)
        .await;
}

#[tokio::test]
async fn today_is_the_configured_time_zones_date() {
    let config = keel_server::ServerConfig {
        time_zone: jiff::tz::TimeZone::get("Pacific/Kiritimati").unwrap(), // UTC+14
        ..Default::default()
    };
    let app = spawn_app_with(config).await;
    // 12:00 UTC on 15 June is already 16 June in Kiritimati.
    app.put_json("/hello/Ana", json!({"dateOfBirth": "1990-06-16"}))
        .send()
        .await
        .unwrap();
    let got: Value = app
        .get("/hello/Ana")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["message"], "Hello, Ana! Happy birthday!");
}

#[tokio::test]
async fn cached_reads_never_hide_a_write() {
    let app = spawn_app().await;
    // A miss is cached too …
    app.get("/hello/Cy").problem(404).await;
    // … and a write through this process replaces it at once.
    app.put_json("/hello/Cy", json!({"dateOfBirth": "1990-06-16"}))
        .send()
        .await
        .unwrap();
    let got: Value = app
        .get("/hello/Cy")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["message"], "Hello, Cy! Your birthday is in 1 day(s)");
    app.put_json("/hello/Cy", json!({"dateOfBirth": "1990-06-17"}))
        .send()
        .await
        .unwrap();
    let got: Value = app
        .get("/hello/Cy")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["message"], "Hello, Cy! Your birthday is in 2 day(s)");
}

/// Reads go through the cache (SPEC §5, §8): a second read is a hit, a write
/// invalidates before it answers, and `/metrics` counts both.
#[tokio::test]
async fn reads_are_cached_and_a_write_invalidates_them() {
    let app = spawn_app().await; // today is 2024-06-15
    let greet = || async {
        app.get("/hello/Cy")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["message"]
            .clone()
    };
    let lookups = |text: &str, result: &str| -> u64 {
        let prefix = format!("keel_cache_lookups_total{{cache=\"greeter\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let put = |date: &'static str| {
        app.put_json("/hello/Cy", json!({ "dateOfBirth": date }))
            .send()
    };
    assert_eq!(put("1990-06-20").await.unwrap().status(), 204);
    assert_eq!(greet().await, "Hello, Cy! Your birthday is in 5 day(s)");
    assert_eq!(greet().await, "Hello, Cy! Your birthday is in 5 day(s)");
    assert_eq!(put("1990-06-25").await.unwrap().status(), 204);
    assert_eq!(greet().await, "Hello, Cy! Your birthday is in 10 day(s)");
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(lookups(&metrics, "miss"), 2, "{metrics}");
    assert_eq!(lookups(&metrics, "hit"), 1, "{metrics}");
}
