//! The conformance checks of alerts ([`Store::write_alert`],
//! [`Store::alerts`], [`Store::alert`]): one open alert per key, even when
//! raised concurrently; resolutions never dated before their alert; reads
//! newest first with filters and pages; a notice per write that changed
//! something.

use std::sync::Arc;

use cairn_core::alert::AlertKind;
use cairn_core::{AlertId, RunStatus, Timestamp};

use super::{next_notice, t};
use crate::{AlertKey, AlertQuery, AlertWrite, NewAlert, Notice, Store};

fn key(workflow: &str, status: Option<RunStatus>) -> AlertKey {
    AlertKey { kind: AlertKind::Anomaly, workflow: workflow.to_owned(), status }
}

fn raise(key: AlertKey, at: Timestamp) -> AlertWrite {
    AlertWrite::Raise(NewAlert {
        id: AlertId::new(at),
        message: format!("{} swung", key.workflow),
        details: serde_json::json!({ "recent_share": 0.5, "runs": [1, 2] }),
        key,
        raised_at: at,
    })
}

async fn write<S: Store>(store: &S, w: AlertWrite) -> Option<AlertId> {
    store.write_alert(w).await.expect("alert write")
}

async fn ids<S: Store>(store: &S, q: AlertQuery) -> Vec<AlertId> {
    store.alerts(q).await.expect("alerts").into_iter().map(|a| a.id).collect()
}

pub async fn alerts_open_once_per_key_and_resolve_after_they_were_raised<S: Store>(store: Arc<S>) {
    let s = &*store;
    let mut rx = store.notices();
    let failed = key("etl", Some(RunStatus::Failed));

    let first = write(s, raise(failed.clone(), t(1_000))).await.expect("raised");
    assert_eq!(next_notice(&mut rx).await, Notice::Alert { id: first });
    assert_eq!(write(s, raise(failed.clone(), t(2_000))).await, None, "the key is open already");

    let canceled =
        write(s, raise(key("etl", Some(RunStatus::Canceled)), t(3_000))).await.expect("other status");
    let other =
        write(s, raise(key("report", Some(RunStatus::Failed)), t(4_000))).await.expect("other workflow");
    let no_status = write(s, raise(key("etl", None), t(5_000))).await.expect("no status");
    assert_eq!(write(s, raise(key("etl", None), t(5_500))).await, None, "no status is a key too");

    // Resolved with a clock behind the raise: dated at the raise.
    let resolved = write(s, AlertWrite::Resolve { key: failed.clone(), at: t(500) }).await;
    assert_eq!(resolved, Some(first));
    let stored = s.alert(first).await.unwrap().expect("stored");
    assert_eq!((stored.raised_at, stored.resolved_at), (t(1_000), Some(t(1_000))));
    assert_eq!(stored.status, Some(RunStatus::Failed));
    assert_eq!(stored.kind, AlertKind::Anomaly);
    assert_eq!(stored.message, "etl swung");
    assert_eq!(stored.details, serde_json::json!({ "recent_share": 0.5, "runs": [1, 2] }));
    assert_eq!(write(s, AlertWrite::Resolve { key: failed.clone(), at: t(6_000) }).await, None);

    // Once resolved, the key may open again: a new alert.
    let again = write(s, raise(failed.clone(), t(7_000))).await.expect("raised again");
    assert_ne!(again, first);

    let all = AlertQuery::default();
    assert_eq!(ids(s, all.clone()).await, vec![again, no_status, other, canceled, first], "newest first");
    let open = AlertQuery { open_only: true, ..all.clone() };
    assert_eq!(ids(s, open.clone()).await, vec![again, no_status, other, canceled]);
    let etl = AlertQuery { workflows: vec!["etl".into()], ..all.clone() };
    assert_eq!(ids(s, etl.clone()).await, vec![again, no_status, canceled, first]);
    assert_eq!(ids(s, AlertQuery { kind: Some(AlertKind::Anomaly), ..all.clone() }).await.len(), 5);
    assert!(ids(s, AlertQuery { workflows: vec!["nothing".into()], ..all.clone() }).await.is_empty());
    let both = AlertQuery { workflows: vec!["etl".into(), "report".into()], ..all.clone() };
    assert_eq!(ids(s, both).await, vec![again, no_status, other, canceled, first], "any of several");

    // Pages: `before` the last of the previous page.
    let page = AlertQuery { limit: 2, ..etl.clone() };
    assert_eq!(ids(s, page.clone()).await, vec![again, no_status]);
    assert_eq!(ids(s, AlertQuery { before: Some(no_status), ..page.clone() }).await, vec![canceled, first]);
    assert!(ids(s, AlertQuery { before: Some(first), ..page }).await.is_empty());
    assert_eq!(s.alert(AlertId::new(t(9_000))).await.unwrap(), None);

    // Only writes that changed something were announced, in commit order.
    for expected in [canceled, other, no_status, first, again] {
        assert_eq!(next_notice(&mut rx).await, Notice::Alert { id: expected });
    }
}

pub async fn concurrent_raises_of_one_key_record_one_alert<S: Store>(store: Arc<S>) {
    let raises = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { write(&*store, raise(key("etl", Some(RunStatus::Failed)), t(i))).await })
    });
    let mut raised = Vec::new();
    for r in raises {
        raised.extend(r.await.expect("task"));
    }
    assert_eq!(raised.len(), 1, "exactly one raise wins: {raised:?}");
    assert_eq!(ids(&*store, AlertQuery { open_only: true, ..AlertQuery::default() }).await, raised);
}
