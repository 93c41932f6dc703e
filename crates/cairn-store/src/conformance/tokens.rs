//! The conformance checks of API tokens ([`Store::create_token`],
//! [`Store::tokens`], [`Store::revoke_token`], [`Store::token_by_hash`],
//! [`Store::any_live_token`]): one live token per name, revocation by name
//! or id, lookup by hash with everything the caller checks, liveness, and
//! the last use recorded at most once a minute; web sessions
//! ([`Store::start_session`], [`Store::session_by_hash`],
//! [`Store::end_session`]).

use std::sync::Arc;

use cairn_core::auth::{Role, Secret, SessionKey, csrf_token};
use cairn_core::{Timestamp, TokenId};

use super::t;
use crate::{NewSession, NewToken, SessionRecord, Store, StoreError, TokenRecord};

fn token(name: &str, role: Role, at: Timestamp) -> (Secret, NewToken) {
    let secret = Secret::generate();
    let new = NewToken {
        id: TokenId::new(at),
        name: name.to_owned(),
        role,
        queues: Vec::new(),
        workflows: None,
        prefix: secret.prefix(),
        hash: secret.hash(),
        created_at: at,
        expires_at: None,
    };
    (secret, new)
}

async fn last_used<S: Store>(store: &S) -> Option<Timestamp> {
    store.tokens().await.expect("tokens")[0].last_used_at
}

async fn names<S: Store>(store: &S) -> Vec<(String, bool)> {
    store.tokens().await.expect("tokens").into_iter().map(|t| (t.name, t.revoked_at.is_some())).collect()
}

pub async fn tokens_are_created_listed_and_revoked_by_name_or_id<S: Store>(store: Arc<S>) {
    let s = &*store;
    assert!(s.tokens().await.unwrap().is_empty());
    assert!(!s.any_live_token(t(0)).await.unwrap());

    let (_, ci) = token("ci", Role::Operator, t(1_000));
    let (_, ro) = token("dashboard", Role::Viewer, t(2_000));
    s.create_token(ci.clone()).await.expect("create ci");
    s.create_token(ro.clone()).await.expect("create dashboard");
    assert!(s.any_live_token(t(3_000)).await.unwrap());
    assert_eq!(names(s).await, [("dashboard".to_owned(), false), ("ci".to_owned(), false)], "newest first");
    let listed = s.tokens().await.unwrap();
    assert_eq!(listed[1].prefix, ci.prefix);
    assert_eq!((listed[1].id, listed[1].role, listed[1].created_at), (ci.id, Role::Operator, t(1_000)));

    // A second live token of a name is refused, and writes nothing.
    let (_, again) = token("ci", Role::Admin, t(4_000));
    let err = s.create_token(again.clone()).await.expect_err("a live ci exists");
    assert!(
        matches!(&err, StoreError::InvalidChange(m) if m.contains("\"ci\"") && m.contains("revoke")),
        "{err}"
    );
    assert_eq!(s.tokens().await.unwrap().len(), 2);

    // By name.
    let revoked = s.revoke_token("ci".into(), t(5_000)).await.unwrap().expect("ci revoked");
    assert_eq!((revoked.id, revoked.revoked_at), (ci.id, Some(t(5_000))));
    assert!(!revoked.is_live(t(5_000)));
    assert_eq!(s.revoke_token("ci".into(), t(6_000)).await.unwrap(), None, "revoked already");
    assert_eq!(s.revoke_token("nobody".into(), t(6_000)).await.unwrap(), None);

    // The name is free again.
    s.create_token(again.clone()).await.expect("ci again after revoking");
    assert_eq!(
        names(s).await,
        [("ci".to_owned(), false), ("dashboard".to_owned(), false), ("ci".to_owned(), true)]
    );

    // By id, never dated before the token was made.
    let revoked = s.revoke_token(ro.id.to_string(), t(0)).await.unwrap().expect("by id");
    assert_eq!((revoked.name.as_str(), revoked.revoked_at), ("dashboard", Some(t(2_000))));
    let revoked = s.revoke_token(again.id.to_string(), t(7_000)).await.unwrap().expect("by id");
    assert_eq!(revoked.role, Role::Admin);
    assert!(!s.any_live_token(t(8_000)).await.unwrap());
}

pub async fn tokens_are_found_by_hash_with_their_role_queues_scope_and_liveness<S: Store>(store: Arc<S>) {
    let s = &*store;
    let (secret, mut worker) = token("gpu-workers", Role::Worker, t(1_000));
    worker.queues = vec!["gpu".into(), "gpu-large".into()];
    worker.workflows = Some("etl-*".into());
    worker.expires_at = Some(t(100_000));
    s.create_token(worker.clone()).await.unwrap();

    let found: TokenRecord = s.token_by_hash(secret.hash(), t(2_000)).await.unwrap().expect("by hash");
    assert_eq!(found.id, worker.id);
    assert_eq!(found.role, Role::Worker);
    assert_eq!(found.queues, ["gpu", "gpu-large"]);
    assert_eq!(found.workflows.as_deref(), Some("etl-*"));
    assert_eq!(found.expires_at, Some(t(100_000)));
    assert!(found.is_live(t(2_000)));
    assert!(!found.is_live(t(100_000)), "expired at its expiry");
    assert!(found.is_expired(t(100_000)));
    assert_eq!(s.token_by_hash(Secret::generate().hash(), t(2_000)).await.unwrap(), None);

    // The use is recorded, then not again within a minute.
    assert_eq!(found.last_used_at, Some(t(2_000)));
    assert_eq!(last_used(s).await, Some(t(2_000)));
    let again = s.token_by_hash(secret.hash(), t(30_000)).await.unwrap().unwrap();
    assert_eq!(again.last_used_at, Some(t(2_000)), "less than a minute later");
    assert_eq!(last_used(s).await, Some(t(2_000)));
    let later = s.token_by_hash(secret.hash(), t(62_000)).await.unwrap().unwrap();
    assert_eq!(later.last_used_at, Some(t(62_000)));
    assert_eq!(last_used(s).await, Some(t(62_000)));

    // Expired: not live, and found all the same; its name is free.
    assert!(s.any_live_token(t(99_999)).await.unwrap());
    assert!(!s.any_live_token(t(100_000)).await.unwrap());
    let expired = s.token_by_hash(secret.hash(), t(200_000)).await.unwrap().unwrap();
    assert!(!expired.is_live(t(200_000)));
    let (_, renewed) = token("gpu-workers", Role::Worker, t(200_000));
    s.create_token(renewed).await.expect("an expired token gives its name up");
    let old = s.token_by_hash(secret.hash(), t(200_001)).await.unwrap().unwrap();
    assert_eq!(old.revoked_at, Some(t(100_000)), "recorded revoked at its expiry");
    assert!(old.is_expired(t(200_001)));

    // Revoked: found, not live, and at once.
    let (secret, viewer) = token("viewer", Role::Viewer, t(300_000));
    s.create_token(viewer).await.unwrap();
    assert!(s.token_by_hash(secret.hash(), t(300_001)).await.unwrap().unwrap().is_live(t(300_001)));
    s.revoke_token("viewer".into(), t(300_002)).await.unwrap().expect("revoked");
    let revoked = s.token_by_hash(secret.hash(), t(300_003)).await.unwrap().unwrap();
    assert!(!revoked.is_live(t(300_003)));
    assert!(!revoked.is_expired(t(300_003)));
}

/// A web session acts as its token: found by its key's hash with the token,
/// the token's use recorded; it ends at sign-out (only while live, and only
/// that one), at its expiry, and with its token; ended sessions are deleted
/// when the next one starts.
pub async fn sessions_act_as_their_token_and_end_with_sign_out_expiry_or_revocation<S: Store>(store: Arc<S>) {
    let s = &*store;
    let (_, ops) = token("ops", Role::Operator, t(1_000));
    s.create_token(ops.clone()).await.unwrap();
    let session = |at: Timestamp, until: Timestamp| {
        let key = SessionKey::generate();
        let new = NewSession {
            hash: key.hash(),
            token: ops.id,
            csrf: csrf_token(),
            created_at: at,
            expires_at: until,
        };
        (key, new)
    };
    let (a, first) = session(t(2_000), t(50_000));
    let (b, second) = session(t(3_000), t(60_000));
    s.start_session(first.clone()).await.expect("a session");
    s.start_session(second.clone()).await.expect("another");

    let found: SessionRecord = s.session_by_hash(a.hash(), t(4_000)).await.unwrap().expect("by hash");
    assert_eq!((found.token.id, found.token.role), (ops.id, Role::Operator));
    assert_eq!((&found.csrf, found.created_at, found.expires_at), (&first.csrf, t(2_000), t(50_000)));
    assert!(found.is_live(t(4_000)) && !found.is_live(t(50_000)));
    assert_eq!(found.token.last_used_at, Some(t(4_000)), "a session's use is its token's");
    assert_eq!(last_used(s).await, Some(t(4_000)));
    assert_eq!(s.session_by_hash(SessionKey::generate().hash(), t(4_000)).await.unwrap(), None);

    // Signing out ends that session only, once.
    let ended = s.end_session(a.hash(), t(5_000)).await.unwrap().expect("ended");
    assert_eq!(ended.name, "ops");
    assert_eq!(s.end_session(a.hash(), t(6_000)).await.unwrap(), None, "ended already");
    assert_eq!(s.end_session(SessionKey::generate().hash(), t(6_000)).await.unwrap(), None);
    let gone = s.session_by_hash(a.hash(), t(6_000)).await.unwrap().expect("kept until the next start");
    assert_eq!(gone.expires_at, t(5_000));
    assert!(!gone.is_live(t(6_000)));
    assert!(s.session_by_hash(b.hash(), t(6_000)).await.unwrap().unwrap().is_live(t(6_000)));

    // Revoking the token ends its sessions at once.
    s.revoke_token("ops".into(), t(7_000)).await.unwrap().expect("revoked");
    assert!(!s.session_by_hash(b.hash(), t(7_001)).await.unwrap().unwrap().is_live(t(7_001)));

    // The next session's start deletes those that ended.
    let (_, admin) = token("root", Role::Admin, t(8_000));
    s.create_token(admin.clone()).await.unwrap();
    let (c, mut third) = session(t(9_000), t(90_000));
    third.token = admin.id;
    s.start_session(third).await.unwrap();
    assert_eq!(s.session_by_hash(a.hash(), t(9_001)).await.unwrap(), None, "ended, deleted");
    assert!(s.session_by_hash(b.hash(), t(9_001)).await.unwrap().is_some(), "not past its expiry");
    let root = s.session_by_hash(c.hash(), t(9_001)).await.unwrap().unwrap();
    assert_eq!(root.token.name, "root");
    assert!(root.is_live(t(89_999)) && !root.is_live(t(90_000)));
}
