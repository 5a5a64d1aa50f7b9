//! What the store remembers so that requests cannot be replayed, and for how long, on the
//! backend the test run selects: deploy-hook signatures until their window has passed.

use wharf_store::Store;
use wharf_store::testing::TestDatabase;

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
