//! `keel_core::telemetry::simple`: the `POST /v1/telemetry` body as JSON and as
//! NDJSON, and an object's content as `telemetry-import` reads it.
#![no_main]

use keel_core::telemetry::{simple, MAX_LOG_BYTES, MAX_NAME_BYTES};
use libfuzzer_sys::fuzz_target;

fn check(parsed: &keel_core::telemetry::Parsed) {
    for line in &parsed.batch.logs {
        assert!(line.body.len() <= MAX_LOG_BYTES);
        assert!(line.level.len() <= MAX_NAME_BYTES && line.account.len() <= MAX_NAME_BYTES);
    }
    for point in &parsed.batch.points {
        assert!(point.value.is_finite());
        assert!(keel_core::telemetry::check_metric_name(&point.name).is_ok());
        assert!(point
            .labels
            .iter()
            .all(|(k, v)| k.len() <= MAX_NAME_BYTES && v.len() <= MAX_NAME_BYTES));
    }
    assert!(parsed.rejected.errors.len() as u64 <= parsed.rejected.count);
}

fuzz_target!(|data: &[u8]| {
    let now = jiff::Timestamp::UNIX_EPOCH;
    if let Ok(parsed) = simple::parse(data, simple::Framing::Json, now) {
        check(&parsed);
    }
    let ndjson =
        simple::parse(data, simple::Framing::Ndjson, now).expect("NDJSON never fails whole");
    check(&ndjson);
    // Every non-blank line is either rows or a rejection.
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    assert!(ndjson.rejected.count as usize <= lines);
    check(&simple::parse_import(data, now));
});
