//! The page shell every console page shares — navigation by what the key may
//! do, the theme, the sign-out form — and the pieces pages repeat: error pages,
//! pagers, number formatting, SVG charts drawn server-side.

use axum::{http::StatusCode, response::Response};
use keel_core::apikey::Scope;
use maud::{html, Markup, PreEscaped};

use super::{
    document::{document, html_response},
    session::Signed,
};
use crate::{
    problem::{ApiError, OwnErrorBody},
    routes::status::escape,
};

/// The console's sections, in the navigation's order, with the scope a key
/// needs to see each (the scope of the API routes behind it).
pub const SECTIONS: &[(&str, &str, Scope)] = &[
    ("Overview", "/console/overview", Scope::Operator),
    ("Queues", "/console/queues", Scope::Read),
    ("Topics", "/console/topics", Scope::Read),
    ("Collections", "/console/collections", Scope::Read),
    ("Counters", "/console/counters", Scope::Read),
    ("Buckets", "/console/buckets", Scope::Read),
    ("Logs", "/console/logs", Scope::Read),
    ("Metrics", "/console/metrics", Scope::Read),
    ("Monitors", "/console/monitors", Scope::Read),
    ("SLOs", "/console/slos", Scope::Read),
    ("Channels", "/console/channels", Scope::Read),
    ("Maintenance", "/console/maintenance", Scope::Read),
    ("Keys", "/console/keys", Scope::Admin),
    ("Audit", "/console/audit", Scope::Admin),
];

/// A signed-in page: the navigation, the title and `content`.
pub fn page(signed: &Signed, title: &str, content: Markup) -> Response {
    html_response(StatusCode::OK, shell(signed, title, content))
}

/// As [`page`], with another status (a form sent back with its errors).
pub fn page_with_status(
    status: StatusCode,
    signed: &Signed,
    title: &str,
    content: Markup,
) -> Response {
    html_response(status, shell(signed, title, content))
}

fn shell(signed: &Signed, title: &str, content: Markup) -> Markup {
    document(
        title,
        html! {
            a.skip href="#main" { "Skip to content" }
            header.top {
                a.brand href="/console" { "Keel" }
                nav aria-label="Sections" {
                    ul {
                        @for (name, href, scope) in SECTIONS {
                            @if signed.can(*scope) {
                                li {
                                    @if *name == title {
                                        a href=(href) aria-current="page" { (name) }
                                    } @else {
                                        a href=(href) { (name) }
                                    }
                                }
                            }
                        }
                    }
                }
                form.signout method="post" action="/console/sign-out" {
                    (csrf_field(signed))
                    span.who { "key " code { (signed.key.prefix) } }
                    button type="submit" { "Sign out" }
                }
            }
            main #main {
                h1 { (title) }
                (content)
            }
        },
    )
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.session.csrf); }
}

/// What an API error looks like inside a page.
pub fn error_notice(error: &ApiError) -> Markup {
    let fields = match error {
        ApiError::Validation { errors, .. } => errors.clone(),
        _ => Vec::new(),
    };
    html! {
        div.error role="alert" {
            p { (error.to_string()) }
            @if !fields.is_empty() {
                ul { @for f in &fields { li { code { (f.pointer) } " " (f.detail) } } }
            }
        }
    }
}

/// An API error as a whole page: the status the API route answered, the same words.
pub fn error_page(signed: &Signed, error: ApiError) -> Response {
    let status = error.status();
    let title = status.canonical_reason().unwrap_or("Error");
    let mut response = page_with_status(status, signed, title, error_notice(&error));
    if status.is_server_error() {
        tracing::warn!(error = %error, "console page failed");
    }
    response.extensions_mut().insert(OwnErrorBody);
    response
}

/// A "next page" link carrying the cursor and the view's other filters.
pub fn pager(path: &str, filters: &[(&str, &str)], next_cursor: Option<&str>) -> Markup {
    html! {
        @if let Some(cursor) = next_cursor {
            nav.pager aria-label="Pages" {
                a rel="next" href=(link(path, filters, Some(("cursor", cursor)))) { "Next page →" }
            }
        }
    }
}

/// `path?k=v&…` with the non-empty filters (a view's URL is its state, so it can be shared).
pub fn link(path: &str, filters: &[(&str, &str)], extra: Option<(&str, &str)>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in filters.iter().chain(extra.iter()) {
        if !v.is_empty() {
            query.append_pair(k, v);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// A path segment, percent-encoded.
pub fn seg(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Requests (or any count) per minute over a window, as inline SVG columns (no
/// script, no external file) with a text alternative; minutes without a
/// sample are drawn as zero, so the time axis is even.
pub fn minute_chart(
    label: &str,
    first_minute: i64,
    minutes: i64,
    samples: &[(i64, f64)],
) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 120.0;
    let minutes = minutes.max(1);
    let max = samples.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let width = W / minutes as f64;
    let mut bars = String::new();
    for (minute, v) in samples {
        let i = minute - first_minute;
        if !(0..minutes).contains(&i) || *v <= 0.0 {
            continue;
        }
        let h = (v / max * (H - 4.0)).max(1.0);
        let at = jiff::Timestamp::from_second(minute * 60)
            .map(|t| t.strftime("%H:%M").to_string())
            .unwrap_or_default();
        bars.push_str(&format!(
            r#"<rect class="bar" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}"><title>{at}: {v}</title></rect>"#,
            i as f64 * width,
            H - h,
            (width * 0.8).max(0.5),
        ));
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none" role="img"
                aria-label=(format!("{label}: at most {max} in a minute")) {
                (PreEscaped(bars))
            }
            figcaption { (label) " — " (minutes) " minutes, at most " (max) " a minute" }
        }
    }
}

/// One column per point, in order (a metric's steps that hold points), as
/// inline SVG with each point's time and value in its title.
pub fn series_chart(label: &str, points: &[(String, f64)]) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 120.0;
    let low = points.iter().map(|(_, v)| *v).fold(0.0, f64::min);
    let high = points.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let span = (high - low).max(f64::EPSILON);
    let width = W / points.len().max(1) as f64;
    let mut bars = String::new();
    for (i, (at, v)) in points.iter().enumerate() {
        let h = ((v - low) / span * (H - 4.0)).max(1.0);
        bars.push_str(&format!(
            r#"<rect class="bar" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}"><title>{}: {v}</title></rect>"#,
            i as f64 * width,
            H - h,
            (width * 0.8).max(0.5),
            escape(at),
        ));
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none" role="img"
                aria-label=(format!("{label}: from {low} to {high}")) {
                (PreEscaped(bars))
            }
            figcaption { (label) " — " (points.len()) " steps, " (low) " to " (high) }
        }
    }
}

/// Labelled horizontal bars (one per row: name, value), as inline SVG.
pub fn labelled_bars(label: &str, rows: &[(String, f64)], unit: &str) -> Markup {
    const W: f64 = 720.0;
    const ROW: f64 = 22.0;
    const LABEL: f64 = 300.0;
    let max = rows.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let h = ROW * rows.len().max(1) as f64;
    let mut out = String::new();
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let len = if max > 0.0 {
            v / max * (W - LABEL - 90.0)
        } else {
            0.0
        };
        out.push_str(&format!(
            r#"<text class="label" x="0" y="{:.1}">{}</text><rect class="bar" x="{LABEL}" y="{:.1}" width="{len:.1}" height="{:.1}"></rect><text class="value" x="{:.1}" y="{:.1}">{v:.2}{}</text>"#,
            y + 15.0,
            escape(&shorten(name, 44)),
            y + 4.0,
            ROW - 8.0,
            LABEL + len + 6.0,
            y + 15.0,
            escape(unit),
        ));
    }
    html! {
        figure.chart {
            svg.rows viewBox=(format!("0 0 {W} {h}")) role="img" aria-label=(label) {
                (PreEscaped(out))
            }
            figcaption { (label) }
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
