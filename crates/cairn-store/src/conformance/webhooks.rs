//! The conformance checks of the webhook outbox ([`Store::enqueue_delivery`],
//! [`Store::due_deliveries`], [`Store::record_delivery_attempt`],
//! [`Store::webhook_deliveries`]): one row per (webhook, key) however often
//! it is enqueued, concurrently too; due rows by time; attempts recorded
//! only on pending rows; the log newest first, filtered and paged.

use std::sync::Arc;

use super::t;
use crate::{AttemptNext, DeliveryAttempt, DeliveryQuery, DeliveryState, NewDelivery, Store};

fn delivery(webhook: &str, key: &str, at: i64) -> NewDelivery {
    NewDelivery {
        webhook: webhook.into(),
        kind: "run_failed".into(),
        key: key.into(),
        workflow: Some("etl".into()),
        body: format!(r#"{{"key":"{key}"}}"#),
        created_at: t(at),
        max_attempts: 3,
    }
}

pub async fn deliveries_are_enqueued_once_per_webhook_and_key<S: Store>(store: Arc<S>) {
    let s = &*store;
    let first = s.enqueue_delivery(delivery("ops", "run_failed:a", 1_000)).await.unwrap();
    assert!(first.is_some(), "a new key is enqueued");
    assert_eq!(
        s.enqueue_delivery(delivery("ops", "run_failed:a", 2_000)).await.unwrap(),
        None,
        "again: nothing"
    );
    assert!(
        s.enqueue_delivery(delivery("pager", "run_failed:a", 2_000)).await.unwrap().is_some(),
        "per webhook"
    );

    // Servers announcing one event together agree on one row.
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(
                async move { store.enqueue_delivery(delivery("ops", "anomaly:x:raised", 3_000)).await },
            )
        })
        .collect();
    let mut won = 0;
    for r in racing {
        won += usize::from(r.await.unwrap().unwrap().is_some());
    }
    assert_eq!(won, 1, "one of the concurrent enqueues makes the row");

    let all = s.webhook_deliveries(DeliveryQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let row = all.iter().find(|d| d.id == first.unwrap()).unwrap();
    assert_eq!(
        (row.webhook.as_str(), row.kind.as_str(), row.key.as_str(), row.workflow.as_deref()),
        ("ops", "run_failed", "run_failed:a", Some("etl"))
    );
    assert_eq!(row.body, r#"{"key":"run_failed:a"}"#);
    assert_eq!(
        (row.created_at, row.state, row.attempts, row.max_attempts),
        (t(1_000), DeliveryState::Pending, 0, 3)
    );
    assert_eq!((row.next_attempt_at, row.last_attempt_at, row.last_status), (Some(t(1_000)), None, None));
    assert_eq!((row.last_error.as_deref(), row.delivered_at), (None, None));
}

pub async fn due_deliveries_follow_their_attempts<S: Store>(store: Arc<S>) {
    let s = &*store;
    let a = s.enqueue_delivery(delivery("ops", "a", 1_000)).await.unwrap().unwrap();
    let b = s.enqueue_delivery(delivery("ops", "b", 2_000)).await.unwrap().unwrap();
    let c = s.enqueue_delivery(delivery("ops", "c", 3_000)).await.unwrap().unwrap();
    let ids = |ds: Vec<crate::Delivery>| ds.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(s.due_deliveries(t(500), 10).await.unwrap()), Vec::<i64>::new(), "none due before");
    assert_eq!(ids(s.due_deliveries(t(2_000), 10).await.unwrap()), [a, b], "due by time");
    assert_eq!(ids(s.due_deliveries(t(9_000), 2).await.unwrap()), [a, b], "limited, longest due first");

    // a: fails, retried later; b: delivered; c: given up.
    let retry = DeliveryAttempt {
        id: a,
        at: t(4_000),
        status: Some(503),
        error: Some("503 Service Unavailable".into()),
        next: AttemptNext::RetryAt(t(14_000)),
    };
    assert!(s.record_delivery_attempt(retry).await.unwrap());
    let ok =
        DeliveryAttempt { id: b, at: t(4_100), status: Some(204), error: None, next: AttemptNext::Delivered };
    assert!(s.record_delivery_attempt(ok.clone()).await.unwrap());
    assert!(!s.record_delivery_attempt(ok).await.unwrap(), "a delivered row takes no more attempts");
    let refused = DeliveryAttempt {
        id: c,
        at: t(4_200),
        status: Some(404),
        error: Some("404 Not Found".into()),
        next: AttemptNext::GiveUp,
    };
    assert!(s.record_delivery_attempt(refused).await.unwrap());
    let unknown =
        DeliveryAttempt { id: c + 1_000, at: t(4_300), status: None, error: None, next: AttemptNext::GiveUp };
    assert!(!s.record_delivery_attempt(unknown).await.unwrap());

    assert_eq!(
        ids(s.due_deliveries(t(13_999), 10).await.unwrap()),
        Vec::<i64>::new(),
        "a waits for its retry"
    );
    assert_eq!(ids(s.due_deliveries(t(14_000), 10).await.unwrap()), [a]);

    let all = s.webhook_deliveries(DeliveryQuery::default()).await.unwrap();
    let get = |id| all.iter().find(|d| d.id == id).unwrap();
    let (ra, rb, rc) = (get(a), get(b), get(c));
    assert_eq!((ra.state, ra.attempts, ra.next_attempt_at), (DeliveryState::Pending, 1, Some(t(14_000))));
    assert_eq!((ra.last_attempt_at, ra.last_status), (Some(t(4_000)), Some(503)));
    assert_eq!(ra.last_error.as_deref(), Some("503 Service Unavailable"));
    assert_eq!(
        (rb.state, rb.attempts, rb.delivered_at, rb.next_attempt_at),
        (DeliveryState::Delivered, 1, Some(t(4_100)), None)
    );
    assert_eq!((rb.last_status, rb.last_error.as_deref()), (Some(204), None));
    assert_eq!(
        (rc.state, rc.attempts, rc.delivered_at, rc.last_status),
        (DeliveryState::Failed, 1, None, Some(404))
    );
}

pub async fn deliveries_read_back_newest_first_by_state_webhook_and_page<S: Store>(store: Arc<S>) {
    let s = &*store;
    let mut ids = Vec::new();
    for (i, webhook) in ["ops", "pager", "ops", "ops"].into_iter().enumerate() {
        let at = 1_000 * (i as i64 + 1);
        ids.push(s.enqueue_delivery(delivery(webhook, &format!("k{i}"), at)).await.unwrap().unwrap());
    }
    let done = DeliveryAttempt {
        id: ids[2],
        at: t(9_000),
        status: Some(200),
        error: None,
        next: AttemptNext::Delivered,
    };
    s.record_delivery_attempt(done).await.unwrap();
    let list = |q: DeliveryQuery| async move {
        s.webhook_deliveries(q).await.unwrap().into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(list(DeliveryQuery::default()).await, newest_first);
    assert_eq!(
        list(DeliveryQuery { webhook: Some("ops".into()), ..DeliveryQuery::default() }).await,
        [ids[3], ids[2], ids[0]]
    );
    assert_eq!(
        list(DeliveryQuery { state: Some(DeliveryState::Delivered), ..DeliveryQuery::default() }).await,
        [ids[2]]
    );
    assert_eq!(
        list(DeliveryQuery {
            state: Some(DeliveryState::Pending),
            webhook: Some("ops".into()),
            ..DeliveryQuery::default()
        })
        .await,
        [ids[3], ids[0]]
    );
    let page = list(DeliveryQuery { limit: 2, ..DeliveryQuery::default() }).await;
    assert_eq!(page, newest_first[..2]);
    let next = list(DeliveryQuery { before: Some(page[1]), limit: 2, ..DeliveryQuery::default() }).await;
    assert_eq!(next, newest_first[2..]);
}
