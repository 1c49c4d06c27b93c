//! Telemetry helpers shared by the telemetry and OTLP test files.

use std::io::Write;

use serde_json::Value;

use super::TestApp;

pub const FROM: &str = "2024-06-15T00:00:00Z";
pub const TO: &str = "2024-06-16T00:00:00Z";

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub async fn logs(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let found = app
        .get_json(&format!("/v1/logs?from={FROM}&to={TO}&{query}"), key)
        .await;
    found["logs"].as_array().unwrap().clone()
}

pub fn bodies(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["log"].as_str().unwrap()).collect()
}
