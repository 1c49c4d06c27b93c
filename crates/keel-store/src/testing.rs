//! Test support shared by every crate's tests: a fresh PostgreSQL database per
//! test, so tests run in parallel against one server without seeing each other.
//!
//! Tests that need PostgreSQL read `KEEL_TEST_POSTGRES_URL`, tests that need Redis
//! `KEEL_TEST_REDIS_URL`; without them they skip with a printed reason (CI sets
//! both and fails if a server is unreachable). Each test gets its own database or
//! key prefix; fault tests start a server of their own ([`PrivateRedis`]).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use sqlx::{Connection, Executor, PgConnection};

/// The variable naming the PostgreSQL server tests may use.
pub const POSTGRES_URL_VAR: &str = "KEEL_TEST_POSTGRES_URL";

/// The server URL, or `None` after printing why the test skips.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipping {test}: {POSTGRES_URL_VAR} is not set");
            None
        }
    }
}

/// A database made for one test and dropped with it.
pub struct TestDatabase {
    /// Connects to the new database.
    pub url: String,
    server_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database on the server at `server_url`.
    pub async fn create(server_url: &str) -> Self {
        let name = format!(
            "keel_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut admin = PgConnection::connect(server_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={server_url}: cannot connect: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(server_url).expect("a PostgreSQL URL");
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            server_url: server_url.to_owned(),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which may be shutting down: use a
        // thread with its own.
        let (server, name) = (self.server_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&server).await {
                        let _ = admin
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                        let _ = admin.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// The variable naming the Redis server tests may use.
pub const REDIS_URL_VAR: &str = "KEEL_TEST_REDIS_URL";

/// A key prefix on the test Redis made for one test; its keys are deleted with it.
pub struct TestRedis {
    /// The Redis URL with this test's `?prefix=`.
    pub url: String,
    server_url: String,
    prefix: String,
}

impl TestRedis {
    /// `None` after printing why the test skips, when `KEEL_TEST_REDIS_URL` is unset.
    pub fn create(test: &str) -> Option<Self> {
        let server_url = match std::env::var(REDIS_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!("skipping {test}: {REDIS_URL_VAR} is not set");
                return None;
            }
        };
        Some(Self::on(&server_url))
    }

    /// A fresh prefix on the Redis at `server_url`.
    pub fn on(server_url: &str) -> Self {
        let prefix = format!(
            "keel_t_{}:",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let separator = if server_url.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{server_url}{separator}prefix={prefix}"),
            server_url: server_url.to_owned(),
            prefix,
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.server_url.as_str()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut connection)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut connection);
        }
    }
}

/// A `redis-server` of a test's own on a free port, so a test can stop, pause and
/// restart it without disturbing other tests. Killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` (no persistence) and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt install redis-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT), its data intact.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.resume();
        self.stop();
    }
}
