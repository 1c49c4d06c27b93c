//! Service level objectives (SPEC §7): what an SLO counts ([`Sli`]), over which
//! window ([`SloWindow`], rolling or calendar in a time zone), and the exact
//! budget and burn-rate arithmetic ([`budget`]).

pub mod budget;
pub mod expr;

use jiff::{civil::Date, tz::TimeZone, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::FieldError;
use budget::Objective;
use expr::{GoodExpr, RoutePattern};

/// The longest rolling window: SLO counts are kept 100 days, which also covers
/// the longest calendar window (a 92-day quarter).
pub const MAX_ROLLING_DAYS: u32 = 90;
pub const MAX_CHANNELS: usize = 20;
const MAX_NAME: usize = 200;
const FIELDS: [&str; 6] = [
    "name",
    "objective",
    "window",
    "time_zone",
    "sli",
    "channels",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloWindow {
    Rolling { days: u32 },
    Month,
    Quarter,
}

impl SloWindow {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "month" => return Ok(SloWindow::Month),
            "quarter" => return Ok(SloWindow::Quarter),
            _ => {}
        }
        let days = text
            .strip_suffix('d')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=MAX_ROLLING_DAYS).contains(n))
            .ok_or_else(|| {
                format!(
                    "expected \"month\", \"quarter\" or a rolling window of 1d to {MAX_ROLLING_DAYS}d such as \"30d\""
                )
            })?;
        Ok(SloWindow::Rolling { days })
    }

    pub fn as_string(self) -> String {
        match self {
            SloWindow::Rolling { days } => format!("{days}d"),
            SloWindow::Month => "month".into(),
            SloWindow::Quarter => "quarter".into(),
        }
    }

    /// The window holding `now`: `[start, end)`. Rolling windows end at `now`;
    /// calendar ones run from the start of the month or quarter in `tz` to the
    /// start of the next (so they are 28–31 or 90–92 days long, an hour less or
    /// more across a daylight-saving change).
    pub fn bounds(self, now: Timestamp, tz: &TimeZone) -> (Timestamp, Timestamp) {
        let months = match self {
            SloWindow::Rolling { days } => {
                let start = now
                    .checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days)))
                    .unwrap_or(Timestamp::MIN);
                return (start, now);
            }
            SloWindow::Month => 1,
            SloWindow::Quarter => 3,
        };
        let local = now.to_zoned(tz.clone()).date();
        let first_month = (local.month() - 1) / months * months + 1;
        let start = Date::new(local.year(), first_month, 1).unwrap_or(local);
        let end = start
            .checked_add(i32::from(months).months())
            .unwrap_or(start);
        let at = |d: Date| d.to_zoned(tz.clone()).map(|z| z.timestamp()).unwrap_or(now);
        (at(start), at(end))
    }
}

/// What an SLO counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sli {
    /// Checks of a monitor: up checks are good, down ones bad, those in a
    /// maintenance window not counted.
    Monitor(String),
    /// Keel's own requests to routes matching `route`; good when `good` holds.
    Requests { route: String, good: String },
}

/// A valid SLO definition, serialised as the API shows it and stores keep it;
/// only [`SloSpec::parse`] makes one from outside input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    pub name: String,
    /// The objective as written (`"99.9"`), so it is kept exactly.
    pub objective: String,
    pub window: String,
    /// For calendar windows; `None` uses the server's time zone.
    pub time_zone: Option<String>,
    pub sli: Sli,
    /// Channel ids to notify; empty means every channel of the tenant.
    pub channels: Vec<String>,
}

impl SloSpec {
    pub fn parse(raw: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(object) = raw.as_object() else {
            return Err(vec![FieldError::new("", "an SLO is a JSON object")]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(format!("/{k}"), "unknown field"))
            .collect();
        let mut fail = |field: &str, why: String| errors.push(FieldError::new(field, why));
        let name = match object.get("name").and_then(Value::as_str) {
            Some(n) if n.trim().is_empty() => {
                fail("/name", "a name cannot be blank".into());
                String::new()
            }
            Some(n) if n.len() > MAX_NAME => {
                fail("/name", format!("longer than {MAX_NAME} bytes"));
                String::new()
            }
            Some(n) => n.to_owned(),
            None => {
                fail("/name", "an SLO needs a name (a string)".into());
                String::new()
            }
        };
        let objective = match object.get("objective") {
            Some(Value::Number(n)) => match Objective::parse(&n.to_string()) {
                Ok(o) => o.to_string(),
                Err(why) => {
                    fail("/objective", why);
                    String::new()
                }
            },
            _ => {
                fail("/objective", "expected a percentage such as 99.9".into());
                String::new()
            }
        };
        let window = match object.get("window") {
            None => Some(SloWindow::Rolling { days: 30 }),
            Some(Value::String(w)) => SloWindow::parse(w).map_err(|why| fail("/window", why)).ok(),
            Some(_) => {
                fail(
                    "/window",
                    "expected a string such as \"30d\" or \"month\"".into(),
                );
                None
            }
        };
        let time_zone = match object.get("time_zone") {
            None | Some(Value::Null) => None,
            Some(Value::String(tz)) => {
                if TimeZone::get(tz).is_err() {
                    fail(
                        "/time_zone",
                        format!("{tz:?} is not a known IANA time zone"),
                    );
                }
                Some(tz.clone())
            }
            Some(_) => {
                fail(
                    "/time_zone",
                    "expected an IANA time zone such as \"Europe/Berlin\"".into(),
                );
                None
            }
        };
        let sli = parse_sli(object.get("sli"), &mut fail);
        let channels = match object.get("channels") {
            None => Vec::new(),
            Some(Value::Array(items))
                if items.len() <= MAX_CHANNELS && items.iter().all(Value::is_string) =>
            {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                fail(
                    "/channels",
                    format!("expected up to {MAX_CHANNELS} channel ids (strings)"),
                );
                Vec::new()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name,
            objective,
            window: window.map(SloWindow::as_string).unwrap_or_default(),
            time_zone,
            sli: sli.expect("no error means an SLI"),
            channels,
        })
    }

    pub fn objective(&self) -> Objective {
        Objective::parse(&self.objective).expect("a parsed spec holds a valid objective")
    }

    pub fn window(&self) -> SloWindow {
        SloWindow::parse(&self.window).expect("a parsed spec holds a valid window")
    }

    /// The SLO's time zone, else `default`.
    pub fn zone(&self, default: &TimeZone) -> TimeZone {
        self.time_zone
            .as_deref()
            .and_then(|tz| TimeZone::get(tz).ok())
            .unwrap_or_else(|| default.clone())
    }

    /// The monitor a monitor SLI counts.
    pub fn monitor(&self) -> Option<&str> {
        match &self.sli {
            Sli::Monitor(id) => Some(id),
            Sli::Requests { .. } => None,
        }
    }

    /// A request SLI's route pattern and good expression.
    pub fn request_sli(&self) -> Option<(RoutePattern, GoodExpr)> {
        match &self.sli {
            Sli::Requests { route, good } => Some((
                RoutePattern::parse(route).ok()?,
                GoodExpr::parse(good).ok()?,
            )),
            Sli::Monitor(_) => None,
        }
    }

    /// The SLI as the API shows it: `{"monitor": id}` or `{"requests": {...}}`.
    pub fn sli_json(&self) -> Value {
        serde_json::to_value(&self.sli).unwrap_or(Value::Null)
    }
}

fn parse_sli(raw: Option<&Value>, fail: &mut impl FnMut(&str, String)) -> Option<Sli> {
    let expected = "expected {\"monitor\": \"<id>\"} or {\"requests\": {\"route\": \"/hello/*\", \"good\": \"status < 500\"}}";
    let Some(Value::Object(sli)) = raw else {
        fail("/sli", expected.into());
        return None;
    };
    if sli.len() != 1 {
        fail("/sli", expected.into());
        return None;
    }
    match (sli.get("monitor"), sli.get("requests")) {
        (Some(Value::String(id)), _) if !id.is_empty() => Some(Sli::Monitor(id.clone())),
        (_, Some(Value::Object(requests))) => parse_requests(requests, fail),
        _ => {
            fail("/sli", expected.into());
            None
        }
    }
}

fn parse_requests(
    requests: &Map<String, Value>,
    fail: &mut impl FnMut(&str, String),
) -> Option<Sli> {
    let before = requests
        .keys()
        .filter(|k| !["route", "good"].contains(&k.as_str()))
        .map(|k| fail(&format!("/sli/requests/{k}"), "unknown field".into()))
        .count();
    let route = match requests.get("route").and_then(Value::as_str) {
        Some(r) => RoutePattern::parse(r)
            .map_err(|why| fail("/sli/requests/route", format!("{r:?}: {why}")))
            .ok(),
        None => {
            fail(
                "/sli/requests/route",
                "expected a path pattern such as \"/hello/*\"".into(),
            );
            None
        }
    };
    let good = match requests.get("good").and_then(Value::as_str) {
        Some(g) => GoodExpr::parse(g)
            .map_err(|why| fail("/sli/requests/good", format!("{g:?}: {why}")))
            .ok(),
        None => {
            fail(
                "/sli/requests/good",
                "expected an expression such as \"status < 500 and latency_ms < 300\"".into(),
            );
            None
        }
    };
    match (route, good, before) {
        (Some(route), Some(good), 0) => Some(Sli::Requests {
            route: route.as_str().to_owned(),
            good: good.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn days(bounds: (Timestamp, Timestamp)) -> f64 {
        (bounds.1.as_second() - bounds.0.as_second()) as f64 / 86_400.0
    }

    #[test]
    fn calendar_months_have_their_own_lengths() {
        let utc = TimeZone::UTC;
        for (now, len) in [
            ("2026-02-14T12:00:00Z", 28.0),
            ("2028-02-29T23:59:59Z", 29.0),
            ("2026-04-30T00:00:00Z", 30.0),
            ("2026-01-01T00:00:00Z", 31.0),
            ("2026-12-31T23:59:59.999Z", 31.0),
        ] {
            let b = SloWindow::Month.bounds(at(now), &utc);
            assert_eq!(days(b), len, "{now}");
            assert!(b.0 <= at(now) && at(now) < b.1);
        }
        // The first instant of a month is in that month, not the one before.
        let b = SloWindow::Month.bounds(at("2026-03-01T00:00:00Z"), &utc);
        assert_eq!(b.0, at("2026-03-01T00:00:00Z"));
        assert_eq!(b.1, at("2026-04-01T00:00:00Z"));
    }

    #[test]
    fn calendar_windows_follow_the_time_zone() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 23:30 UTC on 31 March is already April in Berlin.
        let b = SloWindow::Month.bounds(at("2026-03-31T23:30:00Z"), &berlin);
        assert_eq!(b.0, at("2026-03-31T22:00:00Z"));
        assert_eq!(b.1, at("2026-04-30T22:00:00Z"));
        // March in Berlin loses an hour to daylight saving.
        let b = SloWindow::Month.bounds(at("2026-03-15T12:00:00Z"), &berlin);
        assert_eq!(b.1.as_second() - b.0.as_second(), 31 * 86_400 - 3_600);
        let q = SloWindow::Quarter.bounds(at("2026-05-20T00:00:00Z"), &TimeZone::UTC);
        assert_eq!(q, (at("2026-04-01T00:00:00Z"), at("2026-07-01T00:00:00Z")));
        assert_eq!(days(q), 91.0);
        let q = SloWindow::Quarter.bounds(at("2026-11-20T00:00:00Z"), &TimeZone::UTC);
        assert_eq!(days(q), 92.0);
        let r = SloWindow::Rolling { days: 30 }.bounds(at("2026-03-31T00:00:00Z"), &berlin);
        assert_eq!(r, (at("2026-03-01T00:00:00Z"), at("2026-03-31T00:00:00Z")));
    }

    #[test]
    fn specs_parse_with_every_mistake_named() {
        let spec = SloSpec::parse(&json!({
            "name": "api", "objective": 99.9, "window": "30d",
            "sli": {"requests": {"route": "/hello/*", "good": "status < 500 and latency_ms < 300"}}
        }))
        .unwrap();
        assert_eq!(spec.objective, "99.9");
        assert_eq!(spec.objective().budget_events(1_000).to_string(), "1");
        assert!(spec.request_sli().unwrap().0.matches("/hello/bob"));
        let spec = SloSpec::parse(&json!({
            "name": "site", "objective": 99, "window": "month", "time_zone": "Europe/Berlin",
            "sli": {"monitor": "m1"}
        }))
        .unwrap();
        assert_eq!(spec.monitor(), Some("m1"));
        assert_eq!(spec.window(), SloWindow::Month);

        let errors = SloSpec::parse(&json!({
            "objective": 100, "window": "91d", "time_zone": "Mars/Olympus",
            "sli": {"requests": {"route": "hello", "good": "status <"}}, "colour": 1
        }))
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/colour",
            "/name",
            "/objective",
            "/window",
            "/time_zone",
            "/sli/requests/route",
            "/sli/requests/good",
        ] {
            assert!(pointers.contains(&p), "{p} in {pointers:?}");
        }
        let good = errors
            .iter()
            .find(|e| e.pointer == "/sli/requests/good")
            .unwrap();
        assert!(good.detail.contains("\"status <\""), "{}", good.detail);
        assert!(SloSpec::parse(&json!({"name": "x", "objective": 99, "sli": {}})).is_err());
    }
}
