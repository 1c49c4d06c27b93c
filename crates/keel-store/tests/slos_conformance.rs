//! The SLO store contract (definitions per tenant, minute counts added from
//! requests and from recorded checks, one open alert per severity, pruning)
//! with the notification channels and maintenance windows beside them, one
//! suite run unchanged on every store adapter (SQLite, PostgreSQL).

mod adapters;

use adapters::{Adapter, Kind};
use jiff::Timestamp;
use keel_core::{
    clock::Clock,
    slo::{
        budget::{Counts, Severity},
        SloSpec,
    },
    uptime::monitor::MonitorSpec,
};
use keel_store::{
    monitors::{CheckResult, IncidentChange},
    notice_outbox::{NoticeEvent, NoticeSubject, PendingNotice},
    slos::{SloCount, MINUTE_US},
    PageRequest, StoreError, TenantId,
};
use serde_json::json;

fn request_slo(name: &str) -> SloSpec {
    SloSpec::parse(&json!({
        "name": name, "objective": 99.9, "window": "30d",
        "sli": {"requests": {"route": "/hello/*", "good": "status < 500"}}
    }))
    .unwrap()
}

fn counts(good: u64, total: u64) -> Counts {
    Counts { good, total }
}

async fn slos_are_kept_per_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let api = store.create_slo(&t, request_slo("api")).await.unwrap();
    assert_eq!(api.spec, request_slo("api"));
    assert_eq!(api.created_at, a.clock.now());
    assert!(matches!(
        store.create_slo(&t, request_slo("api")).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_slo(&other, request_slo("api")).await.unwrap();
    let second = store.create_slo(&t, request_slo("web")).await.unwrap();
    assert_eq!(store.slo(&t, &api.id).await.unwrap(), Some(api.clone()));
    assert_eq!(store.slo(&other, &api.id).await.unwrap(), None);
    let first = store
        .list_slos(
            &t,
            PageRequest {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items, vec![api.clone()]);
    let rest = store
        .list_slos(
            &t,
            PageRequest {
                limit: 1,
                cursor: first.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items, vec![second.clone()]);
    assert_eq!(rest.next_cursor, None);
    assert_eq!(store.all_slos().await.unwrap().len(), 3);
    assert!(!store.delete_slo(&other, &second.id).await.unwrap());
    assert!(store.delete_slo(&t, &second.id).await.unwrap());
    assert_eq!(store.slo(&t, &second.id).await.unwrap(), None);
}

async fn counts_add_up_per_minute_and_sum_over_ranges(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let slo = store.create_slo(&t, request_slo("api")).await.unwrap();
    let add = |minute: i64, c: Counts| SloCount {
        tenant: t.clone(),
        slo_id: slo.id.clone(),
        minute: minute * MINUTE_US,
        counts: c,
    };
    // Two replicas flushing the same minute add up.
    store
        .add_slo_counts(vec![add(10, counts(5, 6)), add(11, counts(3, 3))])
        .await
        .unwrap();
    store
        .add_slo_counts(vec![add(10, counts(1, 2))])
        .await
        .unwrap();
    // Counts of an SLO that does not exist (deleted meanwhile) are dropped.
    store
        .add_slo_counts(vec![SloCount {
            slo_id: "gone".into(),
            ..add(10, counts(1, 1))
        }])
        .await
        .unwrap();
    let sums = store
        .slo_counts(
            &t,
            &slo.id,
            &[
                (0, 20 * MINUTE_US),
                (10 * MINUTE_US, 11 * MINUTE_US),
                (11 * MINUTE_US, 12 * MINUTE_US),
                (12 * MINUTE_US, 20 * MINUTE_US),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        sums,
        vec![counts(9, 11), counts(6, 8), counts(3, 3), counts(0, 0)]
    );
    let other = store.create_tenant("o").await.unwrap().id;
    assert_eq!(
        store
            .slo_counts(&other, &slo.id, &[(0, 20 * MINUTE_US)])
            .await
            .unwrap(),
        vec![counts(0, 0)]
    );
    // Pruning goes by minute, in steps.
    assert_eq!(store.prune_slo_counts(11 * MINUTE_US, 10).await.unwrap(), 1);
    assert_eq!(store.prune_slo_counts(11 * MINUTE_US, 10).await.unwrap(), 0);
    assert_eq!(
        store
            .slo_counts(&t, &slo.id, &[(0, 20 * MINUTE_US)])
            .await
            .unwrap(),
        vec![counts(3, 3)]
    );
    // Deleting the SLO takes its counts.
    store.delete_slo(&t, &slo.id).await.unwrap();
    let again = store.create_slo(&t, request_slo("api")).await.unwrap();
    assert_ne!(again.id, slo.id);
    assert_eq!(
        store
            .slo_counts(&t, &slo.id, &[(0, 20 * MINUTE_US)])
            .await
            .unwrap(),
        vec![counts(0, 0)]
    );
}

async fn recorded_checks_count_for_the_monitors_slos(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let monitor = store
        .create_monitor(
            &t,
            MonitorSpec::parse(&json!({"name": "site", "kind": "push", "interval_s": 60})).unwrap(),
        )
        .await
        .unwrap();
    let slo = store
        .create_slo(
            &t,
            SloSpec::parse(&json!({
                "name": "site", "objective": 99, "sli": {"monitor": monitor.id}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let beat = |at: Timestamp, up: bool, maintenance: bool| CheckResult {
        tenant: t.clone(),
        monitor_id: monitor.id.clone(),
        scheduled_at: None,
        at,
        up,
        maintenance,
        latency_us: None,
        status: None,
        failure: (!up).then(|| "down".to_string()),
        next_check_at: at.as_microsecond() + 60_000_000,
    };
    let now = a.clock.now();
    let later = now + jiff::SignedDuration::from_secs(61);
    store
        .record_checks(vec![
            beat(now, true, false),
            beat(now, false, false),
            // Maintenance burns no budget: not an event at all.
            beat(now, false, true),
            beat(later, true, false),
        ])
        .await
        .unwrap();
    let minute = now.as_microsecond().div_euclid(MINUTE_US) * MINUTE_US;
    let sums = store
        .slo_counts(
            &t,
            &slo.id,
            &[
                (minute, minute + MINUTE_US),
                (minute, minute + 3 * MINUTE_US),
            ],
        )
        .await
        .unwrap();
    assert_eq!(sums, vec![counts(1, 2), counts(2, 3)]);
}

async fn one_alert_is_open_per_severity(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let slo = store.create_slo(&t, request_slo("api")).await.unwrap();
    let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
    let page = store
        .open_slo_alert(&t, &slo.id, Severity::Page, "1h/5m", at(0))
        .await
        .unwrap()
        .expect("the first opens it");
    assert_eq!(page.windows, "1h/5m");
    assert_eq!(page.resolved_at, None);
    assert_eq!(
        store
            .open_slo_alert(&t, &slo.id, Severity::Page, "6h/30m", at(1))
            .await
            .unwrap(),
        None,
        "already open: another evaluator does not notify again"
    );
    let ticket = store
        .open_slo_alert(&t, &slo.id, Severity::Ticket, "1d/2h", at(2))
        .await
        .unwrap()
        .unwrap();
    let resolved = store
        .resolve_slo_alert(&t, &slo.id, Severity::Page, at(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (resolved.id.as_str(), resolved.resolved_at),
        (page.id.as_str(), Some(at(3)))
    );
    assert_eq!(
        store
            .resolve_slo_alert(&t, &slo.id, Severity::Page, at(4))
            .await
            .unwrap(),
        None
    );
    // Once resolved, the next burn opens a new one.
    let again = store
        .open_slo_alert(&t, &slo.id, Severity::Page, "1h/5m", at(5))
        .await
        .unwrap()
        .unwrap();
    let listed: Vec<String> = store
        .slo_alerts(&t, &slo.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, vec![again.id, ticket.id, page.id]);
    let other = TenantId("someone-else".into());
    assert!(store
        .slo_alerts(&other, &slo.id, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Opening or resolving an incident or an alert queues its notice in the same
/// write; relays claim notices under a lease, oldest first, and remove them once
/// published. A relay that dies with a claim leaves it to the next after the lease.
async fn changes_queue_their_notices_until_published(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let lease = std::time::Duration::from_secs(30);
    assert!(store.claim_notices(10, lease).await.unwrap().is_empty());
    let monitor = store
        .create_monitor(
            &t,
            MonitorSpec::parse(&json!({
                "name": "site", "kind": "push", "interval_s": 60, "incident_after": 1
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let beat = |up: bool| CheckResult {
        tenant: t.clone(),
        monitor_id: monitor.id.clone(),
        scheduled_at: None,
        at: a.clock.now(),
        up,
        maintenance: false,
        latency_us: None,
        status: None,
        failure: (!up).then(|| "no heartbeat".to_string()),
        next_check_at: a.clock.now().as_microsecond() + 60_000_000,
    };
    let opened = store.record_checks(vec![beat(false)]).await.unwrap();
    let incident = match opened.as_slice() {
        [IncidentChange::Opened { incident, .. }] => incident.clone(),
        other => panic!("one incident opens: {other:?}"),
    };
    assert_eq!(
        store.incident(&t, &incident.id).await.unwrap(),
        Some(incident.clone())
    );
    assert_eq!(
        store
            .incident(&TenantId("someone-else".into()), &incident.id)
            .await
            .unwrap(),
        None
    );
    store.record_checks(vec![beat(true)]).await.unwrap();
    let slo = store.create_slo(&t, request_slo("api")).await.unwrap();
    let now = a.clock.now();
    let alert = store
        .open_slo_alert(&t, &slo.id, Severity::Page, "1h/5m", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.slo_alert(&t, &alert.id).await.unwrap(),
        Some(alert.clone())
    );
    // Refused opens and resolves of nothing queue nothing.
    assert!(store
        .open_slo_alert(&t, &slo.id, Severity::Page, "1h/5m", now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .resolve_slo_alert(&t, &slo.id, Severity::Ticket, now)
        .await
        .unwrap()
        .is_none());
    store
        .resolve_slo_alert(&t, &slo.id, Severity::Page, now)
        .await
        .unwrap()
        .unwrap();

    let first = store.claim_notices(3, lease).await.unwrap();
    let seen = |p: &[PendingNotice]| -> Vec<(NoticeSubject, String, NoticeEvent)> {
        p.iter()
            .map(|n| (n.subject, n.subject_id.clone(), n.event))
            .collect()
    };
    assert_eq!(
        seen(&first),
        vec![
            (
                NoticeSubject::Incident,
                incident.id.clone(),
                NoticeEvent::Opened
            ),
            (
                NoticeSubject::Incident,
                incident.id.clone(),
                NoticeEvent::Resolved
            ),
            (
                NoticeSubject::SloAlert,
                alert.id.clone(),
                NoticeEvent::Opened
            ),
        ]
    );
    assert!(first.iter().all(|n| n.tenant == t));
    let rest = store.claim_notices(10, lease).await.unwrap();
    assert_eq!(
        seen(&rest),
        vec![(
            NoticeSubject::SloAlert,
            alert.id.clone(),
            NoticeEvent::Resolved
        )],
        "leased notices are not claimed twice"
    );
    store
        .finish_notices(first.iter().map(|n| n.id).collect())
        .await
        .unwrap();
    assert!(store.claim_notices(10, lease).await.unwrap().is_empty());
    // The relay holding the last one died: after the lease it is claimed again.
    a.advance(31);
    let again = store.claim_notices(10, lease).await.unwrap();
    assert_eq!(seen(&again), seen(&rest));
    store
        .finish_notices(again.iter().map(|n| n.id).collect())
        .await
        .unwrap();
    a.advance(31);
    assert!(store.claim_notices(10, lease).await.unwrap().is_empty());
}

async fn channels_and_maintenance_windows_are_kept_per_tenant(kind: Kind) {
    let Some(a) = Adapter::open(kind).await else {
        return;
    };
    let store = &a.store;
    let t = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("o").await.unwrap().id;
    let spec = keel_core::channel::ChannelSpec::parse(
        &json!({"name": "ops", "kind": "webhook", "url": "https://example.com/hook"}),
    )
    .unwrap();
    let ops = store.create_channel(&t, spec.clone()).await.unwrap();
    assert!(matches!(
        store.create_channel(&t, spec.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_channel(&other, spec).await.unwrap();
    assert_eq!(store.channel(&t, &ops.id).await.unwrap(), Some(ops.clone()));
    assert_eq!(store.channel(&other, &ops.id).await.unwrap(), None);
    assert_eq!(store.list_channels(&t).await.unwrap(), vec![ops.clone()]);
    assert!(!store.delete_channel(&other, &ops.id).await.unwrap());
    assert!(store.delete_channel(&t, &ops.id).await.unwrap());
    assert!(store.list_channels(&t).await.unwrap().is_empty());

    let window = keel_core::uptime::maintenance::MaintenanceSpec::parse(&json!({
        "name": "upgrade", "starts_at": "2026-10-01T02:00:00Z", "ends_at": "2026-10-01T03:00:00Z"
    }))
    .unwrap();
    let w = store.create_window(&t, window.clone()).await.unwrap();
    assert_eq!(w.spec, window);
    store.create_window(&other, window).await.unwrap();
    assert_eq!(store.list_windows(&t).await.unwrap(), vec![w.clone()]);
    assert_eq!(store.all_windows().await.unwrap().len(), 2);
    assert!(!store.delete_window(&other, &w.id).await.unwrap());
    assert!(store.delete_window(&t, &w.id).await.unwrap());
    assert!(store.list_windows(&t).await.unwrap().is_empty());
}

on_every_adapter!(
    channels_and_maintenance_windows_are_kept_per_tenant,
    slos_are_kept_per_tenant,
    counts_add_up_per_minute_and_sum_over_ranges,
    recorded_checks_count_for_the_monitors_slos,
    one_alert_is_open_per_severity,
    changes_queue_their_notices_until_published,
);
