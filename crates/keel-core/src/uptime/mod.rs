//! Uptime monitoring (SPEC §7): monitor definitions and their conditions, when
//! each check is due, and the tallies that minute, hour and day rollups keep.

pub mod cert;
pub mod condition;
pub mod maintenance;
pub mod monitor;

use crate::latency::LatencyHistogram;

/// The rollups a result is counted in, finest first, with their width in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    pub const ALL: [Grain; 3] = [Grain::Minute, Grain::Hour, Grain::Day];

    pub fn micros(self) -> i64 {
        match self {
            Grain::Minute => 60_000_000,
            Grain::Hour => 3_600_000_000,
            Grain::Day => 86_400_000_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }

    /// The start of the bucket holding `micros` (UTC-aligned).
    pub fn bucket(self, micros: i64) -> i64 {
        micros.div_euclid(self.micros()) * self.micros()
    }

    /// The coarsest grain that still answers a window of `span_micros` with no
    /// more than a few thousand buckets: minutes up to a day, hours up to 31 days,
    /// days beyond.
    pub fn for_span(span_micros: i64) -> Grain {
        if span_micros <= Grain::Day.micros() {
            Grain::Minute
        } else if span_micros <= 31 * Grain::Day.micros() {
            Grain::Hour
        } else {
            Grain::Day
        }
    }
}

/// Where a monitor's checks fall within each interval: a fixed offset from its id,
/// so monitors with the same interval spread over it instead of all firing at once.
pub fn phase_micros(monitor_id: &str, interval_s: u32) -> i64 {
    // FNV-1a: stable across processes and releases (the std hasher is neither).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in monitor_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % (u64::from(interval_s.max(1)) * 1_000_000)) as i64
}

/// The first check slot of a monitor (interval `interval_s`, phase from its id)
/// at or after `now`.
pub fn first_slot(monitor_id: &str, interval_s: u32, now_micros: i64) -> i64 {
    let period = i64::from(interval_s.max(1)) * 1_000_000;
    let phase = phase_micros(monitor_id, interval_s);
    let base = now_micros - (now_micros - phase).rem_euclid(period);
    if base < now_micros {
        base + period
    } else {
        base
    }
}

/// The slot after `scheduled` that is still ahead of `now`: one check per
/// interval, never a burst of catch-up checks after a pause.
pub fn next_slot(scheduled_micros: i64, period_micros: i64, now_micros: i64) -> i64 {
    let period = period_micros.max(1);
    let next = scheduled_micros + period;
    if next > now_micros {
        return next;
    }
    let behind = (now_micros - next) / period + 1;
    next + behind * period
}

/// What a rollup bucket counts. Tallies add, so buckets merge into any window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub up: u64,
    pub down: u64,
    /// Checks inside a maintenance window: neither up nor down.
    pub maintenance: u64,
    /// Time counted as down: each failed check stands for its interval.
    pub down_ms: u64,
    /// Latency of answered checks, in µs.
    pub latency: LatencyHistogram,
}

impl Tally {
    pub fn merge(&mut self, other: &Tally) {
        self.up += other.up;
        self.down += other.down;
        self.maintenance += other.maintenance;
        self.down_ms += other.down_ms;
        self.latency.merge(&other.latency);
    }

    /// Checks that count for uptime.
    pub fn counted(&self) -> u64 {
        self.up + self.down
    }

    /// Percentage of counted checks that were up; `None` without any.
    pub fn uptime_percent(&self) -> Option<f64> {
        (self.counted() > 0).then(|| self.up as f64 * 100.0 / self.counted() as f64)
    }

    /// A latency quantile in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency
            .quantile(q)
            .map(|us| (us / 1000.0 * 100.0).round() / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_their_phase_and_never_burst() {
        let period = 30_000_000;
        let first = first_slot("m1", 30, 1_000_000_000_123);
        assert!(first >= 1_000_000_000_123 && first < 1_000_000_000_123 + period);
        assert_eq!(first_slot("m1", 30, first), first);
        assert_eq!(
            (first - phase_micros("m1", 30)).rem_euclid(period),
            0,
            "on the monitor's phase"
        );
        assert_eq!(next_slot(first, period, first + 1), first + period);
        // Ten intervals late: the next slot ahead, not ten checks.
        let late = first + 10 * period + 5;
        assert_eq!(next_slot(first, period, late), first + 11 * period);
        assert_eq!(
            next_slot(first, period, first + 2 * period),
            first + 3 * period
        );
    }

    #[test]
    fn phases_spread_monitors_over_the_interval() {
        let mut seconds = [0u32; 30];
        for i in 0..3000 {
            seconds[(phase_micros(&format!("monitor-{i}"), 30) / 1_000_000) as usize] += 1;
        }
        assert!(
            seconds.iter().all(|&n| (50..=150).contains(&n)),
            "{seconds:?}"
        );
    }

    #[test]
    fn tallies_merge_and_give_uptime() {
        let mut a = Tally {
            up: 3,
            down: 1,
            down_ms: 30_000,
            ..Tally::default()
        };
        a.latency.record(120_000);
        let b = Tally {
            up: 4,
            maintenance: 2,
            ..Tally::default()
        };
        a.merge(&b);
        assert_eq!(a.counted(), 8);
        assert_eq!(a.uptime_percent(), Some(87.5));
        assert_eq!(Tally::default().uptime_percent(), None);
        let p50 = a.latency_ms(0.5).unwrap();
        assert!((p50 - 120.0).abs() < 8.0, "{p50}");
    }

    #[test]
    fn grains_align_and_fit_the_span() {
        assert_eq!(Grain::Hour.bucket(3_600_000_000 + 5), 3_600_000_000);
        assert_eq!(Grain::Minute.bucket(-1), -60_000_000);
        assert_eq!(Grain::for_span(3_600_000_000), Grain::Minute);
        assert_eq!(Grain::for_span(7 * 86_400_000_000), Grain::Hour);
        assert_eq!(Grain::for_span(90 * 86_400_000_000), Grain::Day);
    }
}
