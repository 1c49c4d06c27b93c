//! The store contract, one suite for every store adapter (SQLite, PostgreSQL),
//! run unchanged on each. Adapter-only checks live in `sqlite_only.rs` and
//! `postgres_only.rs`.

mod adapters;

use adapters::{Adapter, Kind};
use keel_core::clock::Clock;

use std::collections::BTreeSet;

use jiff::{civil::date, Timestamp};
use keel_core::{
    apikey::{ApiKey, Scopes},
    counter::{CounterName, CounterValue},
    greeter::Username,
};
use keel_store::{AuditEvent, NewKey, PageRequest, StoreError, TenantId};

fn counter(name: &str) -> CounterName {
    CounterName::parse(name).unwrap()
}

async fn counters_start_at_one_and_are_per_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = a.store.clone();
    let a = store.create_tenant("a").await.unwrap().id;
    let b = store.create_tenant("b").await.unwrap().id;
    let c = counter("default");
    assert_eq!(store.current(&a, &c).await.unwrap(), 0);
    assert_eq!(store.next(&a, &c).await.unwrap(), 1);
    assert_eq!(store.next(&a, &c).await.unwrap(), 2);
    assert_eq!(store.next(&b, &c).await.unwrap(), 1);
    assert_eq!(store.current(&a, &c).await.unwrap(), 2);
    store
        .set_current(&a, &c, CounterValue::new(41).unwrap())
        .await
        .unwrap();
    assert_eq!(store.next(&a, &c).await.unwrap(), 42);
    assert_eq!(store.next(&a, &counter("other")).await.unwrap(), 1);
}

async fn a_counter_at_the_maximum_is_exhausted_not_wrapped(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = a.store.clone();
    let t = TenantId::default_tenant();
    let c = counter("edge");
    store
        .set_current(&t, &c, CounterValue::new(i64::MAX - 1).unwrap())
        .await
        .unwrap();
    assert_eq!(store.next(&t, &c).await.unwrap(), i64::MAX);
    assert!(matches!(
        store.next(&t, &c).await,
        Err(StoreError::CounterExhausted)
    ));
    assert_eq!(store.current(&t, &c).await.unwrap(), i64::MAX);
}

async fn concurrent_increments_are_distinct_and_contiguous(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = a.store.clone();
    let t = TenantId::default_tenant();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (store, t) = (store.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..50 {
                got.push(store.next(&t, &counter("c")).await.unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a value was handed out twice");
    assert_eq!(distinct, (1..=3200).collect());
}

async fn writes_survive_reopening(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let t = TenantId::default_tenant();
    for _ in 0..5 {
        a.store.next(&t, &counter("c")).await.unwrap();
    }
    let user = Username::parse("Ana").unwrap();
    a.store
        .save_birthday(&t, &user, date(1990, 2, 3))
        .await
        .unwrap();
    let store = a.reopen().await.store;
    assert_eq!(store.current(&t, &counter("c")).await.unwrap(), 5);
    assert_eq!(
        store.birthday(&t, &user).await.unwrap(),
        Some(date(1990, 2, 3))
    );
}

async fn a_refused_write_does_not_undo_concurrent_ones(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = a.store.clone();
    let key = ApiKey::generate();
    store
        .register_account("ana@example.com", "hash", key.prefix(), key.secret_hash())
        .await
        .unwrap();
    let (tenant, name) = (TenantId::default_tenant(), counter("n"));
    let (dup, ok) = tokio::join!(
        store.register_account("ana@example.com", "hash", "dupdupdup", key.secret_hash()),
        store.next(&tenant, &name),
    );
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    assert_eq!(ok.unwrap(), 1);
    assert_eq!(
        store
            .current(&TenantId::default_tenant(), &counter("n"))
            .await
            .unwrap(),
        1
    );
    // The refused registration left no tenant behind.
    let tenants = store
        .list_tenants(PageRequest {
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(tenants.items.len(), 2, "default + ana");
}

async fn keys_are_found_listed_and_revoked_within_their_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = a.store.clone();
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let mut prefixes = Vec::new();
    for _ in 0..3 {
        let key = ApiKey::generate();
        store
            .create_key(NewKey {
                tenant_id: t.clone(),
                prefix: key.prefix().into(),
                secret_hash: key.secret_hash(),
                scopes: Scopes::parse_csv("read").unwrap(),
            })
            .await
            .unwrap();
        prefixes.push(key.prefix().to_owned());
    }
    let found = store.key_by_prefix(&prefixes[0]).await.unwrap().unwrap();
    assert_eq!(found.tenant_id, t);
    let first = store
        .list_keys(
            &t,
            PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let second = store
        .list_keys(
            &t,
            PageRequest {
                limit: 2,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.next_cursor.is_none());
    assert!(!store
        .revoke_key(&other, &prefixes[0], Timestamp::now())
        .await
        .unwrap());
    assert!(store
        .revoke_key(&t, &prefixes[0], Timestamp::now())
        .await
        .unwrap());
    assert!(!store
        .revoke_key(&t, &prefixes[0], Timestamp::now())
        .await
        .unwrap());
    assert!(store
        .key_by_prefix(&prefixes[0])
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    store
        .record_key_use(vec![(prefixes[1].clone(), Timestamp::now())])
        .await
        .unwrap();
    assert!(store
        .key_by_prefix(&prefixes[1])
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .is_some());
    assert!(!store.has_operator_key().await.unwrap());
}

async fn audit_pages_newest_first_and_per_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = a.store.clone();
    let t = store.create_tenant("t").await.unwrap().id;
    let event = |route: &str, tenant: &TenantId| AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        at: Timestamp::now(),
        tenant_id: Some(tenant.clone()),
        key_prefix: None,
        method: "POST".into(),
        route: route.into(),
        resource_id: None,
        status: 200,
        request_id: "r".into(),
        source: None,
    };
    let events: Vec<_> = (0..5).map(|i| event(&format!("/r{i}"), &t)).collect();
    store.append_audit(events).await.unwrap();
    store
        .append_audit(vec![event("/elsewhere", &TenantId::default_tenant())])
        .await
        .unwrap();
    let page = store
        .list_audit(
            &t,
            PageRequest {
                limit: 3,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let routes: Vec<_> = page.items.iter().map(|e| e.route.as_str()).collect();
    assert_eq!(routes, ["/r4", "/r3", "/r2"]);
    let rest = store
        .list_audit(
            &t,
            PageRequest {
                limit: 3,
                cursor: page.next_cursor,
            },
        )
        .await
        .unwrap();
    let routes: Vec<_> = rest.items.iter().map(|e| e.route.as_str()).collect();
    assert_eq!(routes, ["/r1", "/r0"]);
    let bad = store
        .list_audit(
            &t,
            PageRequest {
                limit: 3,
                cursor: Some("nonsense".into()),
            },
        )
        .await;
    assert!(matches!(
        bad,
        Err(StoreError::InvalidInput {
            field: "cursor",
            ..
        })
    ));
}

async fn console_sessions_live_until_they_expire_or_end(kind: Kind) {
    use keel_store::sessions::ConsoleSession;
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let now = a.clock.now();
    let session = |tenant: &TenantId, hours: i64| ConsoleSession {
        tenant_id: tenant.clone(),
        key_prefix: "abcd1234".into(),
        csrf_token: "csrf-1".into(),
        created_at: now,
        expires_at: now + jiff::SignedDuration::from_hours(hours),
        owns_key: hours == 1,
    };
    store
        .create_session("hash-a", session(&t, 12))
        .await
        .unwrap();
    store
        .create_session("hash-b", session(&other, 1))
        .await
        .unwrap();
    assert_eq!(
        store.session("hash-a", now).await.unwrap(),
        Some(session(&t, 12))
    );
    assert_eq!(store.session("hash-x", now).await.unwrap(), None);
    assert!(
        store
            .create_session("hash-a", session(&t, 1))
            .await
            .is_err(),
        "a token hash names one session"
    );

    // Past its end a session is gone, before and after pruning.
    let later = now + jiff::SignedDuration::from_hours(2);
    assert_eq!(store.session("hash-b", later).await.unwrap(), None);
    let pruned = store.prune_sessions(later).await.unwrap();
    assert_eq!(
        pruned,
        [session(&other, 1)],
        "the expired one, with its key"
    );
    assert!(store.session("hash-a", later).await.unwrap().is_some());

    // Ending one needs its tenant.
    assert!(!store.delete_session(&other, "hash-a").await.unwrap());
    assert!(store.delete_session(&t, "hash-a").await.unwrap());
    assert_eq!(store.session("hash-a", now).await.unwrap(), None);
}

on_every_adapter!(
    console_sessions_live_until_they_expire_or_end,
    counters_start_at_one_and_are_per_tenant,
    a_counter_at_the_maximum_is_exhausted_not_wrapped,
    concurrent_increments_are_distinct_and_contiguous,
    writes_survive_reopening,
    a_refused_write_does_not_undo_concurrent_ones,
    keys_are_found_listed_and_revoked_within_their_tenant,
    audit_pages_newest_first_and_per_tenant,
);
