//! SPEC §6 on the real binary: an object and its event are atomic. Clients upload
//! (and overwrite) objects in a bucket whose rule publishes every change while the
//! process is killed with SIGKILL, three times; afterwards every stored object's
//! current version has its event, every event names a version that was stored
//! (the last event of each key names what the key holds now), and every upload
//! answered 200 has its event. Once on SQLite + files, once on PostgreSQL + S3
//! (when `KEEL_TEST_POSTGRES_URL` and `KEEL_TEST_S3_URL` are set).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use keel_store::testing::{postgres_url, TestDatabase, TestS3};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

mod common;
use common::{get_json, Keel, OPERATOR_KEY};

/// Keys each client cycles through, so uploads overwrite each other.
const KEYS_PER_CLIENT: u64 = 20;

async fn setup(base: &str) {
    let client = reqwest::Client::new();
    let put = |path: &str, body: Option<Value>| {
        let mut request = client
            .put(format!("{base}{path}"))
            .bearer_auth(OPERATOR_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    assert!(put("/v1/buckets/crash", None)
        .await
        .unwrap()
        .status()
        .is_success());
    let rules = json!([{"events": ["ObjectCreated:*"], "topic": "objects"}]);
    assert_eq!(
        put("/v1/buckets/crash/notifications", Some(rules))
            .await
            .unwrap()
            .status(),
        200
    );
    let subscription = json!({"target": {"type": "queue"}, "max_receives": 100});
    assert!(
        put("/v1/topics/objects/subscriptions/audit", Some(subscription))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

/// Every event on the queue (acked as read), once two receives in a row are empty.
async fn drain_events(base: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let got: Value = client
            .post(format!("{base}/v1/queues/objects/audit/receive"))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({"max": 100, "wait_s": 2}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = got["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let receipts: Vec<Value> = messages.iter().map(|m| m["receipt"].clone()).collect();
        let acked = client
            .post(format!("{base}/v1/queues/objects/audit/ack"))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({"receipts": receipts}))
            .send()
            .await
            .unwrap();
        assert!(acked.status().is_success());
        events.extend(
            messages
                .into_iter()
                .map(|m| m["body"]["Records"][0].clone()),
        );
    }
    events
}

async fn objects_and_events_stay_atomic_across_kill_9(settings: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    // (key, etag) of every upload answered 200.
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for cycle in 0..3u64 {
        let mut keel = Keel::start_with(dir.path(), settings);
        if cycle == 0 {
            setup(&keel.base).await;
        }
        let mut tasks = Vec::new();
        for c in 0..6u64 {
            let (base, answered) = (keel.base.clone(), answered.clone());
            // Made before the clock starts: a client loads the system's roots.
            let client = reqwest::Client::new();
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let key = format!("c{c}/{}.json", n % KEYS_PER_CLIENT);
                    let response = client
                        .put(format!("{base}/v1/buckets/crash/objects/{key}"))
                        .bearer_auth(OPERATOR_KEY)
                        .body(format!("{{\"cycle\":{cycle},\"client\":{c},\"n\":{n}}}"))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap();
                            let etag = body["etag"].as_str().unwrap().to_owned();
                            answered.lock().unwrap().push((key, etag));
                        }
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        keel.signal(Signal::SIGKILL);
        keel.wait_exit(Duration::from_secs(5));
        for task in tasks {
            task.await.unwrap();
        }
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 30,
        "only {} uploads were answered",
        answered.len()
    );

    let keel = Keel::start_with(dir.path(), settings);
    // Events a killed relay had claimed wait out its lease (10 s) before another
    // publishes them.
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        events.extend(drain_events(&keel.base).await);
        let seen: HashSet<(String, String)> = events
            .iter()
            .map(|e| {
                let object = &e["s3"]["object"];
                (
                    object["key"].as_str().unwrap().to_owned(),
                    object["eTag"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if answered.iter().all(|upload| seen.contains(upload))
            || std::time::Instant::now() > deadline
        {
            break;
        }
    }
    // Anything still on its way (an unanswered upload's event) arrives by now too.
    tokio::time::sleep(Duration::from_secs(11)).await;
    events.extend(drain_events(&keel.base).await);
    // The last event of each key, by sequencer; and every (key, etag) with an event.
    let mut last: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut with_event = HashSet::new();
    for event in &events {
        let key = event["s3"]["object"]["key"].as_str().unwrap().to_owned();
        let etag = event["s3"]["object"]["eTag"].as_str().unwrap().to_owned();
        let sequencer = event["s3"]["object"]["sequencer"]
            .as_str()
            .unwrap()
            .to_owned();
        with_event.insert((key.clone(), etag.clone()));
        let entry = last
            .entry(key)
            .or_insert_with(|| (sequencer.clone(), etag.clone()));
        if sequencer > entry.0 {
            *entry = (sequencer, etag);
        }
    }
    for upload in &answered {
        assert!(
            with_event.contains(upload),
            "upload {upload:?} answered 200 has no event"
        );
    }
    let listing = get_json(format!("{}/v1/buckets/crash/objects?limit=1000", keel.base)).await;
    let stored: BTreeMap<String, String> = listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_owned(),
                o["etag"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        last.keys().collect::<Vec<_>>(),
        "keys stored and keys with events differ"
    );
    for (key, etag) in &stored {
        assert_eq!(
            &last[key].1, etag,
            "{key}: its last event names another version"
        );
        let body = reqwest::Client::new()
            .get(format!("{}/v1/buckets/crash/objects/{key}", keel.base))
            .bearer_auth(OPERATOR_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(body.status(), 200, "{key} is listed but cannot be read");
    }
    // Each event once: a relay that died after publishing is deduplicated.
    let distinct: HashSet<String> = events
        .iter()
        .map(|e| e["s3"]["object"]["sequencer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), events.len(), "an event was delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_and_files_objects_and_events_stay_atomic_across_kill_9() {
    objects_and_events_stay_atomic_across_kill_9(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_and_s3_objects_and_events_stay_atomic_across_kill_9() {
    let Some(server) = postgres_url("the PostgreSQL + S3 half") else {
        return;
    };
    let Some(s3) = TestS3::new("the PostgreSQL + S3 half") else {
        return;
    };
    let database = TestDatabase::create(&server).await;
    objects_and_events_stay_atomic_across_kill_9(&[
        ("KEEL_STORE", database.url.clone()),
        ("KEEL_OBJECTS", s3.url.clone()),
    ])
    .await;
}
