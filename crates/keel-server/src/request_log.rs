//! One log line per request (SPEC §8), written off the request path.
//!
//! The edge formats each line into a shared buffer; a writer thread hands the
//! buffer to the output every [`FLUSH_INTERVAL`] (or sooner once it is large), so a
//! busy server makes one write per batch instead of one syscall per request, and
//! no request waits on a slow terminal or pipe. Lines still buffered when the
//! process is killed with SIGKILL are lost (logs, never data); shutdown flushes.
//! Everything else Keel logs goes through `tracing` as usual.

use std::{
    fmt::Write as _,
    io::Write,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use jiff::Timestamp;

const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const EAGER_FLUSH_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Aligned, human-readable (for a terminal).
    Pretty,
    /// No request lines at all.
    Off,
}

/// What a request log line says.
pub struct RequestLine<'a> {
    pub at: Timestamp,
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_micros: u64,
    pub tenant: &'a str,
}

struct Shared {
    buffer: Mutex<Vec<u8>>,
    full: Condvar,
}

pub struct RequestLog {
    format: RequestLogFormat,
    shared: Arc<Shared>,
    output: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl RequestLog {
    /// Starts the writer thread; it ends when the log is dropped.
    pub fn new(format: RequestLogFormat, output: Box<dyn Write + Send>) -> Self {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(EAGER_FLUSH_BYTES)),
            full: Condvar::new(),
        });
        let output = Arc::new(Mutex::new(output));
        if format != RequestLogFormat::Off {
            let (weak, output) = (Arc::downgrade(&shared), output.clone());
            std::thread::Builder::new()
                .name("keel-request-log".into())
                .spawn(move || loop {
                    let Some(shared) = weak.upgrade() else { return };
                    let batch = {
                        let buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
                        let (mut buffer, _) = shared
                            .full
                            .wait_timeout(buffer, FLUSH_INTERVAL)
                            .unwrap_or_else(|e| e.into_inner());
                        std::mem::take(&mut *buffer)
                    };
                    drop(shared);
                    write_batch(&output, &batch);
                })
                .expect("spawn the request log writer");
        }
        Self {
            format,
            shared,
            output,
        }
    }

    pub fn off() -> Self {
        Self::new(RequestLogFormat::Off, Box::new(std::io::sink()))
    }

    pub fn record(&self, line: &RequestLine<'_>) {
        if self.format == RequestLogFormat::Off {
            return;
        }
        let mut text = String::with_capacity(224);
        match self.format {
            RequestLogFormat::Json => format_json(&mut text, line),
            RequestLogFormat::Pretty => format_pretty(&mut text, line),
            RequestLogFormat::Off => return,
        }
        let mut buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(text.as_bytes());
        if buffer.len() >= EAGER_FLUSH_BYTES {
            self.shared.full.notify_one();
        }
    }

    /// Writes out everything buffered now (on shutdown).
    pub fn flush(&self) {
        let batch =
            std::mem::take(&mut *self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        write_batch(&self.output, &batch);
    }
}

fn write_batch(output: &Mutex<Box<dyn Write + Send>>, batch: &[u8]) {
    if batch.is_empty() {
        return;
    }
    let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
    let _ = out.write_all(batch);
    let _ = out.flush();
}

fn format_json(out: &mut String, line: &RequestLine<'_>) {
    out.push_str("{\"timestamp\":\"");
    let _ = write!(out, "{:.6}", line.at);
    out.push_str("\",\"level\":\"INFO\",\"target\":\"keel::request\",\"request_id\":");
    push_json_string(out, line.request_id);
    out.push_str(",\"method\":");
    push_json_string(out, line.method);
    out.push_str(",\"route\":");
    push_json_string(out, line.route);
    let _ = write!(
        out,
        ",\"status\":{},\"latency_ms\":{:.3},\"tenant\":",
        line.status,
        line.latency_micros as f64 / 1000.0
    );
    push_json_string(out, line.tenant);
    out.push_str("}\n");
}

fn format_pretty(out: &mut String, line: &RequestLine<'_>) {
    let _ = writeln!(
        out,
        "{:.3} {:<6} {:<32} {} {:>8.3} ms  tenant={} id={}",
        line.at,
        line.method,
        line.route,
        line.status,
        line.latency_micros as f64 / 1000.0,
        line.tenant,
        line.request_id
    );
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // Ids, routes and tenants almost never need escaping: copy them whole.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let capture = Capture::default();
        let log = RequestLog::new(RequestLogFormat::Json, Box::new(capture.clone()));
        log.record(&RequestLine {
            at: "2026-01-02T03:04:05.123456Z".parse().unwrap(),
            request_id: "a\"b\\c",
            method: "GET",
            route: "/hello/{username}",
            status: 200,
            latency_micros: 1234,
            tenant: "-",
        });
        log.flush();
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1);
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["request_id"], "a\"b\\c");
        assert_eq!(line["route"], "/hello/{username}");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.234);
        assert_eq!(line["timestamp"], "2026-01-02T03:04:05.123456Z");
    }

    #[test]
    fn the_writer_thread_flushes_by_itself() {
        let capture = Capture::default();
        let log = RequestLog::new(RequestLogFormat::Pretty, Box::new(capture.clone()));
        log.record(&RequestLine {
            at: Timestamp::now(),
            request_id: "r1",
            method: "PUT",
            route: "/v1/current",
            status: 400,
            latency_micros: 10,
            tenant: "t",
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while capture.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(String::from_utf8(capture.0.lock().unwrap().clone())
            .unwrap()
            .contains("/v1/current"));
    }
}
