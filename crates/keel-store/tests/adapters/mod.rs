//! The adapters every conformance suite runs against, opened the same way: through
//! `keel_store::connect`, with a clock the test moves (every adapter takes "now"
//! from it). SQLite always; PostgreSQL when `KEEL_TEST_POSTGRES_URL` is set (a fresh
//! database per test), otherwise that half skips with a printed reason. The bus
//! suite runs a third time on NATS JetStream (`KEEL_TEST_NATS_URL`; SQLite stores
//! the rest), whose timers run on the server's clock: there [`Adapter::advance`]
//! also lets real time pass.
#![allow(dead_code)] // each suite uses a different part

pub mod bus;
pub mod caches;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use keel_core::clock::{Clock, ManualClock};
use keel_store::{
    bus::Bus,
    testing::{TestDatabase, TestNats},
    BackendSettings, Backends, Quotas, Store,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    /// SQLite for the store, JetStream for the bus.
    Nats,
}

/// The dedup window the NATS bus is opened with in tests (the embedded buses keep
/// SPEC's 5 minutes: their clock is moved, not waited for).
const NATS_DEDUP_WINDOW_S: i64 = 3;

pub struct Adapter {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub clock: Arc<ManualClock>,
    settings: BackendSettings,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
    _nats: Option<TestNats>,
}

impl Adapter {
    pub async fn open(kind: Kind) -> Option<Self> {
        Self::open_with(kind, Quotas::default()).await
    }

    pub async fn open_with(kind: Kind, quotas: Quotas) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("keel.db").display());
        let mut nats = None;
        let (url, database) = match kind {
            Kind::Nats => {
                nats = Some(TestNats::with_options(
                    "the NATS half",
                    &format!("&dedup_window_s={NATS_DEDUP_WINDOW_S}"),
                )?);
                (sqlite, None)
            }
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
        if let Some(nats) = &nats {
            settings.bus = nats.url.clone();
        }
        let Backends { store, bus, .. } = keel_store::connect(&settings).await.unwrap();
        Some(Self {
            kind,
            store,
            bus,
            clock,
            settings,
            _dir: dir,
            _database: database,
            _nats: nats,
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

    /// Moves the adapter's time on by `seconds`: the test clock, and on NATS the
    /// server's real time too (the test sleeps).
    pub fn advance(&self, seconds: i64) {
        let now: Timestamp = self.clock.now();
        self.clock
            .set(now.checked_add(SignedDuration::from_secs(seconds)).unwrap());
        if self.kind == Kind::Nats {
            let pause = std::time::Duration::from_secs(seconds as u64);
            tokio::task::block_in_place(|| std::thread::sleep(pause));
        }
    }

    /// How long a publish id is remembered.
    pub fn dedup_window_s(&self) -> i64 {
        match self.kind {
            Kind::Nats => NATS_DEDUP_WINDOW_S,
            Kind::Sqlite | Kind::Postgres => 300,
        }
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

/// Runs each named check once per bus adapter: the embedded bus on SQLite and on
/// PostgreSQL, and JetStream, as `sqlite::<check>`, `postgres::<check>` and
/// `nats::<check>`.
#[macro_export]
macro_rules! on_every_bus {
    ($($check:ident),* $(,)?) => {
        $crate::on_every_adapter!($($check),*);
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check($crate::adapters::Kind::Nats).await
                }
            )*
        }
    };
}
