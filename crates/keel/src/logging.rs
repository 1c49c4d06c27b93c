//! One place builds the tracing subscriber: JSON lines when output is not a
//! terminal (or `log_format = "json"`), human-readable on a terminal. The level
//! comes from `KEEL_LOG` (default `info`).

use std::io::IsTerminal;

use keel_server::request_log::{RequestLog, RequestLogFormat};
use tracing_subscriber::EnvFilter;

/// Whether log output should be JSON lines for this `log_format` setting.
pub fn wants_json(format: &str) -> bool {
    match format {
        "json" => true,
        "pretty" => false,
        _ => !std::io::stderr().is_terminal(),
    }
}

/// The per-request log (see `keel_server::request_log`), in the same format as the
/// rest and honouring `KEEL_LOG` for the `keel::request` target.
pub fn request_log(format: &str) -> RequestLog {
    let format = if !tracing::enabled!(target: "keel::request", tracing::Level::INFO) {
        RequestLogFormat::Off
    } else if wants_json(format) {
        RequestLogFormat::Json
    } else {
        RequestLogFormat::Pretty
    };
    RequestLog::new(format, Box::new(std::io::stderr()))
}

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = wants_json(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    // Already initialised (tests running commands in-process): keep the first.
    let _ = result;
}
