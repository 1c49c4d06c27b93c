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

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
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
        let port = free_port();
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

/// A PostgreSQL server of a test's own (`initdb` into a temporary directory, trust
/// authentication, superuser `postgres`), so a fault test can stop and restart it
/// without disturbing other tests. Needs the server binaries (`pg_config
/// --bindir`); run as root, it runs them as the `postgres` user. Stopped and
/// deleted when dropped.
pub struct PrivatePostgres {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates the cluster and starts it.
    pub fn start() -> Self {
        let bin = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .or_else(|| {
                std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("bin").display().to_string())
                    .max()
            })
            .expect("PostgreSQL server binaries (apt install postgresql)");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "keel-pg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster");
        let as_postgres = running_as_root();
        let postgres = Self {
            port,
            dir,
            bin: bin.into(),
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", &postgres.dir.display().to_string()])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown the cluster directory"
            );
        }
        let data = postgres.data().display().to_string();
        postgres.run(
            "initdb",
            &[
                "-D",
                &data,
                "--auth=trust",
                "-U",
                "postgres",
                "-N",
                "-E",
                "UTF8",
            ],
        );
        postgres.start_again();
        postgres
    }

    /// The server URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`):
    /// what it acknowledged is in its WAL.
    pub fn stop(&self) {
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["stop", "-D", &data, "-m", "immediate", "-w"]);
    }

    /// Starts the (stopped) server again on the same port.
    pub fn start_again(&self) {
        let data = self.data().display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "start", "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60",
            ],
        );
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.join("data")
    }

    /// A server program, run as `postgres` when the test runs as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // This process's /proc entry belongs to its user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-D", &data, "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The variable naming the NATS (JetStream) server tests may use.
pub const NATS_URL_VAR: &str = "KEEL_TEST_NATS_URL";

/// A prefix on the test NATS server made for one test: its streams and buckets are
/// deleted with it, so tests run in parallel without seeing each other.
pub struct TestNats {
    /// The bus URL with this test's `?prefix=` (and any extra options).
    pub url: String,
    server_url: String,
    prefix: String,
}

impl TestNats {
    /// `None` (after printing why) when `KEEL_TEST_NATS_URL` is unset.
    pub fn new(test: &str) -> Option<Self> {
        Self::with_options(test, "")
    }

    /// `options` are appended to the URL's query, e.g. `&dedup_window_s=3`.
    pub fn with_options(test: &str, options: &str) -> Option<Self> {
        let server_url = match std::env::var(NATS_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!("skipping {test}: {NATS_URL_VAR} is not set");
                return None;
            }
        };
        Some(Self::on(&server_url, options))
    }

    /// A fresh prefix on the NATS server at `server_url` (a URL without a query).
    pub fn on(server_url: &str, options: &str) -> Self {
        let prefix = format!("kt{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            url: format!("{server_url}?prefix={prefix}{options}"),
            server_url: server_url.to_owned(),
            prefix,
        }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let (server, prefix) = (self.server_url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(delete_nats_prefix(&server, &prefix));
            }
        })
        .join();
    }
}

async fn delete_nats_prefix(server: &str, prefix: &str) {
    use futures::StreamExt;
    let Ok(client) = async_nats::connect(server).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut mine = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if name.starts_with(&format!("{prefix}_")) || name.starts_with(&format!("KV_{prefix}_")) {
            mine.push(name);
        }
    }
    for name in mine {
        let _ = js.delete_stream(&name).await;
    }
}

/// A `nats-server` with JetStream of a test's own, on a free port with its own
/// store directory, so a test can kill and restart it without disturbing others.
/// Its data survives a restart (the directory stays); killed when dropped.
pub struct PrivateNats {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub fn start() -> Self {
        let mut nats = Self {
            port: free_port(),
            dir: std::env::temp_dir().join(format!("keel-nats-{}", uuid::Uuid::new_v4().simple())),
            child: None,
        };
        nats.start_again();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn start_again(&mut self) {
        self.kill();
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or("nats-server");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .arg("-sd")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt install nats-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The variable naming the S3-compatible server tests may use (an `http://host:port`
/// endpoint; CI runs `moto_server` there).
pub const S3_URL_VAR: &str = "KEEL_TEST_S3_URL";
/// The one bucket tests share on that server; each test writes under its own prefix.
pub const S3_TEST_BUCKET: &str = "keel-test";

/// A prefix of its own in the test bucket, for one test.
pub struct TestS3 {
    /// A `KEEL_OBJECTS` URL: `s3://keel-test?endpoint=…&prefix=…` with test credentials.
    pub url: String,
}

impl TestS3 {
    /// `None` (after printing why) when `KEEL_TEST_S3_URL` is unset. Creates the
    /// shared bucket if the server does not have it yet.
    pub fn new(test: &str) -> Option<Self> {
        let endpoint = match std::env::var(S3_URL_VAR) {
            Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
            _ => {
                eprintln!("skipping {test}: {S3_URL_VAR} is not set");
                return None;
            }
        };
        create_bucket(&endpoint, S3_TEST_BUCKET);
        let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        Some(Self {
            url: format!(
                "s3://{S3_TEST_BUCKET}?endpoint={endpoint}&region=us-east-1&prefix={prefix}\
                 &access_key_id=keel-test&secret_access_key=keel-test"
            ),
        })
    }
}

/// `PUT /bucket` on a local S3-compatible test server, which (like moto) accepts
/// it unsigned; answers for a bucket that exists already are fine too.
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{S3_URL_VAR} is an http:// endpoint, not {endpoint}"));
    let mut stream = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("{S3_URL_VAR}={endpoint} is unreachable: {e}"));
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.contains("BucketAlreadyOwnedByYou"),
        "creating the test bucket on {endpoint}: {answer}"
    );
}
