//! Time comes from a [`Clock`] passed in, so tests control "now" and "today".

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{civil::Date, tz::TimeZone, Timestamp};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// The calendar date "now" falls on in `tz` (SPEC §2: today is the configured
    /// time zone's date).
    fn today(&self, tz: &TimeZone) -> Date {
        self.now().to_zoned(tz.clone()).date()
    }
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self {
            nanos: AtomicI64::new(at.as_nanosecond() as i64),
        }
    }

    pub fn set(&self, at: Timestamp) {
        self.nanos
            .store(at.as_nanosecond() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanosecond(self.nanos.load(Ordering::SeqCst) as i128)
            .expect("a ManualClock only holds timestamps it was given")
    }
}
