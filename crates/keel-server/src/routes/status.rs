//! The public status page and badges (SPEC §7), readable without a key and
//! without JavaScript: `GET /status/{tenant}` (tenant id or name) shows each
//! public monitor's state with 90 daily uptime bars and the maintenance windows
//! on now or within a week; `GET /status/{tenant}/monitors/{id}/badge.svg`
//! draws a public monitor's uptime over `window` (default 30d).
//!
//! Only monitors marked `public` appear; anything else answers 404, as an
//! unknown tenant does, so the page reveals nothing a tenant did not publish.
//! The HTML is written here with every user-given text escaped ([`escape`]);
//! the console (issue 11) brings a template engine for the pages behind keys.

use std::fmt::Write as _;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use jiff::Timestamp;
use keel_core::uptime::{Grain, Tally};
use keel_store::{monitors::StoredMonitor, PageRequest, StoreResult, TenantId};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    extract::{PathParams, Query},
    problem::{ApiError, ApiResult, Problem},
    state::AppState,
};

const BAR_DAYS: i64 = 90;

/// Text made safe for HTML and SVG, in content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tenant by id, else by name; `None` for neither.
async fn find_tenant(state: &AppState, wanted: &str) -> StoreResult<Option<keel_store::Tenant>> {
    if let Some(t) = state.store.tenant(&TenantId(wanted.to_owned())).await? {
        return Ok(Some(t));
    }
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list_tenants(PageRequest { limit: 500, cursor })
            .await?;
        if let Some(t) = page.items.into_iter().find(|t| t.name == wanted) {
            return Ok(Some(t));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
}

async fn public_monitors(state: &AppState, tenant: &TenantId) -> StoreResult<Vec<StoredMonitor>> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list_monitors(tenant, PageRequest { limit: 500, cursor })
            .await?;
        all.extend(page.items.into_iter().filter(|m| m.spec.public));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such status page".into())
}

/// Colour of a day or a badge by its uptime.
fn shade(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => "#9ca3af",
        Some(u) if u >= 99.9 => "#16a34a",
        Some(u) if u >= 99.0 => "#84cc16",
        Some(u) if u >= 95.0 => "#f59e0b",
        Some(_) => "#dc2626",
    }
}

pub(crate) fn uptime_text(uptime: Option<f64>) -> String {
    uptime.map_or("no data".into(), |u| {
        format!("{:.2}%", (u * 100.0).floor() / 100.0)
    })
}

/// A monitor's last 90 days as SVG bars (one `<rect>` per day, coloured by its
/// uptime, titled with the date and figure) and the 90 days' total: the public
/// status page and the console draw the same bars.
pub(crate) async fn ninety_day_bars(
    state: &AppState,
    tenant: &TenantId,
    monitor_id: &str,
    now: Timestamp,
) -> StoreResult<(String, Tally)> {
    let today = Grain::Day.bucket(now.as_microsecond());
    let first_day = today - (BAR_DAYS - 1) * Grain::Day.micros();
    let days = state
        .store
        .monitor_tallies(
            tenant,
            monitor_id,
            Grain::Day,
            first_day,
            today + Grain::Day.micros(),
        )
        .await?;
    let mut total = Tally::default();
    let mut bars = String::new();
    for n in 0..BAR_DAYS {
        let day = first_day + n * Grain::Day.micros();
        let tally = days.iter().find(|(at, _)| *at == day).map(|(_, t)| t);
        if let Some(t) = tally {
            total.merge(t);
        }
        let uptime = tally.and_then(Tally::uptime_percent);
        let date = Timestamp::from_microsecond(day)
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let maintenance = tally.map_or(0, |t| t.maintenance);
        let note = if maintenance > 0 {
            format!(", {maintenance} checks in maintenance")
        } else {
            String::new()
        };
        let _ = write!(
            bars,
            "<rect x=\"{}\" width=\"6\" height=\"28\" rx=\"1\" fill=\"{}\"><title>{date}: {}{note}</title></rect>",
            n * 8,
            shade(uptime),
            uptime_text(uptime)
        );
    }
    Ok((bars, total))
}

/// The width of [`ninety_day_bars`]' drawing.
pub(crate) const BARS_WIDTH: i64 = BAR_DAYS * 8 - 2;

/// A public status page: current state and 90-day uptime bars.
#[utoipa::path(get, path = "/status/{tenant}", tag = "uptime",
    params(("tenant" = String, Path, description = "Tenant id or name")),
    responses((status = 200, description = "The status page", content_type = "text/html"),
              (status = 404, body = Problem)))]
pub async fn status_page(
    State(state): State<AppState>,
    PathParams(wanted): PathParams<String>,
) -> ApiResult<Response> {
    let tenant = find_tenant(&state, &wanted).await?.ok_or_else(not_found)?;
    let monitors = public_monitors(&state, &tenant.id).await?;
    let now = state.clock.now();
    let mut rows = String::new();
    let mut all_up = true;
    for m in &monitors {
        let (bars, total) = ninety_day_bars(&state, &tenant.id, &m.id, now).await?;
        let status = m.state.status.as_str();
        all_up &= status != "down";
        let _ = write!(
            rows,
            "<section class=\"monitor\"><h2><span class=\"dot {status}\" aria-hidden=\"true\"></span>{name} \
             <small>{status}</small></h2>\
             <p>{uptime} over 90 days</p>\
             <svg role=\"img\" aria-label=\"90 days of uptime for {name}\" viewBox=\"0 0 {width} 28\" width=\"100%\" height=\"28\" preserveAspectRatio=\"none\">{bars}</svg>\
             <p class=\"axis\"><span>90 days ago</span><span>today</span></p></section>",
            name = escape(&m.spec.name),
            uptime = uptime_text(total.uptime_percent()),
            width = BARS_WIDTH,
        );
    }
    let windows = state.store.list_windows(&tenant.id).await?;
    let soon = now + jiff::SignedDuration::from_hours(24 * 7);
    let mut maintenance = String::new();
    for w in &windows {
        let active = w.spec.covers(now, &state.config.time_zone);
        let when = match (&w.spec.starts_at, &w.spec.ends_at, &w.spec.recurring) {
            (Some(s), Some(e), _) if *e > now && *s < soon => format!("{s} to {e}"),
            (_, _, Some(r)) => format!(
                "every {} at {} ({}) for {} minutes",
                r.weekdays.join(", "),
                r.start,
                w.spec.time_zone.as_deref().unwrap_or("UTC"),
                r.duration_minutes
            ),
            _ => continue,
        };
        let _ = write!(
            maintenance,
            "<li>{}<strong>{}</strong>: {}</li>",
            if active { "<em>now</em> " } else { "" },
            escape(&w.spec.name),
            escape(&when)
        );
    }
    let maintenance = if maintenance.is_empty() {
        String::new()
    } else {
        format!(
            "<section class=\"maintenance\"><h2>Maintenance</h2><ul>{maintenance}</ul></section>"
        )
    };
    let headline = if monitors.is_empty() {
        "No public monitors"
    } else if all_up {
        "All systems operational"
    } else {
        "Some systems are down"
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{tenant} status</title><style>{STYLE}</style></head><body><main>\
         <h1>{tenant} status</h1><p class=\"headline {class}\">{headline}</p>{maintenance}{rows}\
         <footer>Updated {now}</footer></main></body></html>",
        tenant = escape(&tenant.name),
        class = if all_up { "up" } else { "down" },
        now = now.strftime("%Y-%m-%d %H:%M UTC"),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=30"),
        ],
        page,
    )
        .into_response())
}

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,sans-serif;background:#fff;color:#111}\
main{max-width:760px;margin:0 auto;padding:2rem 1rem}h1{font-size:1.6rem}\
.headline{padding:.75rem 1rem;border-radius:6px;font-weight:600;color:#fff}\
.headline.up{background:#15803d}.headline.down{background:#b91c1c}\
.monitor{margin:1.5rem 0}.monitor h2{font-size:1.1rem;margin:0}.monitor p{margin:.25rem 0;color:#444}\
.dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;margin-right:.5rem;background:#9ca3af}\
.dot.up{background:#16a34a}.dot.down{background:#dc2626}.dot.maintenance{background:#2563eb}\
.axis{display:flex;justify-content:space-between;font-size:.8rem}\
footer{margin-top:2rem;font-size:.8rem;color:#555}\
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}.monitor p,footer{color:#bbb}}";

#[derive(Deserialize, IntoParams)]
pub struct BadgeQuery {
    /// `1h` … `400d`; default `30d`.
    pub window: Option<String>,
}

/// An SVG badge with a public monitor's uptime over `window`.
#[utoipa::path(get, path = "/status/{tenant}/monitors/{id}/badge.svg", tag = "uptime",
    params(("tenant" = String, Path), ("id" = String, Path), BadgeQuery),
    responses((status = 200, description = "The badge", content_type = "image/svg+xml"),
              (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn badge(
    State(state): State<AppState>,
    PathParams((wanted, id)): PathParams<(String, String)>,
    Query(query): Query<BadgeQuery>,
) -> ApiResult<Response> {
    let window = query.window.unwrap_or_else(|| "30d".into());
    let span = super::uptime::parse_window(&window).map_err(ApiError::field)?;
    let tenant = find_tenant(&state, &wanted).await?.ok_or_else(not_found)?;
    let monitor = state
        .store
        .monitor(&tenant.id, &id)
        .await?
        .filter(|m| m.spec.public)
        .ok_or_else(not_found)?;
    let now = state.clock.now().as_microsecond();
    let (_, all) = super::uptime::window_tally(&state, &tenant.id, &monitor.id, span, now).await?;
    let uptime = all.uptime_percent();
    let (label, value) = (format!("uptime {}", escape(&window)), uptime_text(uptime));
    // Widths from a fixed per-character estimate: Verdana 11px averages ~7px.
    let (lw, vw) = (label.len() as u32 * 7 + 10, value.len() as u32 * 7 + 10);
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{label}: {value}\">\
         <title>{label}: {value}</title><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{colour}\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
         <text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{vx}\" y=\"14\">{value}</text></g></svg>",
        w = lw + vw,
        colour = shade(uptime),
        lx = lw / 2,
        vx = lw + vw / 2,
    );
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        svg,
    )
        .into_response())
}
