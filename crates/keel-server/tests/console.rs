//! The console's sessions over HTTP (SPEC §12): browsers sent from `/` to the
//! console, sign-in with a key or an owner's email and password (nonce-guarded,
//! rate-limited, audited), the session cookie's attributes, CSRF tokens on every
//! change, security headers, revocation and sign-out ending sessions. What the
//! pages show, to whom, is `console_pages.rs`; the browser test is
//! `console_browser.rs`.

mod common;

use common::{
    console::{csrf_of, location, Visitor},
    spawn_app, spawn_app_with, Bearer, TestApp,
};
use reqwest::header;
use serde_json::json;

#[tokio::test]
async fn browsers_are_sent_to_the_console_and_pages_need_a_session() {
    let app = spawn_app().await;
    let visitor = Visitor::new(&app);
    let root = visitor.get("/").await;
    assert_eq!(root.status(), 303);
    assert_eq!(location(&root), "/console");
    // API clients keep their problem documents.
    let api = app.get("/").send().await.unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(
        api.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );

    // Without a session every page sends the browser to sign in, and back.
    for path in [
        "/console",
        "/console/overview",
        "/console/queues",
        "/console/queues/t/q",
        "/console/topics",
        "/console/collections",
        "/console/collections/orders",
        "/console/collections/orders/1",
        "/console/counters",
        "/console/keys",
        "/console/audit",
        "/console/monitors",
        "/console/monitors/m1",
        "/console/slos",
        "/console/buckets",
        "/console/buckets/b",
        "/console/buckets/b/download/k",
        "/console/logs",
        "/console/metrics",
        "/console/channels",
        "/console/maintenance",
    ] {
        let response = visitor.get(path).await;
        assert_eq!(response.status(), 303, "{path}");
        let to = location(&response);
        assert!(to.starts_with("/console/sign-in?next="), "{path} → {to}");
    }
    for path in [
        "/console/sign-out",
        "/console/subscriptions",
        "/console/queues/t/q/redrive",
        "/console/keys",
        "/console/keys/revoke",
        "/console/counters",
        "/console/incidents/i1",
        "/console/buckets/b/upload",
    ] {
        let response = visitor.post(path, &[("csrf", "x")]).await;
        assert_eq!(response.status(), 303, "POST {path}");
        assert!(
            location(&response).starts_with("/console/sign-in"),
            "POST {path}"
        );
    }
    // A bearer key alone opens no page: the console is for sessions.
    let bearer = app
        .get("/console/queues")
        .key(&app.operator_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.url().path(), "/console/sign-in", "sent to sign in");

    // Only the sign-in page and the stylesheet are served without one.
    let (status, html) = visitor.page("/console/sign-in").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<label for=\"key\">API key</label>"),
        "{html}"
    );
    let css = visitor.get("/console/static/console.css").await;
    assert_eq!(css.status(), 200);
    assert!(css
        .text()
        .await
        .unwrap()
        .contains("prefers-color-scheme: dark"));
}

#[tokio::test]
async fn a_session_acts_as_its_key_until_sign_out() {
    let app = spawn_app().await;
    let key = app.register("owner@example.com").await;
    let visitor = Visitor::new(&app);
    let signed = visitor.sign_in(&key).await;
    assert_eq!(signed.status(), 303);
    assert_eq!(location(&signed), "/console");
    let cookie = signed
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("keel_session="))
        .expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure");

    // A tenant owner has no operator scope: home is the queues page.
    let home = visitor.get("/console").await;
    assert_eq!(location(&home), "/console/queues");
    let page = visitor.get("/console/queues").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("/console/overview"),
        "the overview needs the operator scope"
    );
    assert!(!html.contains("<script"), "no script on any page");
    let csrf = csrf_of(&html).unwrap();

    // A change without the CSRF token is refused, with it it is made, through
    // the same validation as the API.
    let form = [
        ("topic", "orders"),
        ("name", "audit"),
        ("target", "store"),
        ("collection", "orders"),
    ];
    let refused = visitor.post("/console/subscriptions", &form).await;
    assert_eq!(refused.status(), 403);
    let mut with_token = form.to_vec();
    with_token.push(("csrf", &csrf));
    let made = visitor.post("/console/subscriptions", &with_token).await;
    assert_eq!(made.status(), 303, "{}", made.text().await.unwrap());
    let saved = app
        .get_json("/v1/topics/orders/subscriptions/audit", &key)
        .await;
    assert_eq!(
        saved["target"],
        json!({"type": "store", "collection": "orders"})
    );
    let bad = visitor
        .post(
            "/console/subscriptions",
            &[
                ("csrf", &csrf),
                ("topic", "orders"),
                ("name", "x"),
                ("target", "webhook"),
                ("url", "ftp://no"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("a webhook target needs an http(s) url"));
    // A page and its stylesheet stay far under 150 KB.
    let css = visitor
        .get("/console/static/console.css")
        .await
        .bytes()
        .await
        .unwrap();
    for path in [
        "/console/queues",
        "/console/topics",
        "/console/keys",
        "/console/audit",
    ] {
        let (status, html) = visitor.page(path).await;
        assert_eq!(status, 200, "{path}");
        let total = html.len() + css.len();
        assert!(total < 150 * 1024, "{path}: {total} bytes");
    }
    let (_, topics) = visitor.page("/console/topics").await;
    assert!(topics.contains("store → orders"), "{topics}");

    // Pages authorise as the API routes behind them: no operator scope, 403.
    let (status, _) = visitor.page("/console/overview").await;
    assert_eq!(status, 403);

    // Changes through the console are audited with the session's key.
    let audit = app.get_json("/v1/audit", &key).await;
    let routes: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["route"].as_str().unwrap())
        .collect();
    assert!(routes.contains(&"/console/subscriptions"), "{routes:?}");
    assert!(routes.contains(&"/console/sign-in"), "{routes:?}");

    // Sign-out ends the session: the same cookie opens nothing afterwards.
    let cookie = visitor.session_cookie().unwrap();
    let out = visitor.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    visitor.set_session_cookie(&cookie);
    assert_eq!(visitor.get("/console/queues").await.status(), 303);
}

/// The prefixes of the tenant's keys, with whether each is revoked.
async fn keys_of(app: &TestApp, key: &str) -> Vec<(String, bool)> {
    let listed = app.get_json("/v1/keys", key).await;
    listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["prefix"].as_str().unwrap().to_owned(),
                !k["revoked_at"].is_null(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_owner_signs_in_with_email_and_password() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.com").await;
    let before = keys_of(&app, &owner).await;

    // A wrong password: the form again, a 401, audited under the tenant.
    let visitor = Visitor::new(&app);
    let wrong = visitor
        .sign_in_with_password("owner@example.com", "not the password")
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("do not match"));
    assert_eq!(visitor.get("/console/queues").await.status(), 303);

    // The right one: a session acting as an owner key issued for it.
    let signed = visitor
        .sign_in_with_password("owner@example.com", "correct horse")
        .await;
    assert_eq!(signed.status(), 303);
    let (status, keys_page) = visitor.page("/console/keys").await;
    assert_eq!(status, 200, "the owner may manage keys");
    let after = keys_of(&app, &owner).await;
    let issued: Vec<_> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(issued.len(), 1, "one key for the session: {after:?}");
    let prefix = issued[0].0.clone();
    assert!(keys_page.contains(&prefix));

    let audit = app.get_json("/v1/audit", &owner).await;
    let sign_ins: Vec<u64> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "/console/sign-in")
        .filter_map(|e| e["status"].as_u64())
        .collect();
    assert!(
        sign_ins.contains(&401) && sign_ins.contains(&303),
        "both attempts audited: {audit}"
    );

    // Signing out ends the key with the session.
    let csrf = visitor.csrf().await;
    assert_eq!(
        visitor
            .post("/console/sign-out", &[("csrf", &csrf)])
            .await
            .status(),
        303
    );
    let ended = keys_of(&app, &owner).await;
    assert!(
        ended.contains(&(prefix.clone(), true)),
        "the session's key is revoked: {ended:?}"
    );
    assert!(
        ended.contains(&(before[0].0.clone(), false)),
        "the owner's own key stays"
    );
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.com").await;
    let made = app
        .post_json_with("/v1/keys", json!({"scopes": ["read", "write"]}), &owner)
        .await;
    let second = made["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = made["data"]["id"].as_str().unwrap().to_owned();
    let visitor = Visitor::new(&app);
    assert_eq!(visitor.sign_in(&second).await.status(), 303);
    assert_eq!(visitor.get("/console/queues").await.status(), 200);
    // The read/write key sees no key management.
    let (status, _) = visitor.page("/console/keys").await;
    assert_eq!(status, 403);

    // The owner revokes it from the console's bulk form.
    let owner_visitor = Visitor::new(&app);
    owner_visitor.sign_in(&owner).await;
    let csrf = owner_visitor.csrf().await;
    let (_, keys) = owner_visitor.page("/console/keys").await;
    assert!(keys.contains(&prefix), "{keys}");
    let revoked = owner_visitor
        .post(
            "/console/keys/revoke",
            &[("csrf", &csrf), ("prefix", &prefix)],
        )
        .await;
    assert_eq!(revoked.status(), 303);
    assert!(
        location(&revoked).contains("Revoked+1+key"),
        "{}",
        location(&revoked)
    );
    assert_eq!(visitor.get("/console/queues").await.status(), 303);
    app.get("/v1/me")
        .key(&second)
        .send()
        .await
        .map(|r| assert_eq!(r.status(), 401))
        .unwrap();
}

#[tokio::test]
async fn sign_in_is_guarded_throttled_and_audited() {
    let mut config = keel_server::ServerConfig::default();
    config.limits.login_failures_per_minute_per_address = 3;
    let app = spawn_app_with(config).await;
    let owner = app.register("owner@example.com").await;
    let visitor = Visitor::new(&app);

    // A post that did not come from the sign-in form (no nonce cookie) is refused.
    let forged = visitor
        .post("/console/sign-in", &[("nonce", "n"), ("key", &owner)])
        .await;
    assert_eq!(forged.status(), 403);

    // Wrong keys: 401 with the form again, until the address is spent.
    let wrong = format!("{}x", &owner[..owner.len() - 1]);
    for _ in 0..3 {
        let failed = visitor.sign_in(&wrong).await;
        assert_eq!(failed.status(), 401);
        assert!(failed.text().await.unwrap().contains("unknown or revoked"));
    }
    let spent = visitor.sign_in(&owner).await;
    assert_eq!(
        spent.status(),
        429,
        "the right key waits too once the address is spent"
    );

    // The failures are in the owner's audit trail (the prefix names the tenant).
    let audit = app.get_json("/v1/audit", &owner).await;
    let failures = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "/console/sign-in" && e["status"] == 401)
        .count();
    assert_eq!(failures, 3, "{audit}");

    // `next` only ever leads inside the console.
    let (_, html) = Visitor::new(&app)
        .page("/console/sign-in?next=https://evil.example/")
        .await;
    assert!(html.contains("name=\"next\" value=\"/console\""), "{html}");
}
