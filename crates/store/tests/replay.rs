//! What the store remembers so that requests cannot be replayed, and for how long, on the
//! backend the test run selects: deploy-hook signatures until their window has passed, and the
//! keys of deliveries stored before every delivery had one; dashboard sessions until they end
//! or their user is removed.

use wharf_store::testing::{TestDatabase, insert_earlier_delivery};
use wharf_store::{DeliveryEffect, DeliveryOutcome, NewDelivery, NewSession, Store, StoredUser};

const NOW: i64 = 1_800_000_000_000;

async fn store() -> (Store, TestDatabase) {
    TestDatabase::create().await.expect("a fresh test database")
}

#[tokio::test]
async fn a_hook_signature_is_taken_once_until_it_is_forgotten() {
    let (store, _database) = store().await;
    let signature = format!("sha256={}", "a".repeat(64));
    let other = format!("sha256={}", "b".repeat(64));
    assert!(
        store
            .remember_hook_signature(&signature, NOW + 600_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_hook_signature(&signature, NOW + 600_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_hook_signature(&other, NOW + 1_200_000)
            .await
            .unwrap()
    );
    // Nothing is forgotten before its time.
    assert_eq!(
        store
            .forget_expired_hook_signatures(NOW + 600_000)
            .await
            .unwrap(),
        0
    );
    assert!(
        !store
            .remember_hook_signature(&signature, NOW + 600_000)
            .await
            .unwrap()
    );
    // Past it, only what expired is forgotten.
    assert_eq!(
        store
            .forget_expired_hook_signatures(NOW + 600_001)
            .await
            .unwrap(),
        1
    );
    assert!(
        !store
            .remember_hook_signature(&other, NOW + 1_200_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_hook_signature(&signature, NOW + 1_800_000)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn earlier_deliveries_take_their_keys_of_today_once() {
    let (store, _database) = store().await;
    // Stored by an earlier Wharf: two with one body (a replay it took), and one whose key of
    // today a later delivery holds already.
    for (id, key, received_at) in [
        ("old-1", None, NOW - 3_000),
        ("old-2", None, NOW - 2_000),
        ("old-3", Some("push:1:refs/heads/main:aaaa"), NOW - 1_000),
    ] {
        insert_earlier_delivery(&store, id, "installation", key, "{}", received_at)
            .await
            .unwrap();
    }
    let later = NewDelivery {
        id: "new-1".to_owned(),
        event: "push".to_owned(),
        action: None,
        dedupe_key: Some("key-c".to_owned()),
        body: "{}".to_owned(),
    };
    let nothing = DeliveryEffect::Nothing {
        outcome: "stored".to_owned(),
    };
    store.record_delivery(&later, &nothing, NOW).await.unwrap();

    let earlier = store.earlier_deliveries(2).await.unwrap();
    let ids: Vec<&str> = earlier
        .iter()
        .map(|delivery| delivery.id.as_str())
        .collect();
    assert_eq!(ids, ["old-1", "old-2"], "oldest first, as many as asked");
    store
        .rekey_deliveries(&[
            ("old-1".to_owned(), Some("key-a".to_owned())),
            ("old-2".to_owned(), Some("key-a".to_owned())),
            ("old-3".to_owned(), Some("key-c".to_owned())),
        ])
        .await
        .unwrap();
    assert!(store.earlier_deliveries(10).await.unwrap().is_empty());
    // The keys recognise the bodies sent again, whichever delivery holds them.
    for key in ["key-a", "key-c"] {
        let again = NewDelivery {
            id: format!("again-{key}"),
            dedupe_key: Some(key.to_owned()),
            ..later.clone()
        };
        let outcome = store.record_delivery(&again, &nothing, NOW).await.unwrap();
        assert!(matches!(outcome, DeliveryOutcome::Duplicate), "{key}");
    }
    assert_eq!(store.count_deliveries().await.unwrap(), 4);
}

/// Starts a session for the admin token, or for `user` as a viewer.
async fn start(store: &Store, id_hash: &str, user: Option<&str>, now: i64, expires_at: i64) {
    let session = NewSession {
        id_hash,
        csrf_token: &format!("csrf-of-{id_hash}"),
        user,
        admin_token_hash: user.is_none().then_some("hash-of-the-token"),
        role: if user.is_some() { "viewer" } else { "admin" },
        expires_at,
    };
    store.start_dashboard_session(&session, now).await.unwrap();
}

#[tokio::test]
async fn a_dashboard_session_lasts_until_it_ends_or_is_ended() {
    let (store, _database) = store().await;
    start(&store, "hash-a", None, NOW, NOW + 1_000).await;
    start(&store, "hash-b", None, NOW, NOW + 5_000).await;
    let found = store
        .dashboard_session("hash-a", NOW + 999)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.csrf_token, "csrf-of-hash-a");
    assert_eq!((found.user, found.role.as_str()), (None, "admin"));
    // Past its end a session is gone, and the next sign-in forgets it for good.
    assert_eq!(
        store
            .dashboard_session("hash-a", NOW + 1_000)
            .await
            .unwrap(),
        None
    );
    start(&store, "hash-c", None, NOW + 2_000, NOW + 9_000).await;
    assert_eq!(store.dashboard_session("hash-a", NOW).await.unwrap(), None);
    // Signing out ends a session at once, and only that one.
    assert!(store.end_dashboard_session("hash-b").await.unwrap());
    assert!(!store.end_dashboard_session("hash-b").await.unwrap());
    assert_eq!(
        store
            .dashboard_session("hash-b", NOW + 2_000)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .dashboard_session("hash-c", NOW + 2_000)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.dashboard_session("unknown", NOW).await.unwrap(), None);
}

#[tokio::test]
async fn users_are_unique_by_name_and_removing_one_ends_their_sessions() {
    let (store, _database) = store().await;
    let alice = StoredUser {
        name: "alice".to_owned(),
        role: "viewer".to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        created_at: NOW,
    };
    store.create_user(&alice).await.unwrap();
    let again = store.create_user(&alice).await.unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    assert_eq!(store.user("alice").await.unwrap().as_ref(), Some(&alice));
    assert_eq!(store.user("bob").await.unwrap(), None);
    start(&store, "alice-1", Some("alice"), NOW, NOW + 9_000).await;
    start(&store, "admin-1", None, NOW, NOW + 9_000).await;
    let session = store
        .dashboard_session("alice-1", NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (session.user.as_deref(), session.role.as_str()),
        (Some("alice"), "viewer")
    );
    assert!(store.remove_user("alice").await.unwrap());
    assert!(!store.remove_user("alice").await.unwrap());
    assert_eq!(store.users().await.unwrap(), []);
    assert_eq!(store.dashboard_session("alice-1", NOW).await.unwrap(), None);
    assert!(
        store
            .dashboard_session("admin-1", NOW)
            .await
            .unwrap()
            .is_some()
    );
}
