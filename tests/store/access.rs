//! Access grants: an issuer's subject is given subscriptions, once each,
//! up to a bound; issuer and subject compare exactly, subscriptions
//! ignoring case and as first granted.

use std::sync::Arc;

use tally::store::Store;
use tally::store::access::{GrantError, MAX_GRANTS_PER_SUBJECT};

use super::conformance;

conformance!(
    a_grant_is_listed_and_resolved_once,
    issuer_and_subject_compare_exactly,
    a_subscription_compares_ignoring_case_and_keeps_its_first_spelling,
    a_revoked_grant_is_gone,
    a_subject_holds_at_most_the_bound,
    values_out_of_bounds_are_refused,
);

const ISSUER: &str = "https://login.example/tenant-1/v2.0";
const OTHER_ISSUER: &str = "https://idp.example/realms/tally";

async fn a_grant_is_listed_and_resolved_once(store: Arc<dyn Store>) {
    assert!(store.grants().await.unwrap().is_empty());
    assert!(
        store
            .subscriptions_granted(ISSUER, "alice")
            .await
            .unwrap()
            .is_empty()
    );
    let before = store.clock().await.unwrap();
    let first = store.grant(ISSUER, "alice", "sub-b").await.unwrap();
    assert_eq!(
        (&*first.issuer, &*first.subject, &*first.subscription),
        (ISSUER, "alice", "sub-b")
    );
    // Stamped by the store's clock, to the millisecond.
    assert!(first.created_at >= before - chrono::Duration::milliseconds(1));
    assert!(first.created_at <= store.clock().await.unwrap());
    store.grant(ISSUER, "alice", "sub-a").await.unwrap();
    store.grant(OTHER_ISSUER, "bob", "sub-a").await.unwrap();

    // Again: the grant as first made, not a second one.
    let again = store.grant(ISSUER, "alice", "sub-b").await.unwrap();
    assert_eq!(again, first);

    assert_eq!(
        store.subscriptions_granted(ISSUER, "alice").await.unwrap(),
        ["sub-a", "sub-b"]
    );
    let listed: Vec<(String, String, String)> = store
        .grants()
        .await
        .unwrap()
        .into_iter()
        .map(|grant| (grant.issuer, grant.subject, grant.subscription))
        .collect();
    let row = |issuer: &str, subject: &str, subscription: &str| {
        (
            issuer.to_owned(),
            subject.to_owned(),
            subscription.to_owned(),
        )
    };
    assert_eq!(
        listed,
        [
            row(OTHER_ISSUER, "bob", "sub-a"),
            row(ISSUER, "alice", "sub-a"),
            row(ISSUER, "alice", "sub-b"),
        ]
    );
}

async fn issuer_and_subject_compare_exactly(store: Arc<dyn Store>) {
    store.grant(ISSUER, "Alice", "sub-1").await.unwrap();
    for (issuer, subject) in [
        (ISSUER, "alice"),
        (ISSUER, "ALICE"),
        ("https://LOGIN.example/tenant-1/v2.0", "Alice"),
        ("https://login.example/tenant-1/v2.0/", "Alice"),
        (OTHER_ISSUER, "Alice"),
    ] {
        assert!(
            store
                .subscriptions_granted(issuer, subject)
                .await
                .unwrap()
                .is_empty(),
            "{issuer} {subject}"
        );
        assert!(!store.revoke_grant(issuer, subject, "sub-1").await.unwrap());
    }
    // Another spelling is another subject: granted on its own.
    store.grant(ISSUER, "alice", "sub-2").await.unwrap();
    assert_eq!(
        store.subscriptions_granted(ISSUER, "Alice").await.unwrap(),
        ["sub-1"]
    );
    assert_eq!(
        store.subscriptions_granted(ISSUER, "alice").await.unwrap(),
        ["sub-2"]
    );
    assert_eq!(store.grants().await.unwrap().len(), 2);
}

async fn a_subscription_compares_ignoring_case_and_keeps_its_first_spelling(store: Arc<dyn Store>) {
    let first = store.grant(ISSUER, "alice", "Sub-Mixed").await.unwrap();
    let again = store.grant(ISSUER, "alice", "SUB-MIXED").await.unwrap();
    assert_eq!(again, first);
    assert_eq!(again.subscription, "Sub-Mixed");
    store.grant(ISSUER, "alice", "sub-a").await.unwrap();
    store.grant(ISSUER, "alice", "SUB-Z").await.unwrap();
    // Ordered ignoring case, the same on both databases.
    assert_eq!(
        store.subscriptions_granted(ISSUER, "alice").await.unwrap(),
        ["sub-a", "Sub-Mixed", "SUB-Z"]
    );
    assert!(
        store
            .revoke_grant(ISSUER, "alice", "sub-mixed")
            .await
            .unwrap()
    );
    assert_eq!(
        store.subscriptions_granted(ISSUER, "alice").await.unwrap(),
        ["sub-a", "SUB-Z"]
    );
}

async fn a_revoked_grant_is_gone(store: Arc<dyn Store>) {
    store.grant(ISSUER, "alice", "sub-1").await.unwrap();
    store.grant(ISSUER, "alice", "sub-2").await.unwrap();
    assert!(store.revoke_grant(ISSUER, "alice", "sub-1").await.unwrap());
    assert!(!store.revoke_grant(ISSUER, "alice", "sub-1").await.unwrap());
    assert!(!store.revoke_grant(ISSUER, "bob", "sub-2").await.unwrap());
    assert_eq!(
        store.subscriptions_granted(ISSUER, "alice").await.unwrap(),
        ["sub-2"]
    );
    assert!(store.revoke_grant(ISSUER, "alice", "sub-2").await.unwrap());
    assert!(store.grants().await.unwrap().is_empty());
    // Granted again after a revocation: a new grant.
    store.grant(ISSUER, "alice", "sub-1").await.unwrap();
    assert_eq!(
        store.subscriptions_granted(ISSUER, "alice").await.unwrap(),
        ["sub-1"]
    );
}

async fn a_subject_holds_at_most_the_bound(store: Arc<dyn Store>) {
    for n in 0..MAX_GRANTS_PER_SUBJECT {
        store
            .grant(ISSUER, "alice", &format!("sub-{n:04}"))
            .await
            .unwrap();
    }
    let refused = store.grant(ISSUER, "alice", "sub-one-more").await;
    match refused {
        Err(error @ GrantError::TooMany { .. }) => {
            let message = error.to_string();
            assert!(message.contains("'alice'"), "{message}");
            assert!(message.contains("1000"), "{message}");
            assert!(message.contains("revoke one"), "{message}");
        }
        other => panic!("expected TooMany, got {other:?}"),
    }
    // Granting one it holds is no new grant; another subject has its own bound.
    store.grant(ISSUER, "alice", "SUB-0007").await.unwrap();
    store.grant(ISSUER, "bob", "sub-one-more").await.unwrap();
    store
        .grant(OTHER_ISSUER, "alice", "sub-one-more")
        .await
        .unwrap();
    // A revocation makes room.
    assert!(
        store
            .revoke_grant(ISSUER, "alice", "sub-0000")
            .await
            .unwrap()
    );
    store.grant(ISSUER, "alice", "sub-one-more").await.unwrap();
    let granted = store.subscriptions_granted(ISSUER, "alice").await.unwrap();
    assert_eq!(granted.len(), MAX_GRANTS_PER_SUBJECT);
    assert!(granted.iter().any(|s| s == "sub-one-more"));
}

async fn values_out_of_bounds_are_refused(store: Arc<dyn Store>) {
    let long_subject = "s".repeat(257);
    for (issuer, subject, subscription, field) in [
        ("login.example", "alice", "sub-1", "issuer"),
        (ISSUER, "", "sub-1", "subject"),
        (ISSUER, &long_subject, "sub-1", "subject"),
        (ISSUER, "ali\u{0}ce", "sub-1", "subject"),
        (ISSUER, "alice", " sub-1", "subscription"),
    ] {
        match store.grant(issuer, subject, subscription).await {
            Err(GrantError::Invalid(invalid)) => assert_eq!(invalid.field, field),
            other => panic!("{issuer} {subject:?} {subscription:?}: {other:?}"),
        }
    }
    assert!(store.grants().await.unwrap().is_empty());
}
