//! An SLO's figures now (SPEC §7): events in its window, the error budget,
//! burn rates over the reported windows, and which alert rules fire. One
//! computation for `GET /v1/slos/{id}`, the evaluator, `/metrics` and reports.

use std::collections::BTreeMap;

use jiff::{tz::TimeZone, Timestamp};
use keel_core::slo::budget::{self, Counts, Fixed8, Severity, REPORTED_WINDOWS};
use keel_store::{
    slos::{StoredSlo, MINUTE_US},
    Store, StoreResult,
};

/// The minutes a window of `minutes` ending at `now` covers: the current minute
/// and the `minutes - 1` before it, so a 5-minute window holds 4 to 5 minutes of
/// events (counts are kept per minute).
pub fn trailing(now: Timestamp, minutes: u32) -> (i64, i64) {
    let this_minute = now.as_microsecond().div_euclid(MINUTE_US) * MINUTE_US;
    (
        this_minute - (i64::from(minutes) - 1) * MINUTE_US,
        this_minute + MINUTE_US,
    )
}

/// An SLO's window as minute bounds: rolling windows trail `now`; calendar
/// ones run from their start to the current minute.
pub fn window_range(slo: &StoredSlo, now: Timestamp, default_tz: &TimeZone) -> (i64, i64) {
    let window = slo.spec.window();
    match window {
        keel_core::slo::SloWindow::Rolling { days } => trailing(now, days * 1_440),
        _ => {
            let (start, _) = window.bounds(now, &slo.spec.zone(default_tz));
            (start.as_microsecond(), trailing(now, 1).1)
        }
    }
}

#[derive(Debug, Clone)]
pub struct SloFigures {
    /// Events in the SLO's window.
    pub window: Counts,
    pub window_start: i64,
    pub window_end: i64,
    /// Burn rate per reported window (`"5m"` … `"3d"`).
    pub burn_rates: BTreeMap<&'static str, Fixed8>,
    /// The rule firing now per severity, if any.
    pub firing: Vec<(Severity, budget::BurnRule)>,
}

impl SloFigures {
    pub async fn compute(
        store: &dyn Store,
        slo: &StoredSlo,
        now: Timestamp,
        default_tz: &TimeZone,
    ) -> StoreResult<Self> {
        let (window_start, window_end) = window_range(slo, now, default_tz);
        let minutes = budget::needed_windows();
        let mut ranges: Vec<(i64, i64)> = minutes.iter().map(|&m| trailing(now, m)).collect();
        ranges.push((window_start, window_end));
        let sums = store.slo_counts(&slo.tenant, &slo.id, &ranges).await?;
        let window = sums.last().copied().unwrap_or_default();
        let over = |m: u32| {
            minutes
                .iter()
                .position(|&x| x == m)
                .and_then(|i| sums.get(i).copied())
                .unwrap_or_default()
        };
        let objective = slo.spec.objective();
        let burn_rates = REPORTED_WINDOWS
            .iter()
            .map(|&(label, m)| (label, objective.burn_rate(over(m))))
            .collect();
        let firing = [Severity::Page, Severity::Ticket]
            .into_iter()
            .filter_map(|s| budget::firing_rule(objective, s, over).map(|rule| (s, rule)))
            .collect();
        Ok(Self {
            window,
            window_start,
            window_end,
            burn_rates,
            firing,
        })
    }

    /// The SLI in percent, `None` without events.
    pub fn value_percent(&self) -> Option<Fixed8> {
        (self.window.total > 0).then(|| {
            Fixed8::ratio(
                i128::from(self.window.good) * 100,
                i128::from(self.window.total),
            )
        })
    }
}
