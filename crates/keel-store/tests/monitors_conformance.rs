//! The monitor store contract (definitions, the shared schedule with leases,
//! results with rollups and incidents, pruning), one suite run unchanged on every
//! store adapter (SQLite, PostgreSQL).

mod adapters;

use adapters::{Adapter, Kind};
use jiff::Timestamp;
use keel_core::clock::Clock;
use keel_core::uptime::{monitor::MonitorSpec, Grain, Tally};
use keel_store::{
    monitors::{CheckResult, IncidentChange, MonitorRetention, MonitorStatus},
    PageRequest, StoreError, TenantId,
};
use serde_json::json;

fn spec(name: &str, interval_s: u32) -> MonitorSpec {
    MonitorSpec::parse(&json!({
        "name": name, "kind": "http", "target": "https://example.com/",
        "interval_s": interval_s, "timeout_ms": 1000, "conditions": ["status == 200"]
    }))
    .unwrap()
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

fn result(tenant: &TenantId, id: &str, slot: Option<i64>, at: Timestamp, up: bool) -> CheckResult {
    CheckResult {
        tenant: tenant.clone(),
        monitor_id: id.into(),
        scheduled_at: slot,
        at,
        up,
        maintenance: false,
        latency_us: Some(if up { 20_000 } else { 900_000 }),
        status: Some(if up { 200 } else { 503 }),
        failure: (!up).then(|| "status == 200 (was 503)".to_string()),
        next_check_at: at.as_microsecond() + 30_000_000,
    }
}

fn sum(tallies: &[(i64, Tally)]) -> Tally {
    let mut all = Tally::default();
    for (_, t) in tallies {
        all.merge(t);
    }
    all
}

async fn monitors_are_kept_per_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let api = store.create_monitor(&t, spec("api", 30)).await.unwrap();
    assert_eq!(api.spec.name, "api");
    assert_eq!(api.state.status, MonitorStatus::Pending);
    assert!(api.push_token.is_none());
    let now = a.clock.now();
    assert!(api.state.next_check_at >= now);
    assert!(api.state.next_check_at.as_microsecond() < now.as_microsecond() + 30_000_000);
    assert!(matches!(
        store.create_monitor(&t, spec("api", 60)).await,
        Err(StoreError::Conflict(_))
    ));
    // Another tenant may use the name, and cannot see the first.
    store.create_monitor(&other, spec("api", 60)).await.unwrap();
    assert!(store.monitor(&other, &api.id).await.unwrap().is_none());
    assert_eq!(store.monitor(&t, &api.id).await.unwrap().unwrap(), api);
    assert_eq!(
        store.monitor_named(&t, "api").await.unwrap().unwrap().id,
        api.id
    );

    let push =
        MonitorSpec::parse(&json!({"name": "cron", "kind": "push", "interval_s": 60})).unwrap();
    let cron = store.create_monitor(&t, push).await.unwrap();
    assert_eq!(cron.push_token.as_ref().map(String::len), Some(48));
    assert_eq!(
        cron.state.next_check_at.as_microsecond(),
        now.as_microsecond() + 120_000_000,
        "a first heartbeat is due one interval and its grace after creation"
    );
    assert_eq!(
        store.push_monitor(&cron.id).await.unwrap().unwrap().tenant,
        t
    );
    assert!(store.push_monitor(&api.id).await.unwrap().is_none());

    for i in 0..3 {
        store
            .create_monitor(&t, spec(&format!("m{i}"), 30))
            .await
            .unwrap();
    }
    let first = store.list_monitors(&t, page(3, None)).await.unwrap();
    let second = store
        .list_monitors(&t, page(3, first.next_cursor.clone()))
        .await
        .unwrap();
    let names: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|m| m.spec.name.as_str())
        .collect();
    assert_eq!(names, ["api", "cron", "m0", "m1", "m2"]);
    assert!(second.next_cursor.is_none());

    let replaced = store
        .replace_monitor(&t, &api.id, spec("api-renamed", 120))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.spec.interval_s, 120);
    assert_eq!(replaced.created_at, api.created_at);
    assert!(store
        .replace_monitor(&other, &api.id, spec("x", 30))
        .await
        .unwrap()
        .is_none());
    assert!(!store.delete_monitor(&other, &api.id).await.unwrap());
    assert!(store.delete_monitor(&t, &api.id).await.unwrap());
    assert!(store.monitor(&t, &api.id).await.unwrap().is_none());
    assert!(!store.delete_monitor(&t, &api.id).await.unwrap());
}

async fn each_slot_is_claimed_once_and_a_dead_probers_lease_lapses(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let m = store.create_monitor(&t, spec("api", 30)).await.unwrap();
    let slot = m.state.next_check_at.as_microsecond();
    let now = a.clock.now().as_microsecond();
    assert!(store
        .claim_checks("p1", now - 1, 5_000_000, 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = store
        .claim_checks("p1", now + 30_000_000, 5_000_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].scheduled_at, slot);
    assert_eq!(claimed[0].spec.name, "api");
    assert!(
        store
            .claim_checks("p2", now + 30_000_000, 5_000_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "a leased check is not handed out twice"
    );
    // p1 dies: once the slot, the timeout (1 s) and the margin (5 s) have passed,
    // p2 gets the same slot.
    a.clock
        .set(Timestamp::from_microsecond(slot + 6_000_001).unwrap());
    let taken = store
        .claim_checks("p2", slot + 6_000_001, 5_000_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].scheduled_at, slot);
    let at = Timestamp::from_microsecond(slot + 6_100_000).unwrap();
    store
        .record_checks(vec![result(&t, &m.id, Some(slot), at, true)])
        .await
        .unwrap();
    // p1 comes back and records the same slot late: it is not counted again.
    store
        .record_checks(vec![result(&t, &m.id, Some(slot), at, true)])
        .await
        .unwrap();
    let tallies = store
        .monitor_tallies(&t, &m.id, Grain::Day, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(sum(&tallies).up, 1, "one check per slot");
    let after = store.monitor(&t, &m.id).await.unwrap().unwrap();
    assert_eq!(after.state.status, MonitorStatus::Up);
    assert_eq!(
        after.state.next_check_at.as_microsecond(),
        at.as_microsecond() + 30_000_000
    );
    // Released checks are due again at once for anyone.
    let next = after.state.next_check_at.as_microsecond();
    assert_eq!(
        store
            .claim_checks("p3", next, 5_000_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store.release_checks("p3").await.unwrap();
    assert_eq!(
        store
            .claim_checks("p4", next, 5_000_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A claim hands out at most `limit`, earliest first.
    for i in 0..5 {
        store
            .create_monitor(&t, spec(&format!("m{i}"), 30))
            .await
            .unwrap();
    }
    let horizon = a.clock.now().as_microsecond() + 30_000_000;
    let some = store
        .claim_checks("p5", horizon, 5_000_000, 3)
        .await
        .unwrap();
    assert_eq!(some.len(), 3);
    assert!(some
        .windows(2)
        .all(|w| w[0].scheduled_at <= w[1].scheduled_at));
    let rest = store
        .claim_checks("p6", horizon, 5_000_000, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
}

async fn results_roll_up_and_open_and_resolve_incidents(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let m = store.create_monitor(&t, spec("api", 30)).await.unwrap();
    let base = 1_800_000_000_000_000i64; // a minute boundary
    let at = |s: i64| Timestamp::from_microsecond(base + s * 1_000_000).unwrap();
    let mut changes = Vec::new();
    for (s, up) in [
        (0, true),
        (30, false),
        (60, false),
        (90, false),
        (120, true),
    ] {
        changes.push(
            store
                .record_checks(vec![result(&t, &m.id, None, at(s), up)])
                .await
                .unwrap(),
        );
    }
    assert!(
        changes[0].is_empty() && changes[1].is_empty(),
        "one failure opens nothing"
    );
    let [IncidentChange::Opened { tenant, incident }] = &changes[2][..] else {
        panic!(
            "the second failure in a row opens an incident: {:?}",
            changes[2]
        );
    };
    assert_eq!(tenant, &t);
    assert_eq!(incident.opened_at, at(60));
    assert_eq!(incident.cause.as_deref(), Some("status == 200 (was 503)"));
    assert!(
        changes[3].is_empty(),
        "an open incident stays the one incident"
    );
    let [IncidentChange::Resolved {
        incident: resolved, ..
    }] = &changes[4][..]
    else {
        panic!("a success resolves it: {:?}", changes[4]);
    };
    assert_eq!(resolved.id, incident.id);
    assert_eq!(resolved.resolved_at, Some(at(120)));
    // In maintenance: counted as neither, and no failure run.
    let mut quiet = result(&t, &m.id, None, at(150), false);
    quiet.maintenance = true;
    assert!(store.record_checks(vec![quiet]).await.unwrap().is_empty());
    let state = store.monitor(&t, &m.id).await.unwrap().unwrap().state;
    assert_eq!(state.status, MonitorStatus::Maintenance);
    assert_eq!(state.open_incident, None);

    // Minute buckets: [0, 30] and [60, 90] and [120, 150]; one hour, one day.
    let minutes = store
        .monitor_tallies(&t, &m.id, Grain::Minute, base, base + 3_600_000_000)
        .await
        .unwrap();
    let counts: Vec<_> = minutes
        .iter()
        .map(|(b, t)| ((b - base) / 60_000_000, t.up, t.down, t.maintenance))
        .collect();
    assert_eq!(counts, [(0, 1, 1, 0), (1, 0, 2, 0), (2, 1, 0, 1)]);
    for grain in [Grain::Hour, Grain::Day] {
        let all = sum(&store
            .monitor_tallies(&t, &m.id, grain, 0, i64::MAX)
            .await
            .unwrap());
        assert_eq!((all.up, all.down, all.maintenance), (2, 3, 1), "{grain:?}");
        assert_eq!(
            all.down_ms, 90_000,
            "each failure stands for its 30 s interval"
        );
        assert_eq!(all.uptime_percent(), Some(40.0));
        assert_eq!(all.latency.count(), 5);
    }
    assert!(store
        .monitor_tallies(&other, &m.id, Grain::Day, 0, i64::MAX)
        .await
        .unwrap()
        .is_empty());

    // Incidents: listed newest first, filtered by overlap, annotated.
    let second_open = [(180, false), (210, false)];
    for (s, up) in second_open {
        store
            .record_checks(vec![result(&t, &m.id, None, at(s), up)])
            .await
            .unwrap();
    }
    let all = store
        .list_incidents(&t, &m.id, None, page(10, None))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(all.items[1].id, incident.id);
    assert_eq!(all.items[0].resolved_at, None);
    let first_page = store
        .list_incidents(&t, &m.id, None, page(1, None))
        .await
        .unwrap();
    let next = store
        .list_incidents(&t, &m.id, None, page(1, first_page.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(next.items[0].id, incident.id);
    let early = store
        .list_incidents(&t, &m.id, Some((base, base + 100_000_000)), page(10, None))
        .await
        .unwrap();
    assert_eq!(early.items.len(), 1, "only the first was open before 100 s");
    let late = store
        .list_incidents(
            &t,
            &m.id,
            Some((base + 121_000_000, i64::MAX)),
            page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(late.items.len(), 1, "the first was resolved at 120 s");
    let noted = store
        .update_incident(&t, &incident.id, Some("deploy broke /health".into()), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(noted.cause.as_deref(), Some("deploy broke /health"));
    let noted = store
        .update_incident(&t, &incident.id, None, Some("rolled back".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(noted.cause.as_deref(), Some("deploy broke /health"));
    assert_eq!(noted.notes.as_deref(), Some("rolled back"));
    assert!(store
        .update_incident(&other, &incident.id, Some("x".into()), None)
        .await
        .unwrap()
        .is_none());
}

async fn old_results_and_rollups_are_pruned_in_steps(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let m = store.create_monitor(&t, spec("api", 30)).await.unwrap();
    let day = 86_400i64;
    let base = 1_800_000_000i64 / day * day;
    let at = |d: i64| Timestamp::from_second(base + d * day).unwrap();
    // One result a day for 10 days.
    for d in 0..10 {
        store
            .record_checks(vec![result(&t, &m.id, None, at(d), d % 2 == 0)])
            .await
            .unwrap();
    }
    let retention = MonitorRetention {
        checks_s: 3 * day,
        minutes_s: 3 * day,
        hours_s: 5 * day,
        days_s: 8 * day,
    };
    let now = at(10);
    let mut gone = 0;
    loop {
        let step = store.prune_monitor_data(now, retention, 4).await.unwrap();
        assert!(step <= 4);
        if step == 0 {
            break;
        }
        gone += step;
    }
    // Raw and minutes: days 0–6 go (7 + 7); hours: 0–4 (5); days: 0–1 (2).
    assert_eq!(gone, 21);
    let counted = |grain| {
        let store = store.clone();
        let (t, id) = (t.clone(), m.id.clone());
        async move {
            store
                .monitor_tallies(&t, &id, grain, 0, i64::MAX)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(counted(Grain::Minute).await, 3);
    assert_eq!(counted(Grain::Hour).await, 5);
    assert_eq!(counted(Grain::Day).await, 8);
}

on_every_adapter!(
    monitors_are_kept_per_tenant,
    each_slot_is_claimed_once_and_a_dead_probers_lease_lapses,
    results_roll_up_and_open_and_resolve_incidents,
    old_results_and_rollups_are_pruned_in_steps,
);
