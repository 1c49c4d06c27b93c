//! SPEC §6 objects through HTTP: buckets, streamed uploads and downloads with
//! ETags and ranges, listings, limits, key validation, and notification rules
//! whose S3-format events land on the bus with the object.

mod common;

use common::{spawn_app, spawn_app_with, Bearer, ExpectProblem, TestApp};
use keel_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

async fn put_object(
    app: &TestApp,
    key: &str,
    path: &str,
    body: &'static [u8],
    content_type: &str,
) -> Value {
    let response = app
        .request(Method::PUT, &format!("/v1/buckets/logs/objects/{path}"))
        .key(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "PUT {path}");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let view: Value = response.json().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", view["etag"].as_str().unwrap()));
    view
}

async fn bucket(app: &TestApp, key: &str) {
    let response = app
        .request(Method::PUT, "/v1/buckets/logs")
        .key(key)
        .send()
        .await
        .unwrap();
    assert!(response.status() == 201 || response.status() == 200);
}

#[tokio::test]
async fn buckets_are_created_once_and_named_as_s3_names_them() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    let first = app
        .request(Method::PUT, "/v1/buckets/logs")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let again = app
        .request(Method::PUT, "/v1/buckets/logs")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["name"], "logs");
    let bad = app
        .request(Method::PUT, "/v1/buckets/Bad_Name")
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(bad["errors"][0]["pointer"], "/bucket");
}

#[tokio::test]
async fn objects_round_trip_with_etag_type_ranges_and_listing() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    bucket(&app, &key).await;
    let stored = put_object(
        &app,
        &key,
        "data/a b.json",
        b"{\"log\":\"hello\"}",
        "application/json",
    )
    .await;
    // MD5 of the body, lowercase hex.
    assert_eq!(stored["etag"], "60fddc2344489c9238bff2a49e872cdb");
    assert_eq!(stored["size"], 15);
    assert_eq!(stored["content_type"], "application/json");

    let got = app
        .get("/v1/buckets/logs/objects/data/a%20b.json")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/json");
    assert_eq!(got.headers()["content-length"], "15");
    assert_eq!(got.headers()["accept-ranges"], "bytes");
    assert!(got.headers().contains_key("last-modified"));
    let etag = got.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"{\"log\":\"hello\"}");

    let range = app
        .get("/v1/buckets/logs/objects/data/a%20b.json")
        .key(&key)
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.headers()["content-range"], "bytes 2-4/15");
    assert_eq!(range.bytes().await.unwrap().as_ref(), b"log");
    let suffix = app
        .get("/v1/buckets/logs/objects/data/a%20b.json")
        .key(&key)
        .header("range", "bytes=-2")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), b"\"}");
    let outside = app
        .get("/v1/buckets/logs/objects/data/a%20b.json")
        .key(&key)
        .header("range", "bytes=15-")
        .send()
        .await
        .unwrap();
    assert_eq!(outside.headers()["content-range"], "bytes */15");
    common::expect_problem(outside, 416).await;
    let unchanged = app
        .get("/v1/buckets/logs/objects/data/a%20b.json")
        .key(&key)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);

    let head = app
        .request(Method::HEAD, "/v1/buckets/logs/objects/data/a%20b.json")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);

    // An upload without a content type keeps the generic one.
    let response = app
        .request(Method::PUT, "/v1/buckets/logs/objects/data/raw")
        .key(&key)
        .body(&b"xyz"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let got = app
        .get("/v1/buckets/logs/objects/data/raw")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "application/octet-stream");

    // Overwrite, then list by prefix across pages.
    put_object(&app, &key, "data/raw", b"second", "text/plain").await;
    put_object(&app, &key, "other/x", b"x", "text/plain").await;
    let mut keys = Vec::new();
    let mut query = "/v1/buckets/logs/objects?prefix=data/&limit=1".to_owned();
    loop {
        let page = app.get_json(&query, &key).await;
        for object in page["objects"].as_array().unwrap() {
            keys.push(object["key"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                query = format!("/v1/buckets/logs/objects?prefix=data/&limit=1&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(keys, ["data/a b.json", "data/raw"]);
    let raw = app
        .get("/v1/buckets/logs/objects/data/raw")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap().as_ref(), b"second");

    let deleted = app
        .request(Method::DELETE, "/v1/buckets/logs/objects/data/raw")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.get("/v1/buckets/logs/objects/data/raw")
        .key(&key)
        .problem(404)
        .await;
    // Deleting again is still 204, as on S3.
    let again = app
        .request(Method::DELETE, "/v1/buckets/logs/objects/data/raw")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
}

#[tokio::test]
async fn bad_keys_missing_buckets_and_other_tenants_get_clear_answers() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    let other = app.register("p@example.com").await;
    app.request(Method::PUT, "/v1/buckets/logs/objects/a")
        .key(&key)
        .body("x")
        .problem(404)
        .await;
    bucket(&app, &key).await;
    for bad in ["a%00b", &"k".repeat(1025)] {
        let problem = app
            .request(Method::PUT, &format!("/v1/buckets/logs/objects/{bad}"))
            .key(&key)
            .body("x")
            .problem(400)
            .await;
        assert_eq!(problem["errors"][0]["pointer"], "/key", "{bad}");
    }
    // HTTP clients resolve `..` segments (even encoded) before sending; a raw
    // request shows what the server does with them.
    for bad in ["a/../b", "..", "a/%2E%2E/b", "a/.."] {
        let answer = raw_put(&app, &key, &format!("/v1/buckets/logs/objects/{bad}")).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(answer.contains("\"pointer\":\"/key\""), "{bad}: {answer}");
    }
    put_object(&app, &key, "secret", b"s", "text/plain").await;
    app.get("/v1/buckets/logs/objects/secret")
        .key(&other)
        .problem(404)
        .await;
    app.get("/v1/buckets/logs/objects")
        .key(&other)
        .problem(404)
        .await;
    app.request(Method::PUT, "/v1/buckets/logs/objects/secret")
        .key(&other)
        .body("x")
        .problem(404)
        .await;
    app.put_json("/v1/buckets/logs/notifications", json!([]))
        .key(&other)
        .problem(404)
        .await;
    app.get("/v1/buckets/logs/objects/secret")
        .problem(401)
        .await;
}

/// A PUT of one byte sent as written, without a client normalising its path.
async fn raw_put(app: &TestApp, key: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 1\r\nConnection: close\r\n\r\nx"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn objects_over_the_limit_are_refused_whether_or_not_their_length_is_declared() {
    let mut config = ServerConfig::default();
    config.limits.object_max_bytes = 1000;
    let app = spawn_app_with(config).await;
    let key = app.register("o@example.com").await;
    bucket(&app, &key).await;
    let declared = app
        .request(Method::PUT, "/v1/buckets/logs/objects/big")
        .key(&key)
        .body(vec![7u8; 1001])
        .problem(413)
        .await;
    assert!(declared["detail"].as_str().unwrap().contains("1000"));
    // Chunked: the limit bites while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![7u8; 100])).collect();
    app.request(Method::PUT, "/v1/buckets/logs/objects/big")
        .key(&key)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .problem(413)
        .await;
    app.get("/v1/buckets/logs/objects/big")
        .key(&key)
        .problem(404)
        .await;
    let exact = app
        .request(Method::PUT, "/v1/buckets/logs/objects/big")
        .key(&key)
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(exact.status(), 200);
}

async fn receive(app: &TestApp, key: &str, subscription: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let got = app
            .post_json_with(
                &format!("/v1/queues/incoming/{subscription}/receive"),
                json!({"max": 10, "wait_s": 2}),
                key,
            )
            .await;
        let messages = got["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            return all;
        }
        all.extend(messages);
    }
}

#[tokio::test]
async fn matching_changes_publish_s3_event_records_to_the_rules_topic() {
    let app = spawn_app().await;
    let key = app.register("o@example.com").await;
    bucket(&app, &key).await;
    let overlapping = app
        .put_json(
            "/v1/buckets/logs/notifications",
            json!([
                {"events": ["ObjectCreated:*"], "prefix": "data/", "topic": "incoming"},
                {"events": ["s3:ObjectCreated:Put"], "prefix": "data/x", "suffix": ".json", "topic": "incoming"}
            ]),
        )
        .key(&key)
        .problem(400)
        .await;
    assert_eq!(overlapping["errors"][0]["pointer"], "/1");
    let rules = json!([
        {"id": "imports", "events": ["ObjectCreated:*"], "prefix": "data/", "suffix": ".json", "topic": "incoming"},
        {"id": "removals", "events": ["ObjectRemoved:*"], "prefix": "data/", "topic": "incoming"}
    ]);
    let response = app
        .put_json("/v1/buckets/logs/notifications", rules)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored[0]["id"], "imports");
    assert_eq!(stored[1]["suffix"], "");
    assert_eq!(
        app.get_json("/v1/buckets/logs/notifications", &key).await,
        stored
    );
    let response = app
        .put_json(
            "/v1/topics/incoming/subscriptions/all",
            json!({"target": {"type": "queue"}}),
        )
        .key(&key)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let matching = put_object(&app, &key, "data/my file.json", b"[]", "application/json").await;
    put_object(&app, &key, "data/notes.txt", b"no", "text/plain").await;
    put_object(&app, &key, "elsewhere/x.json", b"no", "application/json").await;
    let deleted = app
        .request(Method::DELETE, "/v1/buckets/logs/objects/data/notes.txt")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let messages = receive(&app, &key, "all").await;
    let records: Vec<&Value> = messages.iter().map(|m| &m["body"]["Records"][0]).collect();
    assert_eq!(records.len(), 2, "{messages:#?}");
    let created = records[0];
    assert_eq!(created["eventVersion"], "2.1");
    assert_eq!(created["eventSource"], "aws:s3");
    assert_eq!(created["eventName"], "ObjectCreated:Put");
    assert!(created["awsRegion"].is_string());
    let time = created["eventTime"].as_str().unwrap();
    assert!(
        time.ends_with('Z') && time.len() == "2024-06-15T12:00:00.000Z".len(),
        "{time}"
    );
    assert_eq!(created["s3"]["s3SchemaVersion"], "1.0");
    assert_eq!(created["s3"]["configurationId"], "imports");
    assert_eq!(
        created["s3"]["bucket"],
        json!({"name": "logs", "arn": "arn:aws:s3:::logs"})
    );
    assert_eq!(created["s3"]["object"]["key"], "data/my+file.json");
    assert_eq!(created["s3"]["object"]["size"], 2);
    assert_eq!(created["s3"]["object"]["eTag"], matching["etag"]);
    assert!(created["s3"]["object"]["sequencer"].is_string());
    let removed = records[1];
    assert_eq!(removed["eventName"], "ObjectRemoved:Delete");
    assert_eq!(removed["s3"]["configurationId"], "removals");
    assert_eq!(removed["s3"]["object"]["key"], "data/notes.txt");
    assert!(removed["s3"]["object"].get("size").is_none());
}
