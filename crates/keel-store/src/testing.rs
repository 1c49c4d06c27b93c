//! Test support shared by every crate's tests: a fresh PostgreSQL database per
//! test, so tests run in parallel against one server without seeing each other.
//!
//! Tests that need PostgreSQL read `KEEL_TEST_POSTGRES_URL`; without it they skip
//! with a printed reason (CI sets it and fails if the server is unreachable).

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
