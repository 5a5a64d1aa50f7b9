//! What the catch-up of missed webhooks keeps in the store, on the backend the test run
//! selects: a schedule one replica takes per turn, the deliveries asked for again once, and
//! the rule every push meets: a commit that is already the newest build queues nothing.

use wharf_store::testing::{TestDatabase, new_service};
use wharf_store::{
    BranchHead, DeliveryEffect, DeliveryOutcome, InstallationChange, NewBuild, NewDelivery,
    NewService, Store,
};
use wharf_wire::BuildTrigger;

const NOW: i64 = 1_800_000_000_000;

async fn store() -> (Store, TestDatabase) {
    TestDatabase::create().await.expect("a fresh test database")
}

async fn service(store: &Store) -> i64 {
    store
        .create_service(
            &NewService {
                branch: "main".to_owned(),
                ..new_service("web", "acme/web")
            },
            NOW,
        )
        .await
        .unwrap()
        .id
}

fn push(id: &str, commit: char) -> (NewDelivery, DeliveryEffect) {
    (
        NewDelivery {
            id: id.to_owned(),
            event: "push".to_owned(),
            action: None,
            dedupe_key: Some(format!("push:{id}")),
            body: "{}".to_owned(),
        },
        DeliveryEffect::QueueBuilds {
            repo_key: "acme/web".to_owned(),
            repository_id: 1_000,
            repo_full_name: "acme/web".to_owned(),
            branch: "main".to_owned(),
            commit_sha: commit.to_string().repeat(40),
            installation_id: Some(7),
            max_attempts: 3,
        },
    )
}

#[tokio::test]
async fn a_schedule_is_taken_once_per_turn() {
    let (store, _database) = store().await;
    // The first to ask takes it at once, with no good turn before.
    assert_eq!(
        store.take_schedule("job", NOW + 1_000, NOW).await.unwrap(),
        Some(None)
    );
    // Before the turn is due, nobody takes it.
    assert_eq!(
        store
            .take_schedule("job", NOW + 1_500, NOW + 500)
            .await
            .unwrap(),
        None
    );
    store.finish_schedule("job", NOW).await.unwrap();
    // Once due, one taker gets it, told when the last good turn began.
    assert_eq!(
        store
            .take_schedule("job", NOW + 2_000, NOW + 1_000)
            .await
            .unwrap(),
        Some(Some(NOW))
    );
    assert_eq!(
        store
            .take_schedule("job", NOW + 2_000, NOW + 1_000)
            .await
            .unwrap(),
        None
    );
    // Another schedule is its own.
    assert!(
        store
            .take_schedule("other", NOW + 1_000, NOW)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_delivery_stored_or_asked_for_is_known_and_asked_for_once() {
    let (store, _database) = store().await;
    service(&store).await;
    let (delivery, effect) = push("stored", 'a');
    store
        .record_delivery(&delivery, &effect, NOW)
        .await
        .unwrap();
    let guids = ["stored", "asked", "new"].map(str::to_owned);
    assert!(store.record_redelivery("asked", 11, NOW).await.unwrap());
    assert!(!store.record_redelivery("asked", 12, NOW).await.unwrap());
    assert_eq!(
        store.unknown_deliveries(&guids).await.unwrap(),
        vec!["new".to_owned()]
    );
    // Forgotten once GitHub no longer keeps them.
    assert_eq!(store.forget_redeliveries(NOW + 1).await.unwrap(), 1);
    assert_eq!(
        store.unknown_deliveries(&guids).await.unwrap(),
        vec!["asked".to_owned(), "new".to_owned()]
    );
}

#[tokio::test]
async fn a_commit_that_is_the_newest_build_is_queued_neither_by_a_push_nor_as_a_head() {
    let (store, _database) = store().await;
    let service_id = service(&store).await;
    let (delivery, effect) = push("first", 'a');
    store
        .record_delivery(&delivery, &effect, NOW)
        .await
        .unwrap();
    // No installation grants the repository yet: nothing to follow.
    assert!(store.tracked_branches().await.unwrap().is_empty());
    store
        .apply_installation(
            &InstallationChange {
                installation_id: 7,
                account_login: "acme".to_owned(),
                account_type: "Organization".to_owned(),
                add_repositories: vec![(1_000, "acme/web".to_owned(), true)],
                ..InstallationChange::default()
            },
            NOW,
        )
        .await
        .unwrap();
    let tracked = store.tracked_branches().await.unwrap();
    assert_eq!(tracked.len(), 1);
    assert_eq!(
        (tracked[0].repository_id, tracked[0].installation_id),
        (1_000, 7)
    );
    assert_eq!(tracked[0].newest_commit, "a".repeat(40));

    let head = |commit: char| BranchHead {
        service_id,
        branch: "main".to_owned(),
        commit_sha: commit.to_string().repeat(40),
        installation_id: 7,
        max_attempts: 3,
    };
    assert_eq!(
        store.queue_branch_head(&head('a'), NOW).await.unwrap(),
        None
    );
    let queued = store.queue_branch_head(&head('b'), NOW).await.unwrap();
    let build = store
        .build(queued.expect("a new head is queued"))
        .await
        .unwrap();
    assert_eq!(build.trigger, BuildTrigger::Push);
    assert_eq!(build.installation_id, Some(7));
    assert_eq!(
        store.queue_branch_head(&head('b'), NOW).await.unwrap(),
        None
    );

    // The push of that head, arriving late under its own id, is stored and queues nothing.
    let (late, effect) = push("late", 'b');
    let DeliveryOutcome::Recorded {
        outcome, build_ids, ..
    } = store.record_delivery(&late, &effect, NOW).await.unwrap()
    else {
        panic!("a new delivery is stored")
    };
    assert!(build_ids.is_empty(), "{outcome}");
    assert_eq!(
        outcome,
        format!(
            "{} is already the newest build of web: nothing queued",
            "b".repeat(40)
        )
    );
    // An older commit pushed again is built again: only the newest build counts.
    let (again, effect) = push("again", 'a');
    let DeliveryOutcome::Recorded { build_ids, .. } =
        store.record_delivery(&again, &effect, NOW).await.unwrap()
    else {
        panic!("a new delivery is stored")
    };
    assert_eq!(build_ids.len(), 1);
    // A manual build of the newest commit counts as its newest build too.
    store
        .queue_build(
            &NewBuild {
                service_id,
                environment: None,
                commit_sha: "c".repeat(40),
                branch: Some("main".to_owned()),
                trigger: BuildTrigger::Manual,
                installation_id: Some(7),
                delivery_id: None,
                retry_of: None,
                max_attempts: 3,
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        store.queue_branch_head(&head('c'), NOW).await.unwrap(),
        None
    );
}
