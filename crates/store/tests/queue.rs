//! The store's behaviour on the backend the test run selects (see `wharf_store::testing`):
//! atomic claims, superseding, deduplicated deliveries, leases and their expiry.

use std::collections::HashSet;

use wharf_domain::agents::AgentScope;
use wharf_store::testing::{TestDatabase, new_service};
use wharf_store::{
    BuildFilter, DeliveryEffect, DeliveryOutcome, InstallationChange, NewBuild, NewDelivery,
    NewService, StateReport, Store, StoreError, hash_token,
};
use wharf_wire::{BuildState, BuildTrigger};

const NOW: i64 = 1_800_000_000_000;

async fn store() -> (Store, TestDatabase) {
    TestDatabase::create().await.expect("a fresh test database")
}

async fn service(store: &Store, name: &str, repo: &str, branch: &str) -> i64 {
    store
        .create_service(
            &NewService {
                branch: branch.to_owned(),
                ..new_service(name, repo)
            },
            NOW,
        )
        .await
        .unwrap()
        .id
}

fn build_of(service_id: i64, sha: char) -> NewBuild {
    NewBuild {
        service_id,
        environment: None,
        commit_sha: sha.to_string().repeat(40),
        branch: Some("main".to_owned()),
        trigger: BuildTrigger::Manual,
        installation_id: None,
        delivery_id: None,
        retry_of: None,
        max_attempts: 2,
    }
}

async fn agent(store: &Store, name: &str) -> i64 {
    store
        .create_agent(name, &hash_token(name), &AgentScope::default_token(), NOW)
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn service_names_are_unique_and_projects_are_created_on_demand() {
    let (store, _db) = store().await;
    service(&store, "web", "acme/web", "main").await;
    let again = store
        .create_service(
            &NewService {
                project: "other".to_owned(),
                port: None,
                ..new_service("web", "acme/web")
            },
            NOW,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let services = store.list_services().await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].project, "default");
    assert_eq!(services[0].port, Some(8080));
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_build() {
    let (store, _db) = store().await;
    // A newer build of a service supersedes its older pending ones, so queue one build for
    // each of many services.
    let total = 120;
    for index in 0..total {
        let service_id = service(&store, &format!("web{index}"), "acme/web", "main").await;
        let mut new = build_of(service_id, 'a');
        new.commit_sha = format!("{index:040x}");
        store.queue_build(&new, NOW + index as i64).await.unwrap();
    }
    let pending = store
        .count_builds_by_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(state, _)| *state == BuildState::Pending)
        .map(|(_, count)| count)
        .unwrap_or(0);
    let mut claimers = Vec::new();
    for index in 0..8 {
        let agent_id = agent(&store, &format!("agent-{index}")).await;
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            while let Some(claim) = store
                .claim_build(agent_id, 60_000, None, NOW + 1_000)
                .await
                .unwrap()
            {
                claimed.push(claim.build.id);
            }
            claimed
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a build was claimed twice");
    assert_eq!(
        all.len() as i64,
        pending,
        "every pending build was claimed once"
    );
    assert_eq!(pending, total as i64);
}

#[tokio::test]
async fn a_newer_build_supersedes_older_pending_ones_but_not_running_ones() {
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let agent_id = agent(&store, "a1").await;
    let first = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();
    let running = store
        .claim_build(agent_id, 60_000, None, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.build.id, first.id);
    let second = store
        .queue_build(&build_of(service_id, 'b'), NOW + 1)
        .await
        .unwrap();
    let third = store
        .queue_build(&build_of(service_id, 'c'), NOW + 2)
        .await
        .unwrap();
    let second = store.build(second.id).await.unwrap();
    assert_eq!(second.state, BuildState::Cancelled);
    assert_eq!(
        second.reason.as_deref(),
        Some(format!("superseded by build #{}", third.id).as_str())
    );
    assert_eq!(
        store.build(first.id).await.unwrap().state,
        BuildState::Claimed
    );
    assert_eq!(
        store.build(third.id).await.unwrap().state,
        BuildState::Pending
    );
}

#[tokio::test]
async fn superseding_stays_within_one_environment_of_a_service() {
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let production = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();
    assert_eq!(production.environment, "production");
    let preview = store
        .queue_build(
            &NewBuild {
                environment: Some("web-pr-7".to_owned()),
                ..build_of(service_id, 'b')
            },
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(preview.environment, "web-pr-7");
    // The preview's build leaves production's pending build alone…
    assert_eq!(
        store.build(production.id).await.unwrap().state,
        BuildState::Pending
    );
    // …and a newer production build supersedes only production's.
    let newer = store
        .queue_build(&build_of(service_id, 'c'), NOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store.build(production.id).await.unwrap().state,
        BuildState::Cancelled
    );
    assert_eq!(
        store.build(preview.id).await.unwrap().state,
        BuildState::Pending
    );
    assert_eq!(newer.environment, "production");
}

#[tokio::test]
async fn builds_are_for_the_environment_their_service_names() {
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let mut settings = store.service_by_id(service_id).await.unwrap();
    settings.deploy.environment = "staging".to_owned();
    let changed = NewService {
        project: settings.project.clone(),
        branch: settings.branch.clone(),
        port: settings.port,
        deploy: settings.deploy.clone(),
        ..new_service(&settings.name, &settings.repo)
    };
    store
        .update_service(service_id, &changed, false)
        .await
        .unwrap();
    let build = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();
    assert_eq!(build.environment, "staging");
}
#[tokio::test]
async fn deliveries_are_deduplicated_by_id_and_by_logical_event() {
    let (store, _db) = store().await;
    service(&store, "web", "Acme/Web", "main").await;
    let effect = DeliveryEffect::QueueBuilds {
        repo_key: "acme/web".to_owned(),
        repository_id: 1_000,
        repo_full_name: "Acme/Web".to_owned(),
        branch: "main".to_owned(),
        commit_sha: "a".repeat(40),
        installation_id: Some(7),
        max_attempts: 3,
    };
    let delivery = |id: &str| NewDelivery {
        id: id.to_owned(),
        event: "push".to_owned(),
        action: None,
        dedupe_key: Some(format!("push:1:refs/heads/main:{}", "a".repeat(40))),
        body: "{}".to_owned(),
    };
    let first = store
        .record_delivery(&delivery("d-1"), &effect, NOW)
        .await
        .unwrap();
    let DeliveryOutcome::Recorded {
        build_ids, outcome, ..
    } = first
    else {
        panic!("the first delivery must be recorded")
    };
    assert_eq!(build_ids.len(), 1, "{outcome}");
    assert_eq!(outcome, "queued a build of web");
    let builds = [store.build(build_ids[0]).await.unwrap()];
    assert_eq!(builds[0].trigger, BuildTrigger::Push);
    assert_eq!(builds[0].delivery_id.as_deref(), Some("d-1"));
    assert_eq!(builds[0].installation_id, Some(7));
    for again in ["d-1", "d-2"] {
        let outcome = store
            .record_delivery(&delivery(again), &effect, NOW)
            .await
            .unwrap();
        assert!(matches!(outcome, DeliveryOutcome::Duplicate), "{again}");
    }
    assert_eq!(
        store
            .list_builds(&BuildFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.count_deliveries().await.unwrap(), 1);
}

#[tokio::test]
async fn a_push_nobody_tracks_is_stored_with_that_outcome() {
    let (store, _db) = store().await;
    service(&store, "web", "acme/web", "main").await;
    let effect = DeliveryEffect::QueueBuilds {
        repo_key: "acme/web".to_owned(),
        repository_id: 1_000,
        repo_full_name: "acme/web".to_owned(),
        branch: "develop".to_owned(),
        commit_sha: "b".repeat(40),
        installation_id: None,
        max_attempts: 3,
    };
    let delivery = NewDelivery {
        id: "d-9".to_owned(),
        event: "push".to_owned(),
        action: None,
        dedupe_key: None,
        body: "{}".to_owned(),
    };
    store
        .record_delivery(&delivery, &effect, NOW)
        .await
        .unwrap();
    assert_eq!(
        store.delivery_outcome("d-9").await.unwrap().as_deref(),
        Some("no service tracks acme/web on branch develop")
    );
    assert!(
        store
            .list_builds(&BuildFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn expired_leases_requeue_then_fail_when_attempts_run_out() {
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let agent_id = agent(&store, "a1").await;
    let build = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();

    let claim = store
        .claim_build(agent_id, 1_000, None, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.build.attempt, 1);
    assert_eq!(
        store.expire_leases(NOW + 999).await.unwrap().requeued,
        Vec::<i64>::new()
    );
    let expiry = store.expire_leases(NOW + 1_001).await.unwrap();
    assert_eq!(expiry.requeued, vec![build.id]);
    let requeued = store.build(build.id).await.unwrap();
    assert_eq!(requeued.state, BuildState::Pending);
    assert_eq!(requeued.agent, None);

    let claim = store
        .claim_build(agent_id, 1_000, None, NOW + 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.build.attempt, 2);
    let expiry = store.expire_leases(NOW + 3_001).await.unwrap();
    assert_eq!(expiry.failed, vec![build.id]);
    let failed = store.build(build.id).await.unwrap();
    assert_eq!(failed.state, BuildState::Failed);
    assert!(failed.reason.unwrap().contains("lease expired"));
}

#[tokio::test]
async fn heartbeats_renew_leases_and_tell_agents_what_to_stop() {
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let other_service = service(&store, "api", "acme/api", "main").await;
    let agent_id = agent(&store, "a1").await;
    let kept = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();
    let cancelled = store
        .queue_build(&build_of(other_service, 'b'), NOW)
        .await
        .unwrap();
    store
        .claim_build(agent_id, 1_000, None, NOW)
        .await
        .unwrap()
        .unwrap();
    store
        .claim_build(agent_id, 1_000, None, NOW)
        .await
        .unwrap()
        .unwrap();
    store
        .cancel_build(cancelled.id, "cancelled by admin", NOW + 10)
        .await
        .unwrap();

    let stop = store
        .heartbeat(
            agent_id,
            &[kept.id, cancelled.id, 999_999],
            1_000,
            NOW + 900,
        )
        .await
        .unwrap();
    assert_eq!(stop, vec![cancelled.id, 999_999]);
    // The renewed lease outlives the first one.
    assert!(
        store
            .expire_leases(NOW + 1_500)
            .await
            .unwrap()
            .requeued
            .is_empty()
    );
    assert_eq!(
        store.build(kept.id).await.unwrap().state,
        BuildState::Claimed
    );
}

#[tokio::test]
async fn only_the_leasing_agent_reports_and_only_allowed_moves() {
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let owner = agent(&store, "owner").await;
    let stranger = agent(&store, "stranger").await;
    let build = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();
    store
        .claim_build(owner, 60_000, None, NOW)
        .await
        .unwrap()
        .unwrap();
    let report = |agent_id, state| StateReport {
        agent_id,
        build_id: build.id,
        state,
        reason: None,
        image: None,
        digest: None,
        failure: None,
        images: Vec::new(),
        compose_file: None,
    };
    assert!(matches!(
        store
            .report_build_state(&report(stranger, BuildState::Cloning), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    for state in [
        BuildState::Cloning,
        BuildState::Building,
        BuildState::Pushing,
    ] {
        let moved = store
            .report_build_state(&report(owner, state), NOW)
            .await
            .unwrap();
        assert_eq!(moved.state, state);
    }
    assert!(matches!(
        store
            .report_build_state(&report(owner, BuildState::Cloning), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let done = store
        .report_build_state(&report(owner, BuildState::Completed), NOW + 5)
        .await
        .unwrap();
    assert_eq!(done.state, BuildState::Completed);
    assert!(done.finished_at.is_some());
    assert!(matches!(
        store.cancel_build(build.id, "too late", NOW + 6).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn installations_track_their_repositories() {
    let (store, _db) = store().await;
    let created = InstallationChange {
        installation_id: 42,
        account_login: "acme".to_owned(),
        account_type: "Organization".to_owned(),
        add_repositories: vec![
            (1, "acme/web".to_owned(), true),
            (2, "acme/api".to_owned(), false),
        ],
        outcome: "installed".to_owned(),
        ..Default::default()
    };
    store.apply_installation(&created, NOW).await.unwrap();
    assert_eq!(
        store.installation_for_repo("acme/web").await.unwrap(),
        Some(42)
    );
    store
        .apply_installation(
            &InstallationChange {
                remove_repositories: vec![1],
                add_repositories: vec![],
                ..created.clone()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(store.installation_for_repo("acme/web").await.unwrap(), None);
    assert_eq!(
        store.installation_repositories(42).await.unwrap(),
        vec!["acme/api".to_owned()]
    );
    store
        .apply_installation(
            &InstallationChange {
                suspended: Some(true),
                add_repositories: vec![],
                ..created.clone()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(store.installation_for_repo("acme/api").await.unwrap(), None);
    store
        .apply_installation(
            &InstallationChange {
                deleted: true,
                add_repositories: vec![],
                ..created
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(
        store
            .installation_repositories(42)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn logs_are_appended_in_order_by_the_holder_only_and_capped() {
    use wharf_wire::{LogStream, NewLogLine};
    let (store, _db) = store().await;
    let service_id = service(&store, "web", "acme/web", "main").await;
    let owner = agent(&store, "owner").await;
    let stranger = agent(&store, "stranger").await;
    let build = store
        .queue_build(&build_of(service_id, 'a'), NOW)
        .await
        .unwrap();
    let line = |text: &str| NewLogLine {
        stream: LogStream::Stdout,
        text: text.to_owned(),
    };
    // Not claimed yet: nobody may write.
    assert!(
        store
            .append_logs(build.id, owner, &[line("early")], 1000, NOW)
            .await
            .is_err()
    );
    store
        .claim_build(owner, 60_000, None, NOW)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store
            .append_logs(build.id, stranger, &[line("x")], 1000, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let first = store
        .append_logs(build.id, owner, &[line("one"), line("two")], 40, NOW)
        .await
        .unwrap();
    assert_eq!((first.stored, first.truncated), (2, false));
    // 8 bytes stored of 40; 40 more do not fit: the first fits, then the note, then nothing.
    let second = store
        .append_logs(
            build.id,
            owner,
            &[line(&"x".repeat(20)), line(&"y".repeat(20))],
            40,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((second.stored, second.truncated), (1, true));
    let third = store
        .append_logs(build.id, owner, &[line("after the cap")], 40, NOW)
        .await
        .unwrap();
    assert_eq!((third.stored, third.truncated), (0, true));
    let lines = store.logs_after(build.id, 0, 100).await.unwrap();
    let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
    assert_eq!(texts[..3], ["one", "two", &"x".repeat(20)]);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3].stream, LogStream::Wharf);
    assert!(lines[3].text.contains("limit"));
    assert_eq!(
        lines.iter().map(|line| line.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(store.logs_after(build.id, 2, 100).await.unwrap().len(), 2);
    assert!(store.build(build.id).await.unwrap().log_truncated);
}

#[tokio::test]
async fn a_batch_of_deliveries_is_stored_together_and_deduplicated_within_itself() {
    let (store, _db) = store().await;
    service(&store, "web", "acme/web", "main").await;
    let push = |id: &str, digit: char| {
        (
            NewDelivery {
                id: id.to_owned(),
                event: "push".to_owned(),
                action: None,
                dedupe_key: Some(format!(
                    "push:1:refs/heads/main:{}",
                    digit.to_string().repeat(40)
                )),
                body: "{}".to_owned(),
            },
            DeliveryEffect::QueueBuilds {
                repo_key: "acme/web".to_owned(),
                repository_id: 1_000,
                repo_full_name: "acme/web".to_owned(),
                branch: "main".to_owned(),
                commit_sha: digit.to_string().repeat(40),
                installation_id: None,
                max_attempts: 3,
            },
        )
    };
    let batch = vec![
        push("b-1", 'a'),
        push("b-2", 'b'),
        push("b-1", 'c'),
        push("b-3", 'b'),
    ];
    let outcomes = store.record_deliveries(&batch, NOW).await.unwrap();
    assert!(matches!(outcomes[0], DeliveryOutcome::Recorded { .. }));
    assert!(matches!(outcomes[1], DeliveryOutcome::Recorded { .. }));
    assert!(
        matches!(outcomes[2], DeliveryOutcome::Duplicate),
        "same delivery id"
    );
    assert!(
        matches!(outcomes[3], DeliveryOutcome::Duplicate),
        "same push"
    );
    assert_eq!(store.count_deliveries().await.unwrap(), 2);
    let builds = store.list_builds(&BuildFilter::default()).await.unwrap();
    assert_eq!(builds.len(), 2);
    assert_eq!(builds[0].state, BuildState::Pending, "the newest builds");
    assert_eq!(
        builds[1].state,
        BuildState::Cancelled,
        "the older is superseded"
    );
}
