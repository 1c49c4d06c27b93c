//! The telemetry store contract (lines with full text, points with labels, import
//! ids, pruning), one suite run unchanged on every store adapter (SQLite,
//! PostgreSQL).

mod adapters;

use std::collections::BTreeMap;

use adapters::{Adapter, Kind};
use jiff::Timestamp;
use keel_core::telemetry::{Batch, LogLine, MetricPoint};
use keel_store::{
    telemetry::{search_terms, LogQuery, PointQuery},
    PageRequest, StoreError, TenantId,
};
use serde_json::{json, Map};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn line(ts: i64, level: &str, body: &str, account: &str) -> LogLine {
    let mut attributes = Map::new();
    attributes.insert("n".into(), json!(ts));
    LogLine {
        ts: at(ts),
        level: level.into(),
        body: body.into(),
        account: account.into(),
        attributes,
    }
}

fn point(ts: i64, name: &str, value: f64, account: &str, labels: &[(&str, &str)]) -> MetricPoint {
    MetricPoint {
        ts: at(ts),
        name: name.into(),
        value,
        account: account.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn logs(q: &str, from: i64, to: i64, limit: u32) -> LogQuery {
    LogQuery {
        account: None,
        level: None,
        terms: search_terms(q).unwrap(),
        from: at(from),
        to: at(to),
        page: PageRequest {
            limit,
            cursor: None,
        },
    }
}

async fn lines_are_found_by_words_level_account_and_time_newest_first(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let (t, other) = (
        store.create_tenant("t").await.unwrap().id,
        store.create_tenant("o").await.unwrap().id,
    );
    let batch = Batch {
        logs: vec![
            line(1, "INFO", "service started on port 8080", "111"),
            line(3, "ERROR", "Disk full on /dev/sda1", "111"),
            line(2, "error", "disk-quota exceeded for user ada", "222"),
            line(4, "warn", "slow request: 950 ms", "222"),
            line(5, "info", "Grüße aus Köln", "111"),
        ],
        points: vec![],
    };
    assert!(store
        .append_telemetry(&t, batch.clone(), None)
        .await
        .unwrap());
    store
        .append_telemetry(
            &other,
            Batch {
                logs: vec![line(3, "error", "disk full elsewhere", "111")],
                points: vec![],
            },
            None,
        )
        .await
        .unwrap();

    let bodies = |page: keel_store::Page<keel_store::telemetry::StoredLog>| {
        page.items.into_iter().map(|l| l.body).collect::<Vec<_>>()
    };
    let all = store.query_logs(&t, logs("", 0, 100, 10)).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.items[0].body, "Grüße aus Köln", "newest first");
    assert_eq!(all.items[0].attributes["n"], 5);
    assert_eq!(all.items[4].ts, at(1));
    // Words, case-insensitive, split on punctuation, all required.
    assert_eq!(
        bodies(
            store
                .query_logs(&t, logs("DISK", 0, 100, 10))
                .await
                .unwrap()
        ),
        ["Disk full on /dev/sda1", "disk-quota exceeded for user ada"]
    );
    assert_eq!(
        bodies(
            store
                .query_logs(&t, logs("disk full", 0, 100, 10))
                .await
                .unwrap()
        ),
        ["Disk full on /dev/sda1"]
    );
    assert_eq!(
        bodies(
            store
                .query_logs(&t, logs("sda1", 0, 100, 10))
                .await
                .unwrap()
        ),
        ["Disk full on /dev/sda1"]
    );
    assert_eq!(
        bodies(
            store
                .query_logs(&t, logs("köln", 0, 100, 10))
                .await
                .unwrap()
        ),
        ["Grüße aus Köln"]
    );
    assert!(store
        .query_logs(&t, logs("nowhere", 0, 100, 10))
        .await
        .unwrap()
        .items
        .is_empty());
    // Level (case-insensitive), account, time range [from, to).
    let mut q = logs("", 0, 100, 10);
    q.level = Some("Error".into());
    assert_eq!(
        store.query_logs(&t, q.clone()).await.unwrap().items.len(),
        2
    );
    q.account = Some("222".into());
    assert_eq!(
        bodies(store.query_logs(&t, q).await.unwrap()),
        ["disk-quota exceeded for user ada"]
    );
    assert_eq!(
        store
            .query_logs(&t, logs("", 2, 4, 10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    // Cursors walk every line once.
    let mut seen = Vec::new();
    let mut query = logs("", 0, 100, 2);
    loop {
        let page = store.query_logs(&t, query.clone()).await.unwrap();
        seen.extend(page.items.iter().map(|l| l.ts));
        match page.next_cursor {
            Some(c) => query.page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, [at(5), at(4), at(3), at(2), at(1)]);
    query.page.cursor = Some("forged".into());
    assert!(matches!(
        store.query_logs(&t, query).await,
        Err(StoreError::InvalidInput { .. })
    ));
    // The other tenant sees only its own.
    assert_eq!(
        store
            .query_logs(&other, logs("disk", 0, 100, 10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .query_logs(&TenantId("nobody".into()), logs("", 0, 100, 10))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

async fn points_match_name_account_labels_and_range(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let batch = Batch {
        logs: vec![],
        points: vec![
            point(
                1,
                "cpu",
                1.0,
                "111",
                &[("host", "a"), ("http.method", "GET")],
            ),
            point(2, "cpu", 2.0, "111", &[("host", "b")]),
            point(3, "cpu", 4.0, "222", &[("host", "a")]),
            point(3, "mem", 8.0, "111", &[]),
        ],
    };
    store
        .append_telemetry(&t, batch.clone(), None)
        .await
        .unwrap();
    store.append_telemetry(&other, batch, None).await.unwrap();
    let query = |account: Option<&str>, labels: &[(&str, &str)]| PointQuery {
        name: "cpu".into(),
        account: account.map(Into::into),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        from: at(0),
        to: at(3),
    };
    let values = |mut v: Vec<(i64, f64)>| {
        v.sort_by_key(|p| p.0);
        v.into_iter().map(|p| p.1).collect::<Vec<_>>()
    };
    assert_eq!(
        values(store.query_points(&t, query(None, &[]), 100).await.unwrap()),
        [1.0, 2.0]
    );
    let mut wide = query(None, &[]);
    wide.to = at(4);
    let got = store.query_points(&t, wide.clone(), 100).await.unwrap();
    assert_eq!(values(got.clone()), [1.0, 2.0, 4.0]);
    assert_eq!(got.iter().map(|p| p.0).min(), Some(at(1).as_microsecond()));
    wide.account = Some("222".into());
    assert_eq!(
        values(store.query_points(&t, wide, 100).await.unwrap()),
        [4.0]
    );
    assert_eq!(
        values(
            store
                .query_points(&t, query(None, &[("host", "a")]), 100)
                .await
                .unwrap()
        ),
        [1.0]
    );
    assert_eq!(
        values(
            store
                .query_points(
                    &t,
                    query(Some("111"), &[("http.method", "GET"), ("host", "a")]),
                    100
                )
                .await
                .unwrap()
        ),
        [1.0]
    );
    assert!(store
        .query_points(&t, query(None, &[("host", "zzz")]), 100)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.query_points(&t, query(None, &[]), 1).await,
        Err(StoreError::InvalidInput { .. })
    ));
}

async fn imports_land_once(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let batch = Batch {
        logs: vec![line(1, "info", "imported", "111")],
        points: vec![point(1, "rows", 3.0, "111", &[])],
    };
    let id = Some("bucket/data/a.json@0001".to_string());
    assert!(store
        .append_telemetry(&t, batch.clone(), id.clone())
        .await
        .unwrap());
    assert!(!store.append_telemetry(&t, batch.clone(), id).await.unwrap());
    assert_eq!(
        store
            .query_logs(&t, logs("imported", 0, 10, 10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let other = store.create_tenant("o").await.unwrap().id;
    assert!(
        store
            .append_telemetry(&other, batch, Some("bucket/data/a.json@0001".into()))
            .await
            .unwrap(),
        "import ids are per tenant"
    );
}

async fn pruning_removes_old_rows_in_steps(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let batch = Batch {
        logs: (0..10)
            .map(|i| line(i, "info", &format!("line number {i}"), "111"))
            .collect(),
        points: (0..10)
            .map(|i| point(i, "m", i as f64, "111", &[]))
            .collect(),
    };
    store
        .append_telemetry(&t, batch.clone(), None)
        .await
        .unwrap();
    store.append_telemetry(&other, batch, None).await.unwrap();
    let mut gone = 0;
    loop {
        let step = store.prune_telemetry(&t, at(5), 3).await.unwrap();
        assert!(step <= 3);
        if step == 0 {
            break;
        }
        gone += step;
    }
    assert_eq!(gone, 10, "5 lines and 5 points");
    let left = store.query_logs(&t, logs("", 0, 100, 100)).await.unwrap();
    assert_eq!(left.items.len(), 5);
    assert!(left.items.iter().all(|l| l.ts >= at(5)));
    // The full-text index forgot the pruned lines too.
    assert!(store
        .query_logs(&t, logs("number 4", 0, 100, 10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .query_logs(&t, logs("number 7", 0, 100, 10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let q = PointQuery {
        name: "m".into(),
        account: None,
        labels: vec![],
        from: at(-100),
        to: at(100),
    };
    assert_eq!(
        store.query_points(&t, q.clone(), 100).await.unwrap().len(),
        5
    );
    assert_eq!(
        store.query_points(&other, q, 100).await.unwrap().len(),
        10,
        "another tenant's rows stay"
    );
    // A tenant's own retention: set, read, replaced, cleared; others unaffected.
    assert_eq!(store.telemetry_retention(&t).await.unwrap(), None);
    store.set_telemetry_retention(&t, Some(30)).await.unwrap();
    store.set_telemetry_retention(&t, Some(2)).await.unwrap();
    assert_eq!(store.telemetry_retention(&t).await.unwrap(), Some(2));
    assert_eq!(store.telemetry_retention(&other).await.unwrap(), None);
    store.set_telemetry_retention(&t, None).await.unwrap();
    assert_eq!(store.telemetry_retention(&t).await.unwrap(), None);
}

on_every_adapter!(
    lines_are_found_by_words_level_account_and_time_newest_first,
    points_match_name_account_labels_and_range,
    imports_land_once,
    pruning_removes_old_rows_in_steps,
);
