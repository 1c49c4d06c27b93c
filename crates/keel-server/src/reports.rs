//! The monthly uptime report (SPEC §7) — what an executive reads: per monitor
//! and per SLO, uptime, objective, met or missed, downtime and incidents, for a
//! calendar month in the server's time zone. One computation behind
//! `GET /v1/reports/uptime` (JSON, CSV) and `keel report uptime` (Markdown).
//!
//! Monitor figures come from hour rollups while the month is within their
//! retention (32 days), else from day rollups, whose buckets are UTC days: for
//! an older month in a zone other than UTC the month's edges are then the UTC
//! midnights nearest them. SLO figures come from the minute counts (kept 100
//! days); older months have none.

use std::fmt::Write as _;

use jiff::{civil::Date, tz::TimeZone, Timestamp, ToSpan};
use keel_core::{
    slo::budget::{Counts, Fixed8},
    uptime::{Grain, Tally},
};
use keel_store::{PageRequest, Store, StoreResult, TenantId};
use serde::Serialize;

/// A month as `YYYY-MM`.
pub fn parse_period(raw: &str) -> Result<Date, String> {
    let bad = || format!("{raw:?} is not a month such as 2026-10");
    let (year, month) = raw.split_once('-').ok_or_else(bad)?;
    if year.len() != 4 || month.len() != 2 {
        return Err(bad());
    }
    let (year, month): (i16, i8) = (
        year.parse().map_err(|_| bad())?,
        month.parse().map_err(|_| bad())?,
    );
    Date::new(year, month, 1).map_err(|_| bad())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonitorLine {
    pub id: String,
    pub name: String,
    pub uptime_percent: Option<f64>,
    pub downtime_minutes: f64,
    pub checks: u64,
    pub incidents: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SloLine {
    pub id: String,
    pub name: String,
    pub objective: f64,
    /// Percent good in the month; none without events.
    pub sli_percent: Option<f64>,
    /// `None` without events.
    pub met: Option<bool>,
    pub good: u64,
    pub total: u64,
    /// Bad events allowed and spent.
    pub budget_events: f64,
    pub consumed_events: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UptimeReport {
    pub period: String,
    pub time_zone: String,
    pub from: String,
    pub to: String,
    pub monitors: Vec<MonitorLine>,
    pub slos: Vec<SloLine>,
}

pub async fn uptime_report(
    store: &dyn Store,
    tenant: &TenantId,
    month: Date,
    tz: &TimeZone,
    now: Timestamp,
) -> StoreResult<UptimeReport> {
    let at = |d: Date| {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::UNIX_EPOCH)
    };
    let (start, end) = (at(month), at(month.checked_add(1.month()).unwrap_or(month)));
    let (from, to) = (start.as_microsecond(), end.as_microsecond());
    let grain = if now.as_microsecond() - from <= 31 * Grain::Day.micros() {
        Grain::Hour
    } else {
        Grain::Day
    };
    let mut monitors = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_monitors(tenant, PageRequest { limit: 500, cursor })
            .await?;
        for m in page.items {
            let mut all = Tally::default();
            for (_, t) in store
                .monitor_tallies(tenant, &m.id, grain, grain.bucket(from), to)
                .await?
            {
                all.merge(&t);
            }
            let incidents = store
                .list_incidents(
                    tenant,
                    &m.id,
                    Some((from, to)),
                    PageRequest {
                        limit: 1_000,
                        cursor: None,
                    },
                )
                .await?
                .items
                .len();
            monitors.push(MonitorLine {
                id: m.id,
                name: m.spec.name,
                uptime_percent: all.uptime_percent().map(|p| (p * 1000.0).round() / 1000.0),
                downtime_minutes: all.down_ms as f64 / 60_000.0,
                checks: all.counted(),
                incidents,
            });
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut slos = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_slos(tenant, PageRequest { limit: 500, cursor })
            .await?;
        for slo in page.items {
            let counts: Counts = store
                .slo_counts(tenant, &slo.id, &[(from, to)])
                .await?
                .pop()
                .unwrap_or_default();
            let objective = slo.spec.objective();
            let value = (counts.total > 0)
                .then(|| Fixed8::ratio(i128::from(counts.good) * 100, i128::from(counts.total)));
            // Met, decided exactly: good/total ≥ objective/100.
            let met = (counts.total > 0).then(|| {
                i128::from(counts.good) * Fixed8::from_int(100).0
                    >= objective.percent().0 * i128::from(counts.total)
            });
            slos.push(SloLine {
                id: slo.id,
                name: slo.spec.name,
                objective: objective.percent().to_f64(),
                sli_percent: value.map(Fixed8::to_f64),
                met,
                good: counts.good,
                total: counts.total,
                budget_events: objective.budget_events(counts.total).to_f64(),
                consumed_events: counts.bad(),
            });
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(UptimeReport {
        period: format!("{:04}-{:02}", month.year(), month.month()),
        time_zone: tz.iana_name().unwrap_or("UTC").to_owned(),
        from: start.to_string(),
        to: end.to_string(),
        monitors,
        slos,
    })
}

fn percent(p: Option<f64>) -> String {
    p.map_or("–".into(), |p| format!("{p}%"))
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "missed",
        None => "no data",
    }
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

impl UptimeReport {
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "kind,name,uptime_percent,objective,met,downtime_minutes,incidents,good,total\r\n",
        );
        for m in &self.monitors {
            let _ = write!(
                out,
                "monitor,{},{},,,{},{},,\r\n",
                field(&m.name),
                m.uptime_percent.map_or(String::new(), |p| p.to_string()),
                m.downtime_minutes,
                m.incidents
            );
        }
        for s in &self.slos {
            let _ = write!(
                out,
                "slo,{},{},{},{},,,{},{}\r\n",
                field(&s.name),
                s.sli_percent.map_or(String::new(), |p| p.to_string()),
                s.objective,
                met(s.met),
                s.good,
                s.total
            );
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
        let mut out = format!(
            "# Uptime report {} ({}, {} to {})\n\n",
            self.period, self.time_zone, self.from, self.to
        );
        out.push_str("| Monitor | Uptime | Downtime (min) | Checks | Incidents |\n");
        out.push_str("|---|---:|---:|---:|---:|\n");
        for m in &self.monitors {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&m.name),
                percent(m.uptime_percent),
                m.downtime_minutes,
                m.checks,
                m.incidents
            );
        }
        out.push_str("\n| SLO | Objective | Achieved | Status | Bad events (allowed) |\n");
        out.push_str("|---|---:|---:|---|---:|\n");
        for s in &self.slos {
            let _ = writeln!(
                out,
                "| {} | {}% | {} | {} | {} ({}) |",
                cell(&s.name),
                s.objective,
                percent(s.sli_percent),
                met(s.met),
                s.consumed_events,
                s.budget_events
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_months() {
        assert_eq!(
            parse_period("2026-02").unwrap(),
            Date::new(2026, 2, 1).unwrap()
        );
        for bad in ["2026-13", "2026-2", "26-02", "2026/02", "2026-02-01"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
