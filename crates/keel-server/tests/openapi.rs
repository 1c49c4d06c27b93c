//! The OpenAPI document lists every status each route can answer (SPEC §0): a
//! walk over the served document, independent of the code that completes it.

mod common;

use common::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn every_route_documents_its_whole_status_set() {
    let app = spawn_app().await;
    let doc: Value = app.get_json("/openapi.json", &app.operator_key).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut needed = vec!["401", "414", "429", "431", "503"];
            if operation.get("requestBody").is_some() {
                needed.extend(["400", "408", "413", "415"]);
            }
            if !parameters.is_empty() {
                needed.push("400");
            }
            if parameters.iter().any(|p| p["in"] == "path") {
                needed.push("404");
            }
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                needed.push("403");
            }
            for status in needed {
                assert!(has(status), "{method} {path} lacks {status}");
            }
            for (status, response) in responses {
                let code: u16 = status.parse().unwrap();
                let otlp = method == "post" && (path == "/v1/logs" || path == "/v1/metrics");
                if code >= 400 && otlp && ["400", "413", "415"].contains(&status.as_str()) {
                    // OTLP/HTTP prescribes a google.rpc.Status body for its errors.
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/OtlpStatus",
                        "{method} {path} {status}"
                    );
                } else if code >= 400 {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                } else if code != 204 && code != 304 && method != "head" {
                    // (204, 304 and answers to HEAD have no body by definition.)
                    assert!(
                        response["content"]
                            .as_object()
                            .is_some_and(|c| !c.is_empty()),
                        "{method} {path} {status} has no schema"
                    );
                }
                if code == 429 || code == 503 {
                    assert!(response["headers"]["Retry-After"].is_object());
                }
            }
            let successes = responses.keys().filter(|s| s.starts_with('2')).count();
            assert!(successes >= 1, "{method} {path} documents no success");
            checked += 1;
        }
    }
    assert!(checked > 30, "walked only {checked} operations");
}
