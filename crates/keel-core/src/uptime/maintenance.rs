//! Maintenance windows (SPEC §7): while one covers a monitor, its checks count
//! as neither up nor down, open no incident and burn no error budget. A window
//! is one-off (`starts_at`..`ends_at`) or recurring (on given weekdays, from a
//! local time, for some minutes, in a time zone).

use jiff::{
    civil::{Date, Time, Weekday},
    tz::TimeZone,
    SignedDuration, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

/// The longest window: a week (a recurring window longer than that would
/// overlap itself).
pub const MAX_MINUTES: u32 = 7 * 1_440;
const FIELDS: [&str; 6] = [
    "name",
    "monitors",
    "starts_at",
    "ends_at",
    "recurring",
    "time_zone",
];
const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recurrence {
    /// `mon` … `sun`.
    pub weekdays: Vec<String>,
    /// Local start time, `HH:MM`.
    pub start: String,
    pub duration_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceSpec {
    pub name: String,
    /// Monitor ids; empty means every monitor of the tenant.
    pub monitors: Vec<String>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub recurring: Option<Recurrence>,
    /// For recurring windows; `None` uses the server's time zone.
    pub time_zone: Option<String>,
}

impl MaintenanceSpec {
    pub fn parse(raw: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(object) = raw.as_object() else {
            return Err(vec![FieldError::new(
                "",
                "a maintenance window is a JSON object",
            )]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(format!("/{k}"), "unknown field"))
            .collect();
        let mut fail = |p: &str, why: &str| errors.push(FieldError::new(p, why));
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        if name.is_empty() || name.len() > 200 {
            fail(
                "/name",
                "a maintenance window needs a name of 1 to 200 bytes",
            );
        }
        let monitors: Vec<String> = match object.get("monitors") {
            None => Vec::new(),
            Some(Value::Array(ids)) if ids.len() <= 1_000 && ids.iter().all(Value::is_string) => {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                fail("/monitors", "expected up to 1,000 monitor ids");
                Vec::new()
            }
        };
        let time = |field: &str, fail: &mut dyn FnMut(&str, &str)| match object.get(field) {
            None => None,
            Some(v) => {
                let parsed = v.as_str().and_then(|s| s.parse::<Timestamp>().ok());
                if parsed.is_none() {
                    fail(
                        &format!("/{field}"),
                        "expected an RFC 3339 time such as 2026-10-01T02:00:00Z",
                    );
                }
                parsed
            }
        };
        let starts_at = time("starts_at", &mut fail);
        let ends_at = time("ends_at", &mut fail);
        let recurring = match object.get("recurring") {
            None => None,
            Some(r) if r.is_object() => parse_recurrence(r, &mut fail),
            Some(_) => {
                fail(
                    "/recurring",
                    "expected {\"weekdays\": [...], \"start\": \"HH:MM\", \"duration_minutes\": N}",
                );
                None
            }
        };
        let one_off = object.contains_key("starts_at") || object.contains_key("ends_at");
        match (one_off, object.contains_key("recurring")) {
            (true, true) => fail(
                "/recurring",
                "a window is either one-off (starts_at, ends_at) or recurring",
            ),
            (false, false) => fail("", "give starts_at and ends_at, or recurring"),
            (true, false) => match (starts_at, ends_at) {
                (Some(s), Some(e)) if s >= e => fail("/ends_at", "ends_at must be after starts_at"),
                (Some(_), Some(_)) => {}
                (None, _) if !object.contains_key("starts_at") => {
                    fail("/starts_at", "a one-off window needs starts_at")
                }
                (_, None) if !object.contains_key("ends_at") => {
                    fail("/ends_at", "a one-off window needs ends_at")
                }
                _ => {}
            },
            (false, true) => {}
        }
        let time_zone = match object.get("time_zone") {
            None | Some(Value::Null) => None,
            Some(Value::String(tz)) if TimeZone::get(tz).is_ok() => Some(tz.clone()),
            Some(_) => {
                fail(
                    "/time_zone",
                    "expected an IANA time zone such as \"Europe/Berlin\"",
                );
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: name.to_owned(),
            monitors,
            starts_at,
            ends_at,
            recurring,
            time_zone,
        })
    }

    pub fn applies_to(&self, monitor_id: &str) -> bool {
        self.monitors.is_empty() || self.monitors.iter().any(|m| m == monitor_id)
    }

    /// Whether the window is on at `at`.
    pub fn covers(&self, at: Timestamp, default_tz: &TimeZone) -> bool {
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            return start <= at && at < end;
        }
        let Some(rule) = &self.recurring else {
            return false;
        };
        let tz = self
            .time_zone
            .as_deref()
            .and_then(|z| TimeZone::get(z).ok())
            .unwrap_or_else(|| default_tz.clone());
        let Ok(start_time) = rule.start.parse::<Time>() else {
            return false;
        };
        let today = at.to_zoned(tz.clone()).date();
        let length = SignedDuration::from_mins(i64::from(rule.duration_minutes));
        // A window that began on one of the last eight days may still be on.
        (0..=7).any(|back| {
            let Ok(day) = today.checked_sub(jiff::Span::new().days(back)) else {
                return false;
            };
            on_weekday(day, &rule.weekdays)
                && day
                    .to_datetime(start_time)
                    .to_zoned(tz.clone())
                    .is_ok_and(|z| {
                        let begins = z.timestamp();
                        begins <= at && at < begins.checked_add(length).unwrap_or(begins)
                    })
        })
    }
}

fn on_weekday(day: Date, listed: &[String]) -> bool {
    listed.iter().any(|w| {
        WEEKDAYS
            .iter()
            .any(|(name, weekday)| name == w && *weekday == day.weekday())
    })
}

fn parse_recurrence(raw: &Value, fail: &mut dyn FnMut(&str, &str)) -> Option<Recurrence> {
    let object = raw.as_object()?;
    let weekdays: Option<Vec<String>> =
        object
            .get("weekdays")
            .and_then(Value::as_array)
            .and_then(|days| {
                let names: Vec<String> = days
                    .iter()
                    .filter_map(|d| d.as_str().map(str::to_ascii_lowercase))
                    .collect();
                (names.len() == days.len()
                    && !names.is_empty()
                    && names.iter().all(|n| WEEKDAYS.iter().any(|(w, _)| w == n)))
                .then_some(names)
            });
    if weekdays.is_none() {
        fail(
            "/recurring/weekdays",
            "expected weekdays such as [\"sat\", \"sun\"] (mon … sun)",
        );
    }
    let start = object
        .get("start")
        .and_then(Value::as_str)
        .filter(|s| s.len() == 5 && s.parse::<Time>().is_ok())
        .map(str::to_owned);
    if start.is_none() {
        fail(
            "/recurring/start",
            "expected a local time HH:MM such as \"02:00\"",
        );
    }
    let minutes = object
        .get("duration_minutes")
        .and_then(Value::as_u64)
        .filter(|m| (1..=u64::from(MAX_MINUTES)).contains(m));
    if minutes.is_none() {
        fail(
            "/recurring/duration_minutes",
            "expected 1 to 10,080 minutes",
        );
    }
    Some(Recurrence {
        weekdays: weekdays?,
        start: start?,
        duration_minutes: minutes? as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn one_off_windows_cover_their_span() {
        let w = MaintenanceSpec::parse(&json!({
            "name": "upgrade", "monitors": ["m1"],
            "starts_at": "2026-10-01T02:00:00Z", "ends_at": "2026-10-01T03:00:00Z"
        }))
        .unwrap();
        let utc = TimeZone::UTC;
        assert!(w.covers(at("2026-10-01T02:00:00Z"), &utc));
        assert!(w.covers(at("2026-10-01T02:59:59Z"), &utc));
        assert!(!w.covers(at("2026-10-01T03:00:00Z"), &utc));
        assert!(w.applies_to("m1") && !w.applies_to("m2"));
    }

    #[test]
    fn recurring_windows_follow_weekdays_in_their_zone() {
        // Saturdays 23:00–01:00 Berlin time: crosses midnight into Sunday.
        let w = MaintenanceSpec::parse(&json!({
            "name": "weekly", "time_zone": "Europe/Berlin",
            "recurring": {"weekdays": ["sat"], "start": "23:00", "duration_minutes": 120}
        }))
        .unwrap();
        let utc = TimeZone::UTC;
        // 2026-10-03 is a Saturday; Berlin is UTC+2 then.
        assert!(!w.covers(at("2026-10-03T20:59:00Z"), &utc));
        assert!(w.covers(at("2026-10-03T21:00:00Z"), &utc));
        assert!(
            w.covers(at("2026-10-03T22:59:00Z"), &utc),
            "Sunday 00:59 in Berlin"
        );
        assert!(!w.covers(at("2026-10-03T23:00:00Z"), &utc));
        assert!(
            !w.covers(at("2026-10-04T21:30:00Z"), &utc),
            "not on Sundays"
        );
        assert!(w.applies_to("any"));
    }

    #[test]
    fn mistakes_are_named() {
        let e = MaintenanceSpec::parse(&json!({
            "name": "x", "starts_at": "2026-10-01T03:00:00Z", "ends_at": "2026-10-01T02:00:00Z"
        }))
        .unwrap_err();
        assert_eq!(e[0].pointer, "/ends_at");
        let e = MaintenanceSpec::parse(&json!({
            "name": "x", "recurring": {"weekdays": ["someday"], "start": "25:00", "duration_minutes": 0}
        }))
        .unwrap_err();
        let pointers: Vec<&str> = e.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            vec![
                "/recurring/weekdays",
                "/recurring/start",
                "/recurring/duration_minutes"
            ]
        );
        assert!(MaintenanceSpec::parse(&json!({"name": "x"})).is_err());
    }
}
