//! Telemetry out (SPEC §6): `GET /v1/logs` (full text, newest first, cursors) and
//! `GET /v1/metrics/{name}` (one series of aggregated steps). Both default to the
//! last hour; `from` / `to` are RFC 3339, `to` exclusive.

use axum::{extract::State, Json};
use jiff::{SignedDuration, Timestamp};
use keel_core::{
    apikey::Scope,
    telemetry::{
        aggregate::{aggregate, Agg, Window},
        check_metric_name,
    },
    FieldError,
};
use keel_store::telemetry::{search_terms, LogQuery, PointQuery, StoredLog};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Authed,
    extract::{PageQuery, PathParams, Query},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

const DEFAULT_RANGE: SignedDuration = SignedDuration::from_hours(1);

fn field(pointer: &str, detail: impl Into<String>) -> ApiError {
    ApiError::field(FieldError::new(pointer, detail))
}

/// Refuses a filter value no stored row can hold (NUL; PostgreSQL text cannot
/// even compare one).
fn no_nul(name: &str, value: Option<&str>) -> ApiResult<()> {
    match value {
        Some(v) if v.contains('\0') => Err(field(&format!("/{name}"), "contains a NUL character")),
        _ => Ok(()),
    }
}

/// `[from, to)`: both given, or the hour before `to`. `to` defaults to one second
/// after now, so what was sent a moment ago is included.
fn range(
    state: &AppState,
    from: Option<&str>,
    to: Option<&str>,
) -> ApiResult<(Timestamp, Timestamp)> {
    let parse = |text: &str, name: &str| {
        text.parse::<Timestamp>().map_err(|_| {
            field(
                &format!("/{name}"),
                format!("`{name}` must be an RFC 3339 time"),
            )
        })
    };
    let to = match to {
        Some(t) => parse(t, "to")?,
        None => state
            .clock
            .now()
            .checked_add(SignedDuration::from_secs(1))
            .unwrap_or(Timestamp::MAX),
    };
    let from = match from {
        Some(f) => parse(f, "from")?,
        None => to.checked_sub(DEFAULT_RANGE).unwrap_or(Timestamp::MIN),
    };
    if from >= to {
        return Err(field("/from", "`from` must be before `to`"));
    }
    Ok((from, to))
}

#[derive(Deserialize, IntoParams)]
pub struct LogsQuery {
    /// Only this account's lines.
    pub account: Option<String>,
    /// Only lines of this level (case-insensitive).
    pub level: Option<String>,
    /// Words every line must contain (runs of letters and digits, any case).
    pub q: Option<String>,
    /// RFC 3339; default one hour before `to`.
    pub from: Option<String>,
    /// RFC 3339, exclusive; default one second after now.
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LogView {
    pub ts: String,
    pub level: String,
    pub log: String,
    /// `null` when the sender named no account.
    pub account: Option<String>,
    pub attributes: Map<String, Value>,
}

impl From<StoredLog> for LogView {
    fn from(l: StoredLog) -> Self {
        Self {
            ts: l.ts.to_string(),
            level: l.level,
            log: l.body,
            account: (!l.account.is_empty()).then_some(l.account),
            attributes: l.attributes,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LogList {
    /// Newest first.
    pub logs: Vec<LogView>,
    pub next_cursor: Option<String>,
}

/// Searches log lines: by account, level, words and time, newest first.
#[utoipa::path(get, path = "/v1/logs", tag = "telemetry", security(("bearer" = [])),
    params(LogsQuery),
    responses((status = 200, body = LogList), (status = 400, body = Problem)))]
pub async fn get_logs(
    State(state): State<AppState>,
    Authed(key): Authed,
    Query(query): Query<LogsQuery>,
) -> ApiResult<Json<LogList>> {
    key.require(Scope::Read)?;
    no_nul("account", query.account.as_deref())?;
    no_nul("level", query.level.as_deref())?;
    let (from, to) = range(&state, query.from.as_deref(), query.to.as_deref())?;
    let terms = search_terms(query.q.as_deref().unwrap_or(""))?;
    let paging = state.paging(format!("{}/logs", key.tenant_id)).await?;
    let page = paging.request(PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    })?;
    let found = state
        .store
        .query_logs(
            &key.tenant_id,
            LogQuery {
                account: query.account,
                level: query.level,
                terms,
                from,
                to,
                page,
            },
        )
        .await?;
    Ok(Json(LogList {
        logs: found.items.into_iter().map(LogView::from).collect(),
        next_cursor: paging.next(found.next_cursor),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct MetricQuery {
    /// Only this account's points.
    pub account: Option<String>,
    /// RFC 3339; default one hour before `to`.
    pub from: Option<String>,
    /// RFC 3339, exclusive; default one second after now.
    pub to: Option<String>,
    /// Step length: seconds, or a number with `s`, `m`, `h` or `d`; default the whole range.
    pub step: Option<String>,
    /// sum, avg (default), min, max, count, p50, p95 or p99.
    pub agg: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MetricPointView {
    /// The step's start.
    pub ts: String,
    pub value: f64,
}

#[derive(Serialize, ToSchema)]
pub struct MetricSeries {
    pub metric: String,
    pub agg: String,
    /// One per step that holds points, in time order.
    pub points: Vec<MetricPointView>,
}

/// `30`, `30s`, `5m`, `1h`, `1d` → microseconds.
fn step_micros(text: &str) -> ApiResult<i64> {
    let bad = || {
        field(
            "/step",
            "`step` is a number of seconds, or a number with s, m, h or d",
        )
    };
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds)
        .and_then(|s| s.checked_mul(1_000_000))
        .filter(|s| *s > 0)
        .ok_or_else(bad)
}

/// Aggregates a metric's points into one value per step. Labels filter with
/// `label.<key>=<value>` (every one given must match).
#[utoipa::path(get, path = "/v1/metrics/{name}", tag = "telemetry", security(("bearer" = [])),
    params(("name" = String, Path), MetricQuery,
           ("label.<key>" = Option<String>, Query, description = "Only points whose label `<key>` has this value; repeat for more labels")),
    responses((status = 200, body = MetricSeries), (status = 400, body = Problem)))]
pub async fn get_metric(
    State(state): State<AppState>,
    Authed(key): Authed,
    PathParams(name): PathParams<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<MetricSeries>> {
    key.require(Scope::Read)?;
    check_metric_name(&name).map_err(|e| field("/name", e))?;
    let mut query = MetricQuery {
        account: None,
        from: None,
        to: None,
        step: None,
        agg: None,
    };
    let mut labels = Vec::new();
    for (k, v) in params {
        no_nul(&k, Some(&v))?;
        no_nul("label", Some(&k))?;
        match k.as_str() {
            "account" => query.account = Some(v),
            "from" => query.from = Some(v),
            "to" => query.to = Some(v),
            "step" => query.step = Some(v),
            "agg" => query.agg = Some(v),
            _ => match k.strip_prefix("label.") {
                Some(label) if !label.is_empty() => labels.push((label.to_owned(), v)),
                _ => return Err(field(&format!("/{k}"), "unknown parameter")),
            },
        }
    }
    let agg = Agg::parse(query.agg.as_deref().unwrap_or("avg")).map_err(|e| field("/agg", e))?;
    let (from, to) = range(&state, query.from.as_deref(), query.to.as_deref())?;
    let step = query.step.as_deref().map(step_micros).transpose()?;
    let window = Window::new(from.as_microsecond(), to.as_microsecond(), step)
        .map_err(|e| field("/step", e))?;
    let points = state
        .store
        .query_points(
            &key.tenant_id,
            PointQuery {
                name: name.clone(),
                account: query.account,
                labels,
                from,
                to,
            },
            state.config.limits.telemetry_query_max_points as usize,
        )
        .await?;
    let points = aggregate(&points, window, agg)
        .into_iter()
        .map(|(start, value)| MetricPointView {
            ts: Timestamp::from_microsecond(start)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            value,
        })
        .collect();
    Ok(Json(MetricSeries {
        metric: name,
        agg: agg.name().to_owned(),
        points,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_take_units() {
        assert_eq!(step_micros("30").unwrap(), 30_000_000);
        assert_eq!(step_micros("5m").unwrap(), 300_000_000);
        assert_eq!(step_micros("1d").unwrap(), 86_400_000_000);
        for bad in ["", "0", "5w", "m", "-5", "99999999999999999d"] {
            assert!(step_micros(bad).is_err(), "{bad}");
        }
    }
}
