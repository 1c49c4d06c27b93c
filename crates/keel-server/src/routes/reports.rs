//! `GET /v1/reports/uptime?period=YYYY-MM` (SPEC §7): the month's report as
//! JSON, or as CSV with `format=csv` or `Accept: text/csv`.

use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    Json,
};
use keel_core::{apikey::Scope, FieldError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    auth::Authed,
    extract::Query,
    problem::{ApiError, ApiResult, Problem},
    reports,
    state::AppState,
};

#[derive(Deserialize, IntoParams)]
pub struct ReportQuery {
    /// The month, `YYYY-MM`, in the server's time zone.
    pub period: String,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Per monitor and SLO: uptime, objective, met or missed, downtime, incidents.
#[utoipa::path(get, path = "/v1/reports/uptime", tag = "uptime", security(("bearer" = [])),
    params(ReportQuery),
    responses((status = 200, description = "The report (JSON, or CSV with format=csv)",
               content((crate::reports::UptimeReport = "application/json"), (String = "text/csv"))),
              (status = 400, body = Problem)))]
pub async fn uptime_report(
    State(state): State<AppState>,
    Authed(key): Authed,
    headers: HeaderMap,
    Query(query): Query<ReportQuery>,
) -> ApiResult<Response> {
    key.require(Scope::Read)?;
    let month = reports::parse_period(&query.period)
        .map_err(|why| ApiError::field(FieldError::new("/period", why)))?;
    let csv = match query.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        None => headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
        Some(other) => {
            return Err(ApiError::field(FieldError::new(
                "/format",
                format!("{other:?}: expected json or csv"),
            )))
        }
    };
    let report = reports::uptime_report(
        &*state.store,
        &key.tenant_id,
        month,
        &state.config.time_zone,
        state.clock.now(),
    )
    .await?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.to_csv(),
        )
            .into_response()
    } else {
        Json(report).into_response()
    })
}
