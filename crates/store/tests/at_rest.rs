//! What the store keeps at rest and how: a SQLite file only its owner can read, commits synced
//! as asked, and webhook bodies only for their retention period (their deduplication keys for
//! good). Delivery tests run on the backend the test run selects; SQLite file tests on SQLite.

use std::os::unix::fs::PermissionsExt;

use wharf_store::testing::TestDatabase;
use wharf_store::{
    DeliveryEffect, DeliveryOutcome, NewDelivery, SqliteSynchronous, Store, StoreOptions,
};

const NOW: i64 = 1_800_000_000_000;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_new_sqlite_database_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // A write makes SQLite create its write-ahead log, which takes the database's mode.
    store
        .remember_hook_signature("sha256=x", NOW)
        .await
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("wharf.db-wal")), 0o600);
    store.close().await;
    let path = dir.path().join("other.db");
    let store = Store::open_sqlite_file(&path).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    store.close().await;
}

#[tokio::test]
async fn sqlite_syncs_every_commit_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wharf.db").display());
    let normal = Store::connect(&url).await.unwrap();
    // PRAGMA synchronous: 1 is NORMAL, 2 is FULL.
    assert_eq!(normal.sqlite_synchronous().await.unwrap(), Some(1));
    normal.close().await;
    let full = Store::connect_with(
        &url,
        StoreOptions {
            sqlite_synchronous: SqliteSynchronous::Full,
        },
    )
    .await
    .unwrap();
    assert_eq!(full.sqlite_synchronous().await.unwrap(), Some(2));
    full.close().await;
    assert_eq!("full".parse(), Ok(SqliteSynchronous::Full));
    assert_eq!("normal".parse(), Ok(SqliteSynchronous::Normal));
    assert!("extra".parse::<SqliteSynchronous>().is_err());
}

fn delivery(id: &str, key: &str) -> NewDelivery {
    NewDelivery {
        id: id.to_owned(),
        event: "installation".to_owned(),
        action: Some("deleted".to_owned()),
        dedupe_key: Some(key.to_owned()),
        body: format!("{{\"delivery\": \"{id}\"}}"),
    }
}

#[tokio::test]
async fn webhook_bodies_are_removed_after_their_retention_and_their_keys_kept() {
    let (store, _database) = TestDatabase::create().await.unwrap();
    let nothing = DeliveryEffect::Nothing {
        outcome: "stored".to_owned(),
    };
    for (index, age) in [30_000, 20_000, 10_000, 0].into_iter().enumerate() {
        let id = format!("d-{index}");
        store
            .record_delivery(&delivery(&id, &format!("key-{index}")), &nothing, NOW - age)
            .await
            .unwrap();
    }
    // Kept 15 s: the two older bodies go, oldest first, as many at a time as asked.
    let cutoff = NOW - 15_000;
    assert_eq!(store.remove_delivery_bodies(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.delivery_body("d-0").await.unwrap(), None);
    assert!(store.delivery_body("d-1").await.unwrap().is_some());
    assert_eq!(store.remove_delivery_bodies(cutoff, 100).await.unwrap(), 1);
    assert_eq!(store.remove_delivery_bodies(cutoff, 100).await.unwrap(), 0);
    assert_eq!(store.delivery_body("d-1").await.unwrap(), None);
    assert_eq!(
        store.delivery_body("d-2").await.unwrap().as_deref(),
        Some("{\"delivery\": \"d-2\"}")
    );
    // The deliveries stay, so an old body sent again, by any id, is a duplicate.
    assert_eq!(store.count_deliveries().await.unwrap(), 4);
    assert_eq!(
        store.delivery_outcome("d-0").await.unwrap().as_deref(),
        Some("stored")
    );
    // A delivery an earlier Wharf stored keeps its body until it was keyed from it.
    wharf_store::testing::insert_earlier_delivery(
        &store,
        "earlier",
        "ping",
        None,
        "{}",
        NOW - 60_000,
    )
    .await
    .unwrap();
    assert_eq!(store.remove_delivery_bodies(cutoff, 100).await.unwrap(), 0);
    assert!(store.delivery_body("earlier").await.unwrap().is_some());
    store
        .rekey_deliveries(&[("earlier".to_owned(), Some("key-earlier".to_owned()))])
        .await
        .unwrap();
    assert_eq!(store.remove_delivery_bodies(cutoff, 100).await.unwrap(), 1);
    assert_eq!(store.delivery_body("earlier").await.unwrap(), None);
    for id in ["d-0", "d-0-again"] {
        let outcome = store
            .record_delivery(&delivery(id, "key-0"), &nothing, NOW)
            .await
            .unwrap();
        assert!(matches!(outcome, DeliveryOutcome::Duplicate), "{id}");
    }
}
