//! `keel_core::telemetry::otlp`: OTLP logs and metrics requests in protobuf and
//! OTLP/JSON, as `POST /v1/logs` and `POST /v1/metrics` decode them.
#![no_main]

use keel_core::telemetry::{otlp, MAX_LOG_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = jiff::Timestamp::UNIX_EPOCH;
    for encoding in [otlp::Encoding::Protobuf, otlp::Encoding::Json] {
        if let Ok(parsed) = otlp::decode_logs(data, encoding, now) {
            for line in &parsed.batch.logs {
                assert!(line.body.len() <= MAX_LOG_BYTES);
                if let Some(trace) = line.attributes.get("trace_id") {
                    assert_eq!(trace.as_str().map(str::len), Some(32));
                }
            }
        }
        if let Ok(parsed) = otlp::decode_metrics(data, encoding, now) {
            assert!(parsed.batch.points.iter().all(|p| p.value.is_finite()));
        }
    }
});
