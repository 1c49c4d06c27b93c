//! Several real `keel` processes on one PostgreSQL (and one Redis, one NATS): what
//! SPEC §9 promises of replicas. Run when `KEEL_TEST_POSTGRES_URL` (and, for the
//! cache, `KEEL_TEST_REDIS_URL`; for the JetStream bus, `KEEL_TEST_NATS_URL`) is
//! set; each test gets a database, a key prefix and a stream prefix of its own.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use keel_store::testing::{postgres_url, TestDatabase, TestNats, TestRedis};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

mod common;
use common::{assert_stored_exactly_once, stored_records, wait_drained, Keel, OPERATOR_KEY};

/// One PostgreSQL database (and Redis prefix) that replicas share.
struct Shared {
    database: TestDatabase,
    redis: Option<TestRedis>,
    nats: Option<TestNats>,
    dir: tempfile::TempDir,
}

impl Shared {
    async fn create(test: &str, with_redis: bool) -> Option<Self> {
        let server = postgres_url(test)?;
        let redis = if with_redis {
            Some(TestRedis::create(test)?)
        } else {
            None
        };
        Some(Self {
            database: TestDatabase::create(&server).await,
            redis,
            nats: None,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// The same, with the bus on NATS JetStream.
    async fn create_on_nats(test: &str) -> Option<Self> {
        let nats = TestNats::new(test)?;
        let mut shared = Self::create(test, false).await?;
        shared.nats = Some(nats);
        Some(shared)
    }

    /// A replica running `roles`, with more settings.
    fn replica(&self, roles: &str, more: &[(&str, &str)]) -> Keel {
        let mut settings = vec![
            ("KEEL_STORE", self.database.url.clone()),
            ("KEEL_ROLES", roles.to_owned()),
        ];
        if let Some(redis) = &self.redis {
            settings.push(("KEEL_CACHE", redis.url.clone()));
        }
        if let Some(nats) = &self.nats {
            settings.push(("KEEL_BUS", nats.url.clone()));
        }
        settings.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Keel::start_with(self.dir.path(), &settings)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends `request`: the status and the JSON answer (null when there is none).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_exact_across_replicas() {
    let Some(shared) = Shared::create("counters_are_exact_across_replicas", false).await else {
        return;
    };
    let replicas = [shared.replica("api", &[]), shared.replica("api", &[])];
    let mut tasks = Vec::new();
    for c in 0..16 {
        let base = replicas[c % 2].base.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut seen = Vec::new();
            for _ in 0..50 {
                let next = client
                    .post(format!("{base}/v1/next"))
                    .bearer_auth(OPERATOR_KEY);
                let (status, body) = send(next).await;
                assert_eq!(status, 200);
                seen.push(body["data"]["attributes"]["value"].as_i64().unwrap());
            }
            seen
        }));
    }
    let mut values = Vec::new();
    for task in tasks {
        values.extend(task.await.unwrap());
    }
    values.sort_unstable();
    let expected: Vec<i64> = (1..=800).collect();
    assert_eq!(values, expected, "no value twice, none skipped");
}

/// With the Redis cache and a long cache TTL, a write acknowledged by one replica
/// is what the next read on the other returns: birthdays, collection records and
/// key revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_replica_is_read_at_once_on_the_other() {
    let Some(shared) =
        Shared::create("a_write_on_one_replica_is_read_at_once_on_the_other", true).await
    else {
        return;
    };
    let long = [
        ("KEEL_READ_CACHE_TTL_MS", "600000"),
        ("KEEL_KEY_CACHE_TTL_S", "600"),
    ];
    let (a, b) = (shared.replica("all", &long), shared.replica("all", &long));
    let client = client();
    for (i, date) in ["1990-01-01", "1991-02-02", "1992-03-03", "1993-04-04"]
        .iter()
        .enumerate()
    {
        let hello = |base: &str| format!("{base}/hello/ada");
        let put = client
            .put(hello(&a.base))
            .json(&json!({ "dateOfBirth": date }));
        assert_eq!(send(put).await.0, 204);
        let (_, on_b) = send(client.get(hello(&b.base))).await;
        let (_, on_a) = send(client.get(hello(&a.base))).await;
        assert_eq!(on_b, on_a, "write {i}: replica b served a stale birthday");
    }

    let records = |base: &str| format!("{base}/v1/collections/notes/records");
    for n in 0..5u64 {
        let post = client
            .post(format!("{}?wait=true", records(&a.base)))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({ "client": 0, "n": n }));
        let (status, posted) = send(post).await;
        assert_eq!(status, 201);
        let id = posted["ids"][0].as_str().unwrap().to_owned();
        let listed = common::get_json(records(&b.base)).await;
        assert_eq!(
            listed["records"].as_array().unwrap().len() as u64,
            n + 1,
            "replica b listed a stale page: {listed}"
        );
        let one = |base: &str| format!("{}/{id}", records(base));
        let get_on_b = || client.get(one(&b.base)).bearer_auth(OPERATOR_KEY);
        assert_eq!(send(get_on_b()).await.0, 200);
        let delete = client.delete(one(&a.base)).bearer_auth(OPERATOR_KEY);
        assert_eq!(send(delete).await.0, 204);
        assert_eq!(
            send(get_on_b()).await.0,
            404,
            "replica b served a deleted record"
        );
        // Put it back for the next page count.
        let again = client
            .post(format!("{}?wait=true", records(&b.base)))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({ "client": 1, "n": n }));
        assert_eq!(send(again).await.0, 201);
        let listed = common::get_json(records(&a.base)).await;
        assert_eq!(listed["records"].as_array().unwrap().len() as u64, n + 1);
    }

    let create = client
        .post(format!("{}/v1/keys", a.base))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({ "scopes": ["read"] }));
    let (_, created) = send(create).await;
    let attributes = &created["data"]["attributes"];
    let (key, prefix) = (
        attributes["api_key"].as_str().unwrap(),
        attributes["prefix"].as_str().unwrap(),
    );
    let me_on_b = || client.get(format!("{}/v1/me", b.base)).bearer_auth(key);
    assert_eq!(send(me_on_b()).await.0, 200, "cached on b now");
    let revoke = client
        .delete(format!("{}/v1/keys/{prefix}", a.base))
        .bearer_auth(OPERATOR_KEY);
    assert_eq!(send(revoke).await.0, 204);
    assert_eq!(send(me_on_b()).await.0, 401, "revocation seen at once on b");
}

/// Rate limits are shared: two replicas together allow one key its burst, not
/// twice its burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rate_limit_holds_across_replicas() {
    let Some(shared) = Shared::create("a_key_rate_limit_holds_across_replicas", true).await else {
        return;
    };
    let limits = [
        ("KEEL_RATE_LIMIT_PER_SECOND", "0.01"),
        ("KEEL_RATE_LIMIT_BURST", "10"),
    ];
    let (a, b) = (
        shared.replica("api", &limits),
        shared.replica("api", &limits),
    );
    let client = client();
    let mut ok = 0;
    for i in 0..30 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let current = client
            .get(format!("{base}/v1/current"))
            .bearer_auth(OPERATOR_KEY);
        match send(current).await.0 {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 10, "the burst is shared by both replicas");
}

/// One api replica takes records; two worker replicas store them, and one of them
/// is killed mid-load. Every record answered 202 is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_stored_exactly_once_while_a_worker_replica_is_killed() {
    let Some(shared) = Shared::create(
        "records_are_stored_exactly_once_while_a_worker_replica_is_killed",
        false,
    )
    .await
    else {
        return;
    };
    let api = shared.replica("api", &[]);
    let mut doomed = shared.replica("worker", &[]);
    let _survivor = shared.replica("worker", &[]);
    let accepted: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let (base, accepted) = (api.base.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            for n in 0..150u64 {
                let post = client
                    .post(format!("{base}/v1/collections/jobs/records"))
                    .bearer_auth(OPERATOR_KEY)
                    .json(&json!({"client": c, "n": n}));
                assert_eq!(send(post).await.0, 202);
                accepted.lock().unwrap().push((c, n));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(Duration::from_secs(5));
    for task in tasks {
        task.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1200);
    // What the killed worker held comes back after its (≤ 5 s) visibility.
    wait_drained(&api.base, "jobs", Duration::from_secs(60)).await;
    let rows = stored_records(&api.base, "jobs").await;
    assert_stored_exactly_once(&accepted, &rows);
    assert_eq!(rows.len(), 1200);
}

/// SIGTERM on a worker replica hands its work back: the other worker finishes
/// the queue and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_replica_stopped_with_sigterm_hands_its_work_back() {
    let Some(shared) = Shared::create(
        "a_worker_replica_stopped_with_sigterm_hands_its_work_back",
        false,
    )
    .await
    else {
        return;
    };
    let api = shared.replica("api", &[]);
    let mut leaving = shared.replica("worker", &[]);
    let client = client();
    let mut accepted = Vec::new();
    for n in 0..20u64 {
        let records: Vec<Value> = (0..50).map(|i| json!({"client": n, "n": i})).collect();
        let post = client
            .post(format!("{}/v1/collections/handover/records", api.base))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({ "records": records }));
        assert_eq!(send(post).await.0, 202);
        accepted.extend((0..50).map(|i| (n, i)));
    }
    leaving.signal(Signal::SIGTERM);
    assert!(leaving.wait_exit(Duration::from_secs(15)).success());
    let _stays = shared.replica("worker", &[]);
    wait_drained(&api.base, "handover", Duration::from_secs(60)).await;
    let rows = stored_records(&api.base, "handover").await;
    assert_stored_exactly_once(&accepted, &rows);
    let distinct: HashSet<_> = rows.keys().collect();
    assert_eq!(distinct.len(), 1000);
}

/// Two replicas on PostgreSQL + NATS JetStream, each serving the API and running
/// workers; 2,000 records are posted through both and one replica is SIGKILLed
/// mid-load. Every record answered 202 (by either) is stored exactly once: what
/// the killed worker had received comes back to the survivor after its
/// visibility timeout, and the store target's upsert by message id absorbs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_records_are_stored_exactly_once_while_a_replica_is_killed() {
    let Some(shared) =
        Shared::create_on_nats("on_nats_records_are_stored_exactly_once_while_a_replica_is_killed")
            .await
    else {
        return;
    };
    let mut doomed = shared.replica("api,worker", &[]);
    let survivor = shared.replica("api,worker", &[]);
    let accepted: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let base = if c % 2 == 0 {
            doomed.base.clone()
        } else {
            survivor.base.clone()
        };
        let accepted = accepted.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            for n in 0..250u64 {
                let post = client
                    .post(format!("{base}/v1/collections/jobs/records"))
                    .bearer_auth(OPERATOR_KEY)
                    .json(&json!({"client": c, "n": n}));
                // The killed replica's clients stop at their first failure.
                match post.send().await {
                    Ok(answer) if answer.status() == 202 => accepted.lock().unwrap().push((c, n)),
                    _ => return,
                }
            }
        }));
    }
    // Mid-load: once the doomed replica has taken some of its share (a fresh
    // replica's first publishes also create its JetStream consumers, which on
    // a busy machine can outlast a fixed pause).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while accepted
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c % 2 == 0)
        .count()
        < 40
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(Duration::from_secs(5));
    for task in tasks {
        task.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let through_doomed = accepted.iter().filter(|(c, _)| c % 2 == 0).count();
    eprintln!(
        "accepted {} ({through_doomed} by the killed replica)",
        accepted.len()
    );
    assert!(
        (1..1000).contains(&through_doomed),
        "the kill landed mid-load: {through_doomed} of 1,000 taken by the killed replica"
    );
    assert_eq!(
        accepted.len() - through_doomed,
        1000,
        "the survivor took all of its share"
    );
    wait_drained(&survivor.base, "jobs", Duration::from_secs(90)).await;
    let rows = stored_records(&survivor.base, "jobs").await;
    assert_stored_exactly_once(&accepted, &rows);
}
