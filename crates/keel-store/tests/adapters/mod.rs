//! The adapters every conformance suite runs against, opened the same way: through
//! `keel_store::connect`, with a clock the test moves (every adapter takes "now"
//! from it). SQLite always; PostgreSQL when `KEEL_TEST_POSTGRES_URL` is set (a fresh
//! database per test), otherwise that half skips with a printed reason.
#![allow(dead_code)] // each suite uses a different part

pub mod caches;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use keel_core::clock::{Clock, ManualClock};
use keel_store::{bus::Bus, testing::TestDatabase, BackendSettings, Backends, Quotas, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct Adapter {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub clock: Arc<ManualClock>,
    settings: BackendSettings,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl Adapter {
    pub async fn open(kind: Kind) -> Option<Self> {
        Self::open_with(kind, Quotas::default()).await
    }

    pub async fn open_with(kind: Kind, quotas: Quotas) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (url, database) = match kind {
            Kind::Sqlite => (
                format!("sqlite://{}", dir.path().join("keel.db").display()),
                None,
            ),
            Kind::Postgres => {
                let server = keel_store::testing::postgres_url("the PostgreSQL half")?;
                let database = TestDatabase::create(&server).await;
                (database.url.clone(), Some(database))
            }
        };
        let clock = Arc::new(ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
        let mut settings = BackendSettings::new(url);
        settings.quotas = quotas;
        settings.clock = clock.clone();
        let Backends { store, bus, .. } = keel_store::connect(&settings).await.unwrap();
        Some(Self {
            kind,
            store,
            bus,
            clock,
            settings,
            _dir: dir,
            _database: database,
        })
    }

    /// A second, independent view of the same storage: what a restarted process
    /// (or another replica) would open.
    pub async fn reopen(&self) -> Backends {
        keel_store::connect(&self.settings).await.unwrap()
    }

    /// The PostgreSQL database's URL (as the test's superuser), if this is one.
    pub fn database_url(&self) -> Option<String> {
        self._database.as_ref().map(|d| d.url.clone())
    }

    pub fn advance(&self, seconds: i64) {
        let now: Timestamp = self.clock.now();
        self.clock
            .set(now.checked_add(SignedDuration::from_secs(seconds)).unwrap());
    }
}

/// Runs each named check (an `async fn(Kind)`) once per adapter, as
/// `sqlite::<check>` and `postgres::<check>`.
#[macro_export]
macro_rules! on_every_adapter {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check($crate::adapters::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check($crate::adapters::Kind::Postgres).await
                }
            )*
        }
    };
}
