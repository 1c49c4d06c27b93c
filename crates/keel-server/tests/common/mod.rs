//! `spawn_app()`: the real HTTP stack on port 0 over a fresh store, started the
//! way `keel serve` starts it (`App::start`), with a clock the test controls.
//!
//! The store is SQLite in a temporary directory with the in-process cache, or —
//! with `KEEL_TEST_HTTP_BACKEND=postgres` and `KEEL_TEST_POSTGRES_URL` set — a
//! fresh PostgreSQL database per test, with the Redis cache (a key prefix of its
//! own) when `KEEL_TEST_REDIS_URL` is set too, and the bus on NATS JetStream (a
//! stream prefix of its own) when `KEEL_TEST_NATS_URL` is set, and objects on S3
//! (a prefix of their own in the test bucket) when `KEEL_TEST_S3_URL` is set, so
//! the whole HTTP suite runs on both deployments.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod console;
pub mod telemetry;

use std::sync::Arc;

use keel_core::clock::ManualClock;
use keel_server::{
    app::{App, AppOptions, Roles},
    request_log::RequestLog,
    services, AppState, ServerConfig,
};
use keel_store::{
    testing::{TestDatabase, TestNats, TestRedis, TestS3},
    BackendSettings,
};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    /// Has every scope on the default tenant.
    pub operator_key: String,
    pub state: AppState,
    /// The SQLite file, when the store is SQLite.
    pub db_path: std::path::PathBuf,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `memory` or `redis`.
    pub cache: &'static str,
    /// `sqlite`, `postgres` (embedded) or `nats`.
    pub bus: &'static str,
    _app: App,
    _database: Option<TestDatabase>,
    _redis: Option<TestRedis>,
    _nats: Option<TestNats>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(ServerConfig::default()).await
}

/// Settings for tests whose webhook receivers listen on loopback over plain HTTP,
/// which Keel refuses by default; queue gauges sampled often.
pub fn local_webhooks() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.limits.webhook_allow = vec!["127.0.0.0/8".into()];
    config.limits.webhook_allow_http = true;
    config.limits.queue_stats_interval_ms = 50;
    config
}

/// The store URL for one test: a fresh PostgreSQL database when the HTTP suite is
/// asked to run on PostgreSQL, else a SQLite file in `dir`.
async fn test_store(dir: &std::path::Path) -> (String, Option<TestDatabase>) {
    let on_postgres = std::env::var("KEEL_TEST_HTTP_BACKEND").as_deref() == Ok("postgres");
    match (
        on_postgres,
        std::env::var(keel_store::testing::POSTGRES_URL_VAR),
    ) {
        (true, Ok(server)) => {
            let database = TestDatabase::create(&server).await;
            (database.url.clone(), Some(database))
        }
        (true, Err(_)) => panic!("KEEL_TEST_HTTP_BACKEND=postgres needs KEEL_TEST_POSTGRES_URL"),
        (false, _) => (format!("sqlite://{}", dir.join("keel.db").display()), None),
    }
}

pub async fn spawn_app_with(config: ServerConfig) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keel.db");
    let (store_url, database) = test_store(dir.path()).await;
    let mut settings = BackendSettings::new(store_url);
    settings.quotas = config.limits.store_quotas();
    let redis = database
        .is_some()
        .then(|| TestRedis::create("the Redis cache of the HTTP suite"))
        .flatten();
    if let Some(redis) = &redis {
        settings.cache = redis.url.clone();
    }
    let nats = database
        .is_some()
        .then(|| TestNats::new("the NATS bus of the HTTP suite"))
        .flatten();
    if let Some(nats) = &nats {
        settings.bus = nats.url.clone();
    }
    // Objects on S3 beside PostgreSQL (a prefix of its own in the test bucket);
    // on SQLite, files beside the database.
    if let Some(s3) = database
        .is_some()
        .then(|| TestS3::new("the S3 objects of the HTTP suite"))
        .flatten()
    {
        settings.objects = s3.url;
    }
    let backends = keel_store::connect(&settings).await.unwrap();
    let backend = backends.store.backend_name();
    let bus = backends.bus.backend_name();
    let cache = backends.cache.backend_name();
    let operator_key = match services::bootstrap(&*backends.store, None).await.unwrap() {
        services::Bootstrap::Created(key) => key.reveal(),
        other => panic!("a fresh store bootstraps a key, got {other:?}"),
    };
    let clock = Arc::new(ManualClock::new("2024-06-15T12:00:00Z".parse().unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = App::start(
        backends,
        AppOptions {
            clock: clock.clone(),
            config,
            roles: Roles::ALL,
            request_log: RequestLog::off(),
        },
        Some(listener),
    );
    TestApp {
        base,
        client: reqwest::Client::new(),
        clock,
        operator_key,
        state: app.state.clone(),
        db_path,
        backend,
        cache,
        bus,
        _app: app,
        _database: database,
        _redis: redis,
        _nats: nats,
        _dir: dir,
    }
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post_json(&self, path: &str, body: Value) -> RequestBuilder {
        self.request(Method::POST, path).json(&body)
    }

    pub fn put_json(&self, path: &str, body: Value) -> RequestBuilder {
        self.request(Method::PUT, path).json(&body)
    }

    /// GET with a key, body as JSON (whatever the status).
    pub async fn get_json(&self, path: &str, key: &str) -> Value {
        self.get(path)
            .key(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// POST a JSON body with a key, answer as JSON (whatever the status).
    pub async fn post_json_with(&self, path: &str, body: Value, key: &str) -> Value {
        self.post_json(path, body)
            .key(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn set_today(&self, rfc3339: &str) {
        self.clock.set(rfc3339.parse().unwrap());
    }

    /// Registers an account and returns its key.
    pub async fn register(&self, email: &str) -> String {
        let response = self
            .post_json(
                "/v1/users",
                serde_json::json!({"email": email, "password": "correct horse"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "registering {email}");
        let body: Value = response.json().await.unwrap();
        body["data"]["attributes"]["api_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Asserts a problem document with `status`, returning it for further checks.
pub async fn expect_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    for field in ["type", "title", "detail", "instance"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}

/// Sends a request and asserts its answer is a problem document with `status`.
pub trait ExpectProblem {
    async fn problem(self, status: u16) -> Value;
}

impl ExpectProblem for RequestBuilder {
    async fn problem(self, status: u16) -> Value {
        expect_problem(self.send().await.unwrap(), status).await
    }
}

pub trait Bearer {
    fn key(self, key: &str) -> Self;
}

impl Bearer for RequestBuilder {
    fn key(self, key: &str) -> Self {
        self.bearer_auth(key)
    }
}

/// `promtool` (Debian's `prometheus` package) for checking generated rules;
/// `None` with a printed reason when it is missing — except under `CI=true`,
/// where `.ci/run` installs it and a missing one fails the run.
pub fn promtool() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing under CI=true (.ci/run installs Debian's prometheus package)"
        );
        eprintln!(
            "skipping promtool checks: promtool is not installed (apt-get install prometheus)"
        );
    }
    found
}
