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

/// Every line of a query, page by page.
async fn every_page(
    store: &dyn keel_store::Store,
    t: &TenantId,
    mut query: LogQuery,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = store.query_logs(t, query.clone()).await.unwrap();
        seen.extend(page.items.into_iter().map(|l| l.body));
        match page.next_cursor {
            Some(c) => query.page.cursor = Some(c),
            None => return seen,
        }
    }
}

/// Batches whose times interleave, one larger than any single write, and pruning
/// that takes part of a batch: pages still come newest first (ties by arrival),
/// each line once, and a cursor taken before the pruning still works after it.
async fn interleaved_batches_page_newest_first(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &*a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    // Batch b holds every third second from b on; the big one every second.
    for b in 0..3 {
        let batch = Batch {
            logs: (0..40)
                .map(|i| {
                    let ts = b + 3 * i;
                    let word = if ts % 10 == 0 { "tenth" } else { "plain" };
                    line(ts, "info", &format!("{word} s{ts} b{b}"), "111")
                })
                .collect(),
            points: vec![],
        };
        store.append_telemetry(&t, batch, None).await.unwrap();
    }
    let big = Batch {
        logs: (0..2_500)
            .map(|i| line(200 + i, "info", &format!("big s{}", 200 + i), "333"))
            .collect(),
        points: vec![],
    };
    store.append_telemetry(&t, big, None).await.unwrap();
    // A second line at second 30, stored later: it comes first of the two.
    let late = Batch {
        logs: vec![line(30, "warn", "tenth s30 late", "111")],
        points: vec![],
    };
    store.append_telemetry(&t, late, None).await.unwrap();

    let small: Vec<String> = every_page(store, &t, logs("", 0, 120, 7)).await;
    let mut expected: Vec<(i64, usize, String)> = (0..3)
        .flat_map(|b| (0..40).map(move |i| b + 3 * i))
        .map(|ts| {
            let word = if ts % 10 == 0 { "tenth" } else { "plain" };
            (ts, (ts % 3) as usize, format!("{word} s{ts} b{}", ts % 3))
        })
        .collect();
    expected.push((30, 9, "tenth s30 late".into()));
    expected.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    let expected: Vec<String> = expected.into_iter().map(|e| e.2).collect();
    assert_eq!(small, expected);
    let tenths = every_page(store, &t, logs("tenth", 0, 120, 3)).await;
    assert_eq!(tenths[..2], ["tenth s110 b2", "tenth s100 b1"]);
    assert_eq!(tenths.len(), 13);
    let big_lines = every_page(store, &t, logs("big", 0, 10_000, 500)).await;
    assert_eq!(big_lines.len(), 2_500);
    assert_eq!(big_lines[0], "big s2699");
    assert_eq!(big_lines[2_499], "big s200");

    // Take a cursor, prune the first 60 seconds in small steps, and go on.
    let mut query = logs("", 0, 120, 50);
    let first = store.query_logs(&t, query.clone()).await.unwrap();
    query.page.cursor = first.next_cursor;
    let mut gone = 0;
    loop {
        let step = store.prune_telemetry(&t, at(60), 7).await.unwrap();
        assert!(step <= 7);
        if step == 0 {
            break;
        }
        gone += step;
    }
    assert_eq!(
        gone, 61,
        "seconds 0–59 of the three batches, and the late line"
    );
    let rest = every_page(store, &t, query).await;
    assert_eq!(rest, expected[50..expected.len() - 61]);
    assert!(store
        .query_logs(&t, logs("s59", 0, 120, 10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        every_page(store, &t, logs("tenth", 0, 120, 100)).await,
        [
            "tenth s110 b2",
            "tenth s100 b1",
            "tenth s90 b0",
            "tenth s80 b2",
            "tenth s70 b1",
            "tenth s60 b0"
        ]
    );
}

on_every_adapter!(
    lines_are_found_by_words_level_account_and_time_newest_first,
    interleaved_batches_page_newest_first,
    points_match_name_account_labels_and_range,
    imports_land_once,
    pruning_removes_old_rows_in_steps,
);
