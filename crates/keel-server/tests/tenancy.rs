//! SPEC §1 through HTTP: /v1/me, key management, operator routes, the audit trail,
//! and cross-tenant attempts answering 404.

mod common;

use common::{expect_problem, spawn_app, Bearer, ExpectProblem};
use reqwest::Method;
use serde_json::{json, Value};

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    response.json().await.unwrap()
}

#[tokio::test]
async fn me_names_tenant_and_key() {
    let app = spawn_app().await;
    let key = app.register("me@example.com").await;
    let me = json_of(app.get("/v1/me").key(&key).send().await.unwrap(), 200).await;
    assert_eq!(me["tenant"]["name"], "me@example.com");
    assert_eq!(me["key"]["scopes"], json!(["read", "write", "admin"]));
    assert!(key.contains(me["key"]["prefix"].as_str().unwrap()));
    app.get("/v1/me").problem(401).await;
}

#[tokio::test]
async fn tenant_admins_list_create_and_revoke_their_keys() {
    let app = spawn_app().await;
    let admin = app.register("admin@example.com").await;
    let created = json_of(
        app.post_json("/v1/keys", json!({"scopes": ["read", "write"]}))
            .key(&admin)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let new_key = created["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/v1/next")
            .key(&new_key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let list = json_of(app.get("/v1/keys").key(&admin).send().await.unwrap(), 200).await;
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .all(|k| k.get("api_key").is_none() && k["prefix"].is_string()));
    assert!(
        !list.to_string().contains(&new_key),
        "listing never shows a secret"
    );

    let paged = json_of(
        app.get("/v1/keys?limit=1")
            .key(&admin)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(paged["keys"].as_array().unwrap().len(), 1);
    let cursor = paged["next_cursor"].as_str().unwrap();
    let rest = json_of(
        app.get(&format!("/v1/keys?limit=1&cursor={cursor}"))
            .key(&admin)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(rest["keys"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    app.get("/v1/keys?limit=0").key(&admin).problem(400).await;
    app.get("/v1/keys?limit=1001")
        .key(&admin)
        .problem(400)
        .await;

    let revoked = app
        .request(Method::DELETE, &format!("/v1/keys/{prefix}"))
        .key(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    app.get("/v1/next").key(&new_key).problem(401).await;
    app.request(Method::DELETE, &format!("/v1/keys/{prefix}"))
        .key(&admin)
        .problem(404)
        .await;

    // Tenant admins cannot mint operators; non-admins cannot manage keys.
    app.post_json("/v1/keys", json!({"scopes": ["operator"]}))
        .key(&admin)
        .problem(403)
        .await;
    app.post_json("/v1/keys", json!({"scopes": ["root"]}))
        .key(&admin)
        .problem(400)
        .await;
    let writer = json_of(
        app.post_json("/v1/keys", json!({}))
            .key(&admin)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let writer = writer["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get("/v1/keys").key(&writer).problem(403).await;
    app.post_json("/v1/keys", json!({}))
        .key(&writer)
        .problem(403)
        .await;
}

#[tokio::test]
async fn another_tenants_keys_are_not_found() {
    let app = spawn_app().await;
    let mine = app.register("mine@example.com").await;
    let theirs = app.register("theirs@example.com").await;
    let my_prefix = json_of(app.get("/v1/me").key(&mine).send().await.unwrap(), 200).await["key"]
        ["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempt = app
        .request(Method::DELETE, &format!("/v1/keys/{my_prefix}"))
        .key(&theirs)
        .send()
        .await
        .unwrap();
    expect_problem(attempt, 404).await;
    assert_eq!(
        app.get("/v1/me").key(&mine).send().await.unwrap().status(),
        200,
        "still alive"
    );
    let their_list = json_of(app.get("/v1/keys").key(&theirs).send().await.unwrap(), 200).await;
    assert!(!their_list.to_string().contains(&my_prefix));
}

#[tokio::test]
async fn operators_manage_tenants_and_their_keys() {
    let app = spawn_app().await;
    let op = app.operator_key.clone();
    let tenant = json_of(
        app.post_json("/v1/admin/tenants", json!({"name": "acme"}))
            .key(&op)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let tenant_id = tenant["id"].as_str().unwrap();
    let key = json_of(
        app.post_json(
            "/v1/admin/keys",
            json!({"tenant_id": tenant_id, "scopes": ["read", "write", "admin"]}),
        )
        .key(&op)
        .send()
        .await
        .unwrap(),
        201,
    )
    .await;
    let acme_key = key["api_key"].as_str().unwrap();
    let me = json_of(app.get("/v1/me").key(acme_key).send().await.unwrap(), 200).await;
    assert_eq!(me["tenant"]["id"], tenant_id);
    assert_eq!(me["tenant"]["name"], "acme");

    let tenants = json_of(
        app.get("/v1/admin/tenants").key(&op).send().await.unwrap(),
        200,
    )
    .await;
    assert!(tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "acme"));
    app.post_json("/v1/admin/keys", json!({"tenant_id": "no-such-tenant"}))
        .key(&op)
        .problem(404)
        .await;
    app.post_json("/v1/admin/tenants", json!({"name": "  "}))
        .key(&op)
        .problem(400)
        .await;
    // A tenant admin is not an operator.
    app.post_json("/v1/admin/tenants", json!({"name": "x"}))
        .key(acme_key)
        .problem(403)
        .await;
    app.get("/v1/admin/tenants")
        .key(acme_key)
        .problem(403)
        .await;
    app.get("/v1/admin/tenants").problem(401).await;
}

#[tokio::test]
async fn the_audit_trail_records_mutations_and_auth_failures() {
    let app = spawn_app().await;
    let key = app.register("audited@example.com").await;
    let prefix = json_of(app.get("/v1/me").key(&key).send().await.unwrap(), 200).await["key"]
        ["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get("/v1/counters/orders/next")
        .key(&key)
        .header("x-request-id", "req-next-1")
        .send()
        .await
        .unwrap();
    app.put_json("/v1/current", json!({"current": -5}))
        .key(&key)
        .send()
        .await
        .unwrap();
    app.get("/v1/current").key(&key).send().await.unwrap(); // a read: not audited
                                                            // A wrong secret for a real prefix is audited under that tenant.
    let forged = format!("keel_{prefix}_{}", "0".repeat(40));
    assert_eq!(
        app.get("/v1/current")
            .key(&forged)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let trail = json_of(app.get("/v1/audit").key(&key).send().await.unwrap(), 200).await;
    let events = trail["events"].as_array().unwrap();
    let summary: Vec<(String, String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().into(),
                e["route"].as_str().unwrap().into(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = |method: &str, route: &str, status: u64| {
        assert!(
            summary.contains(&(method.into(), route.into(), status)),
            "{method} {route} {status} not in {summary:?}"
        );
    };
    expect("POST", "/v1/users", 201);
    expect("GET", "/v1/counters/{name}/next", 200);
    expect("PUT", "/v1/current", 400);
    expect("GET", "/v1/current", 401);
    assert!(
        !summary.contains(&("GET".into(), "/v1/current".into(), 200)),
        "reads are not audited"
    );
    let next = events
        .iter()
        .find(|e| e["route"] == "/v1/counters/{name}/next")
        .unwrap();
    assert_eq!(next["key_prefix"], prefix.as_str());
    assert_eq!(next["resource_id"], "orders");
    assert_eq!(next["request_id"], "req-next-1");
    assert_eq!(next["source"], "127.0.0.1");
    assert!(next["at"].is_string());
    // Newest first.
    assert_eq!(events[0]["status"], 401);
    app.get("/v1/audit?cursor=nonsense")
        .key(&key)
        .problem(400)
        .await;

    // Another tenant's trail does not include any of it; non-admins cannot read it.
    let other = app.register("other@example.com").await;
    let theirs = json_of(app.get("/v1/audit").key(&other).send().await.unwrap(), 200).await;
    assert!(!theirs.to_string().contains(&prefix));
    let reader = json_of(
        app.post_json("/v1/keys", json!({"scopes": ["read"]}))
            .key(&key)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let reader = reader["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get("/v1/audit").key(&reader).problem(403).await;
}

#[tokio::test]
async fn key_use_is_recorded() {
    let app = spawn_app().await;
    let key = app.register("used@example.com").await;
    app.get("/v1/current").key(&key).send().await.unwrap();
    app.state.flush().await;
    let list = json_of(app.get("/v1/keys").key(&key).send().await.unwrap(), 200).await;
    assert!(list["keys"][0]["last_used_at"].is_string(), "{list}");
}

#[tokio::test]
async fn cursors_are_opaque_and_work_only_where_issued() {
    let app = spawn_app().await;
    let a = app.register("cursor-a@example.com").await;
    let b = app.register("cursor-b@example.com").await;
    for _ in 0..3 {
        app.request(Method::PUT, "/v1/topics/t")
            .key(&a)
            .send()
            .await
            .unwrap();
        app.request(Method::PUT, "/v1/topics/t")
            .key(&b)
            .send()
            .await
            .unwrap();
    }
    let first: Value = app.get_json("/v1/audit?limit=1", &a).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // No row number or id shows through.
    assert!(!cursor.chars().all(|c| c.is_ascii_digit()), "{cursor}");
    assert!(cursor.len() >= 30, "{cursor}");
    let second: Value = app
        .get_json(&format!("/v1/audit?limit=1&cursor={cursor}"), &a)
        .await;
    assert_eq!(second["events"].as_array().unwrap().len(), 1);
    assert_ne!(second["events"][0]["id"], first["events"][0]["id"]);
    // Another tenant, or another listing, cannot use it.
    app.get(&format!("/v1/audit?limit=1&cursor={cursor}"))
        .key(&b)
        .problem(400)
        .await;
    app.get(&format!("/v1/keys?limit=1&cursor={cursor}"))
        .key(&a)
        .problem(400)
        .await;
}
