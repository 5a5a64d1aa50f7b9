//! What previews of pull requests keep in the store, on the backend the test run selects: a
//! pull request's event opening one and queueing its build, time-to-live counted from the last
//! push, and a close taking it down.

use wharf_store::testing::{TestDatabase, new_service};
use wharf_store::{DeliveryEffect, NewDelivery, NewService, PullRequestChange, Store};
use wharf_wire::{DeploySettings, PreviewSettings};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

async fn store() -> (Store, TestDatabase) {
    TestDatabase::create().await.expect("a fresh test database")
}

async fn service(store: &Store) -> i64 {
    store
        .create_service(
            &NewService {
                branch: "main".to_owned(),
                deploy: DeploySettings {
                    previews: PreviewSettings {
                        enabled: true,
                        ..PreviewSettings::default()
                    },
                    ..DeploySettings::default()
                },
                ..new_service("web", "acme/web")
            },
            NOW,
        )
        .await
        .unwrap()
        .id
}

fn pull_request(id: &str, number: i64, action: &str, head: char) -> (NewDelivery, DeliveryEffect) {
    (
        NewDelivery {
            id: id.to_owned(),
            event: "pull_request".to_owned(),
            action: Some(action.to_owned()),
            dedupe_key: Some(format!("pr:{id}")),
            body: "{}".to_owned(),
        },
        DeliveryEffect::PullRequest(PullRequestChange {
            repo_key: "acme/web".to_owned(),
            repository_id: 1_000,
            repo_full_name: "acme/web".to_owned(),
            base_branch: "main".to_owned(),
            number,
            action: action.to_owned(),
            head_sha: head.to_string().repeat(40),
            head_branch: "feature".to_owned(),
            from_fork: false,
            author_association: "MEMBER".to_owned(),
            draft: false,
            label: None,
            sender: Some("octocat".to_owned()),
            installation_id: Some(7),
            max_attempts: 3,
        }),
    )
}

#[tokio::test]
async fn a_previews_time_to_live_counts_from_its_last_push() {
    let (store, _database) = store().await;
    let service = service(&store).await;
    let (delivery, effect) = pull_request("a", 1, "opened", '1');
    store
        .record_delivery(&delivery, &effect, NOW)
        .await
        .unwrap();
    let (delivery, effect) = pull_request("b", 2, "opened", '2');
    store
        .record_delivery(&delivery, &effect, NOW)
        .await
        .unwrap();
    // A label or a reopen of the same head is no push; a new head is.
    let (delivery, effect) = pull_request("c", 1, "reopened", '1');
    store
        .record_delivery(&delivery, &effect, NOW + 2 * HOUR)
        .await
        .unwrap();
    let (delivery, effect) = pull_request("d", 2, "synchronize", '3');
    store
        .record_delivery(&delivery, &effect, NOW + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!(
        store.idle_previews(service, NOW + HOUR).await.unwrap(),
        vec![1]
    );
    assert_eq!(
        store.idle_previews(service, NOW + 3 * HOUR).await.unwrap(),
        vec![1, 2]
    );
    // A closed one holds nothing any more.
    let (delivery, effect) = pull_request("e", 1, "closed", '1');
    store
        .record_delivery(&delivery, &effect, NOW + 3 * HOUR)
        .await
        .unwrap();
    assert_eq!(
        store.idle_previews(service, NOW + 4 * HOUR).await.unwrap(),
        vec![2]
    );
    let closed = store.preview(service, 1).await.unwrap();
    assert_eq!(closed.state, "closed");
    assert_eq!(closed.build_state.as_deref(), Some("cancelled"));
}
