//! The conformance checks of the audit log ([`Store::record_audit`],
//! [`Store::audit_events`]): events read back newest first, filtered by
//! kind and actor, paged with `before`; and [`Store::token_by_hash`] adds a
//! `token_used` event only when it renews the token's last use.

use std::sync::Arc;

use cairn_core::TokenId;
use cairn_core::auth::{Role, Secret};

use super::t;
use crate::{AuditKind, AuditQuery, NewAuditEvent, NewToken, Store};

pub async fn audit_events_read_back_newest_first_by_kind_actor_and_page<S: Store>(store: Arc<S>) {
    let s = &*store;
    let events = [
        NewAuditEvent::new(t(1_000), AuditKind::TokenCreated, "cli", Some("ci".into()))
            .detail(serde_json::json!({"role": "operator"})),
        NewAuditEvent::new(t(2_000), AuditKind::AccessDenied, "ci", Some("POST /api/v1/tokens".into())),
        NewAuditEvent::new(t(3_000), AuditKind::TokenRevoked, "admin", Some("ci".into())),
        NewAuditEvent::new(t(4_000), AuditKind::AccessDenied, "viewer", None),
    ];
    for e in &events {
        s.record_audit(e.clone()).await.expect("record");
    }
    let all = s.audit_events(AuditQuery::default()).await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, events.iter().rev().map(|e| e.id).collect::<Vec<_>>(), "newest first");
    let first = &all[3];
    assert_eq!(
        (first.at, first.kind, first.actor.as_str(), first.target.as_deref(), first.detail.clone()),
        (t(1_000), AuditKind::TokenCreated, "cli", Some("ci"), Some(serde_json::json!({"role": "operator"})))
    );
    assert_eq!((all[0].target.as_deref(), all[0].detail.as_ref()), (None, None));

    let denied = s
        .audit_events(AuditQuery { kind: Some(AuditKind::AccessDenied), ..AuditQuery::default() })
        .await
        .unwrap();
    assert_eq!(denied.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(), ["viewer", "ci"]);
    let by_ci =
        s.audit_events(AuditQuery { actor: Some("ci".into()), ..AuditQuery::default() }).await.unwrap();
    assert_eq!(by_ci.iter().map(|e| e.kind).collect::<Vec<_>>(), [AuditKind::AccessDenied]);

    let page = s.audit_events(AuditQuery { limit: 2, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..2]);
    let next = s
        .audit_events(AuditQuery { before: Some(page[1].id), limit: 2, ..AuditQuery::default() })
        .await
        .unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..]);
    let past = s.audit_events(AuditQuery { before: Some(ids[3]), ..AuditQuery::default() }).await.unwrap();
    assert!(past.is_empty());
}

pub async fn token_use_is_audited_when_it_is_recorded<S: Store>(store: Arc<S>) {
    let s = &*store;
    let secret = Secret::generate();
    s.create_token(NewToken {
        id: TokenId::new(t(1_000)),
        name: "ci".into(),
        role: Role::Viewer,
        queues: Vec::new(),
        workflows: None,
        prefix: secret.prefix(),
        hash: secret.hash(),
        created_at: t(1_000),
        expires_at: None,
    })
    .await
    .unwrap();
    let used = || async {
        s.audit_events(AuditQuery { kind: Some(AuditKind::TokenUsed), ..AuditQuery::default() })
            .await
            .unwrap()
    };
    // Three lookups within a minute, then one a minute later: two uses.
    for at in [2_000, 3_000, 61_999, 62_000] {
        s.token_by_hash(secret.hash(), t(at)).await.unwrap().expect("found");
    }
    let events = used().await;
    assert_eq!(
        events.iter().map(|e| (e.at, e.actor.as_str(), e.target.as_deref())).collect::<Vec<_>>(),
        [(t(62_000), "ci", Some("ci")), (t(2_000), "ci", Some("ci"))]
    );
}
