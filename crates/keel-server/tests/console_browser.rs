//! The console in a real browser (SPEC §12): Debian's `chromium` driven through
//! `chromedriver` (Debian's `chromium-driver`) over WebDriver with fantoccini.
//! `.ci/run` installs both; under `CI=true` a missing one fails the run.
//!
//! One visit as a user makes it: sign in with a key, create a subscription,
//! publish through the API, watch the queue depth, let a message dead-letter,
//! redrive it from the page, see it stored in the collection view, revoke a key
//! and see its next API call answer 401, sign out; and a form posted from
//! another site without the CSRF token is refused. Screenshots of the
//! overview, queue and monitor pages in light and dark themes are saved in
//! `target/tmp/console-*.png` and read back with tesseract for the names they
//! must show.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{spawn_app, Bearer, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

fn tool(paths: &[&str], package: &str) -> Option<PathBuf> {
    let found = paths.iter().map(PathBuf::from).find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{package} is missing under CI=true (.ci/run installs it)"
        );
        eprintln!("skipping the browser test: Debian's {package} is not installed");
    }
    found
}

/// Chromium and its driver, or `None` (a skip, printed) when one is missing.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = tool(
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        "chromium",
    );
    let driver = tool(&["/usr/bin/chromedriver"], "chromium-driver");
    chromium.zip(driver)
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(binary: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, chromium: &Path, profile: &Path, dark: bool) -> Client {
    let mut args: Vec<String> = FLAGS.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push("--window-size=1280,900".into());
    if dark {
        args.push("--force-dark-mode".into());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("chromedriver starts a session")
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn body_text(client: &Client) -> String {
    text_of(client, "body").await
}

async fn path_of(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

async fn sign_in(client: &Client, app: &TestApp, key: &str) {
    client.goto(&format!("{}/", app.base)).await.unwrap();
    assert_eq!(
        path_of(client).await,
        "/console/sign-in",
        "/ leads a browser to sign in"
    );
    let field = client.find(Locator::Id("key")).await.unwrap();
    field.send_keys(key).await.unwrap();
    submit(client, "form button[type=submit]").await;
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks what submits a form and waits for the next page to replace this one.
async fn submit(client: &Client, css: &str) {
    let element = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    element.clone().click().await.unwrap();
    for _ in 0..100 {
        if element.is_displayed().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("clicking {css} did not load another page");
}

async fn fill(client: &Client, id: &str, value: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Saves a screenshot and checks that tesseract reads `names` in it.
async fn screenshot(client: &Client, name: &str, names: &[&str]) {
    let png = client.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("console-{name}.png"));
    std::fs::write(&path, &png).unwrap();
    match Command::new("tesseract").arg(&path).arg("stdout").output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            for wanted in names {
                assert!(text.contains(wanted), "{name}: the screenshot reads {text}");
            }
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tesseract is missing under CI=true"
            );
            eprintln!("not reading {name}: tesseract is not installed");
        }
    }
}

async fn depth(client: &Client) -> String {
    text_of(client, "dd[data-field=depth]").await
}

/// A page on another site (`localhost` is not the same site as `127.0.0.1`)
/// with a form that posts to the console without a CSRF token.
async fn hostile_site(target: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        "<!doctype html><title>Win a prize</title><form method=post action=\"{target}/console/subscriptions\">\
         <input type=hidden name=topic value=stolen><input type=hidden name=name value=stolen>\
         <input type=hidden name=target value=queue><button id=go>Claim</button></form>"
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{port}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_works_the_console_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let app = spawn_app().await;
    let owner = app.register("owner@example.com").await;
    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, &chromium, profile.path(), false).await;

    sign_in(&client, &app, &owner).await;
    assert_eq!(path_of(&client).await, "/console/queues");

    // Create two subscriptions from the topics page: a queue and a store.
    for (name, target, collection) in [("work", "queue", ""), ("keep", "store", "orders-seen")] {
        client
            .goto(&format!("{}/console/topics", app.base))
            .await
            .unwrap();
        fill(&client, "topic", "orders").await;
        fill(&client, "name", name).await;
        client
            .find(Locator::Css(&format!("#target option[value={target}]")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        fill(&client, "collection", collection).await;
        fill(&client, "max_receives", "1").await;
        fill(&client, "visibility", "1").await;
        submit(&client, "form.stack button[type=submit]").await;
        assert!(body_text(&client)
            .await
            .contains(&format!("Saved subscription {name} on orders")));
    }

    // Publish through the API and watch the depth on the queue page.
    let published = app
        .post_json(
            "/v1/topics/orders/messages",
            json!({"body": {"order": 17, "item": "kayak"}}),
        )
        .key(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    client
        .goto(&format!("{}/console/queues/orders/work", app.base))
        .await
        .unwrap();
    assert_eq!(depth(&client).await, "1");
    screenshot(&client, "queue-light", &["orders", "work"]).await;

    // The message is received and never acked: past its one receive it dead-letters.
    let got: Value = app
        .post_json_with("/v1/queues/orders/work/receive", json!({"max": 1}), &owner)
        .await;
    assert_eq!(got["messages"].as_array().unwrap().len(), 1, "{got}");
    // Its visibility (1 s) runs out on the store's clock and in real time alike.
    let mut dead = 0;
    for _ in 0..20 {
        app.clock
            .set(keel_core::clock::Clock::now(&*app.clock) + jiff::SignedDuration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again: Value = app
            .post_json_with("/v1/queues/orders/work/receive", json!({"max": 1}), &owner)
            .await;
        assert!(again["messages"].as_array().unwrap().is_empty(), "{again}");
        let stats = app.get_json("/v1/queues/orders/work", &owner).await;
        dead = stats["dlq_depth"].as_u64().unwrap();
        if dead == 1 {
            break;
        }
    }
    assert_eq!(dead, 1, "the message dead-lettered");
    client.refresh().await.unwrap();
    assert_eq!(text_of(&client, "dd[data-field=dlq_depth]").await, "1");
    assert!(body_text(&client).await.contains("Dead letters"));

    // Redrive the selected dead letter from the page.
    click(&client, "input[type=checkbox][name=id]").await;
    submit(&client, "button[value=selected]").await;
    assert!(body_text(&client).await.contains("Redrove 1 message(s)."));
    assert_eq!(depth(&client).await, "1");
    assert_eq!(text_of(&client, "dd[data-field=dlq_depth]").await, "0");

    // The store subscription kept the message: it is in the collection view.
    let mut seen = String::new();
    for _ in 0..50 {
        client
            .goto(&format!("{}/console/collections/orders-seen", app.base))
            .await
            .unwrap();
        seen = body_text(&client).await;
        if seen.contains("kayak") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains("kayak"), "{seen}");
    submit(&client, "tbody a").await;
    assert!(text_of(&client, "pre.json")
        .await
        .contains("\"item\": \"kayak\""));

    // Revoke a key from the keys page; its next API call answers 401.
    let made: Value = app
        .post_json_with("/v1/keys", json!({"scopes": ["read"]}), &owner)
        .await;
    let second = made["data"]["attributes"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = made["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/v1/me")
            .key(&second)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    client
        .goto(&format!("{}/console/keys", app.base))
        .await
        .unwrap();
    click(&client, &format!("input[value=\"{prefix}\"]")).await;
    submit(&client, "form[action=\"/console/keys/revoke\"] button").await;
    assert!(body_text(&client).await.contains("Revoked 1 key(s)."));
    assert_eq!(
        app.get("/v1/me")
            .key(&second)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A form on another site posts without the CSRF token (and, SameSite=Strict,
    // without the session): nothing is created.
    let hostile = hostile_site(app.base.clone()).await;
    client.goto(&hostile).await.unwrap();
    submit(&client, "#go").await;
    let landed = path_of(&client).await;
    assert!(
        landed == "/console/sign-in" || body_text(&client).await.contains("CSRF"),
        "the cross-site post was not refused: {landed}"
    );
    let stolen = app
        .get("/v1/topics/stolen/subscriptions/stolen")
        .key(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 404);

    // Sign out: back to the sign-in page, and the console is closed.
    client
        .goto(&format!("{}/console/queues", app.base))
        .await
        .unwrap();
    submit(&client, "form.signout button").await;
    assert_eq!(path_of(&client).await, "/console/sign-in");
    client
        .goto(&format!("{}/console/queues", app.base))
        .await
        .unwrap();
    assert_eq!(path_of(&client).await, "/console/sign-in");
    client.close().await.unwrap();
}

async fn create_monitor(app: &TestApp, key: &str, name: &str) {
    let made: Value = app
        .post_json_with(
            "/v1/monitors",
            json!({"name": name, "kind": "push", "interval_s": 60}),
            key,
        )
        .await;
    assert!(made["id"].is_string(), "{made}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_in_light_and_dark_themes() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let app = spawn_app().await;
    let operator = app.operator_key.clone();
    let put = app
        .put_json(
            "/v1/topics/payments/subscriptions/settle",
            json!({"target": {"type": "queue"}}),
        )
        .key(&operator)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    create_monitor(&app, &operator, "Checkout API").await;
    let driver = start_driver(&chromedriver).await;
    for dark in [false, true] {
        let theme = if dark { "dark" } else { "light" };
        let profile = tempfile::tempdir().unwrap();
        let client = browser(&driver, &chromium, profile.path(), dark).await;
        sign_in(&client, &app, &operator).await;
        assert_eq!(path_of(&client).await, "/console/overview");
        // The theme follows the system setting.
        let matches = client
            .execute(
                "return matchMedia('(prefers-color-scheme: dark)').matches",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(matches, json!(dark), "{theme}");
        let background = client
            .execute(
                "return getComputedStyle(document.body).backgroundColor",
                vec![],
            )
            .await
            .unwrap();
        let expected = if dark {
            "rgb(13, 17, 23)"
        } else {
            "rgb(255, 255, 255)"
        };
        assert_eq!(background, json!(expected), "{theme}");
        screenshot(
            &client,
            &format!("overview-{theme}"),
            &["Overview", "Requests"],
        )
        .await;
        client
            .goto(&format!("{}/console/queues", app.base))
            .await
            .unwrap();
        screenshot(&client, &format!("queues-{theme}"), &["payments", "settle"]).await;
        client
            .goto(&format!("{}/console/monitors", app.base))
            .await
            .unwrap();
        screenshot(&client, &format!("monitors-{theme}"), &["Checkout API"]).await;
        // Keyboard: the first Tab reaches the skip link.
        client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys("\u{E004}")
            .await
            .unwrap();
        let focused = client
            .execute("return document.activeElement.textContent", vec![])
            .await
            .unwrap();
        assert_eq!(focused, json!("Skip to content"), "{theme}");
        client.close().await.unwrap();
    }
}
