//! Releases on the backend the test run selects: hosts chosen by name or label, superseding,
//! one rollout per host at a time, states derived from rollouts, restarts starting over.

use wharf_domain::agents::AgentScope;
use wharf_store::testing::{TestDatabase, new_service};
use wharf_store::{NewRelease, RolloutReport, Store, StoreError, hash_token};
use wharf_wire::{LogStream, NewLogLine, ReleaseState, ReleaseTrigger};

const NOW: i64 = 1_800_000_000_000;

async fn setup() -> (Store, TestDatabase, i64) {
    let (store, database) = TestDatabase::create().await.expect("a fresh test database");
    let service = store
        .create_service(&new_service("web", "acme/web"), NOW)
        .await
        .unwrap();
    (store, database, service.id)
}

async fn agent(store: &Store, name: &str, labels: &[&str]) -> i64 {
    let labels: Vec<String> = labels.iter().map(|label| (*label).to_owned()).collect();
    // The token allows building, deploying and the labels the agent registers with.
    let allowed: Vec<String> = ["build", "deploy"]
        .iter()
        .map(|label| (*label).to_owned())
        .chain(labels.iter().cloned())
        .collect();
    let scope = AgentScope::issue(&allowed, &[], &[]).unwrap();
    let id = store
        .create_agent(name, &hash_token(name), &scope, NOW)
        .await
        .unwrap()
        .id;
    store
        .register_agent(id, &labels, None, None, NOW)
        .await
        .unwrap();
    id
}

fn release(service_id: i64, image: &str, hosts: &[&str]) -> NewRelease {
    NewRelease {
        service_id,
        environment: "production".to_owned(),
        build_id: None,
        image: image.to_owned(),
        trigger: ReleaseTrigger::Manual,
        rollback_of: None,
        hosts: hosts.iter().map(|host| (*host).to_owned()).collect(),
    }
}

fn report(agent_id: i64, rollout_id: i64, state: ReleaseState) -> RolloutReport {
    RolloutReport {
        agent_id,
        rollout_id,
        state,
        reason: None,
        probes: Vec::new(),
        log_tail: Vec::new(),
    }
}

async fn go_live(store: &Store, agent_id: i64) -> i64 {
    let claimed = store.claim_rollout(agent_id, NOW).await.unwrap().unwrap();
    go_live_claimed(store, agent_id, claimed.rollout_id).await;
    claimed.release_id
}

#[tokio::test]
async fn a_release_reaches_every_matching_host_and_is_live_when_all_are() {
    let (store, _db, web) = setup().await;
    let a = agent(&store, "edge-a", &["deploy", "eu"]).await;
    let b = agent(&store, "edge-b", &["deploy", "eu"]).await;
    agent(&store, "builder", &["build"]).await;
    let created = store
        .create_release(&release(web, "r/web:1", &["label:eu"]), NOW)
        .await
        .unwrap();
    assert_eq!(created.state, ReleaseState::Pending);
    let hosts: Vec<&str> = created.rollouts.iter().map(|r| r.agent.as_str()).collect();
    assert_eq!(hosts, vec!["edge-a", "edge-b"]);

    go_live(&store, a).await;
    let half = store.release(created.id).await.unwrap();
    assert_eq!(half.state, ReleaseState::Pending, "edge-b has not started");
    go_live(&store, b).await;
    let whole = store.release(created.id).await.unwrap();
    assert_eq!(whole.state, ReleaseState::Live);
    assert!(whole.finished_at.is_some());
}

#[tokio::test]
async fn no_matching_host_fails_the_release_with_the_reason() {
    let (store, _db, web) = setup().await;
    let created = store
        .create_release(&release(web, "r/web:1", &[]), NOW)
        .await
        .unwrap();
    assert_eq!(created.state, ReleaseState::Failed);
    assert!(
        created.reason.unwrap().contains("the agent named local"),
        "the default host is named"
    );
}

#[tokio::test]
async fn a_newer_release_supersedes_a_pending_one_and_a_host_rolls_out_one_at_a_time() {
    let (store, _db, web) = setup().await;
    let local = agent(&store, "local", &["deploy"]).await;
    let first = store
        .create_release(&release(web, "r/web:1", &[]), NOW)
        .await
        .unwrap();
    let claimed = store.claim_rollout(local, NOW).await.unwrap().unwrap();
    assert_eq!(claimed.release_id, first.id);
    let second = store
        .create_release(&release(web, "r/web:2", &[]), NOW)
        .await
        .unwrap();
    let third = store
        .create_release(&release(web, "r/web:3", &[]), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.release(second.id).await.unwrap().state,
        ReleaseState::Superseded,
        "pending, then replaced by a newer one"
    );
    assert_eq!(
        store.release(first.id).await.unwrap().state,
        ReleaseState::Pulling,
        "a rollout under way finishes"
    );
    assert!(
        store.claim_rollout(local, NOW).await.unwrap().is_none(),
        "the host is busy with the first"
    );
    for state in [
        ReleaseState::Starting,
        ReleaseState::HealthChecking,
        ReleaseState::Live,
    ] {
        store
            .report_rollout(&report(local, claimed.rollout_id, state), NOW)
            .await
            .unwrap();
    }
    let next = store.claim_rollout(local, NOW).await.unwrap().unwrap();
    assert_eq!(next.release_id, third.id);
    store
        .report_rollout(&report(local, next.rollout_id, ReleaseState::Starting), NOW)
        .await
        .unwrap();
    store
        .report_rollout(
            &report(local, next.rollout_id, ReleaseState::HealthChecking),
            NOW,
        )
        .await
        .unwrap();
    store
        .report_rollout(&report(local, next.rollout_id, ReleaseState::Live), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.release(first.id).await.unwrap().state,
        ReleaseState::Superseded,
        "the newer live release replaced it"
    );
    assert_eq!(
        store
            .previous_live_release(web, "production")
            .await
            .unwrap(),
        Some(first.id)
    );
    let listed = store.list_releases(web, 10).await.unwrap();
    let ids: Vec<i64> = listed.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![third.id, second.id, first.id]);
    assert_eq!(listed[0].rollouts.len(), 1);
}

#[tokio::test]
async fn reports_are_checked_and_a_restart_starts_rollouts_over() {
    let (store, _db, web) = setup().await;
    let local = agent(&store, "local", &["deploy"]).await;
    let other = agent(&store, "other", &["deploy"]).await;
    let created = store
        .create_release(&release(web, "r/web:1", &[]), NOW)
        .await
        .unwrap();
    let claimed = store.claim_rollout(local, NOW).await.unwrap().unwrap();
    let error = store
        .report_rollout(
            &report(other, claimed.rollout_id, ReleaseState::Starting),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    let error = store
        .report_rollout(
            &report(local, claimed.rollout_id, ReleaseState::Superseded),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    store
        .report_rollout(
            &report(local, claimed.rollout_id, ReleaseState::Starting),
            NOW,
        )
        .await
        .unwrap();

    assert_eq!(
        store.reset_rollouts(local, NOW).await.unwrap(),
        vec![claimed.rollout_id]
    );
    assert_eq!(
        store.release(created.id).await.unwrap().state,
        ReleaseState::Pending
    );
    assert_eq!(
        store.rolling_out_releases(local).await.unwrap(),
        vec![created.id],
        "its containers stay for the rollout to take up"
    );
    assert!(store.rolling_out_releases(other).await.unwrap().is_empty());
    let again = store.claim_rollout(local, NOW).await.unwrap().unwrap();
    assert_eq!(again.rollout_id, claimed.rollout_id);
    let mut rolled_back = report(local, again.rollout_id, ReleaseState::RolledBack);
    rolled_back.reason = Some("GET / answered 404".to_owned());
    store.report_rollout(&rolled_back, NOW).await.unwrap();
    let ended = store.release(created.id).await.unwrap();
    assert_eq!(ended.state, ReleaseState::RolledBack);
    assert_eq!(ended.reason.as_deref(), Some("GET / answered 404"));
    assert!(store.live_rollouts(local).await.unwrap().is_empty());
    assert!(store.rolling_out_releases(local).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rollout_of_an_agent_that_stopped_answering_fails_and_the_live_release_stays() {
    let (store, _db, web) = setup().await;
    let silent = agent(&store, "silent", &["deploy"]).await;
    let alive = agent(&store, "alive", &["deploy"]).await;
    store
        .create_release(&release(web, "r/web:1", &["silent"]), NOW)
        .await
        .unwrap();
    let live = go_live(&store, silent).await;
    let second = store
        .create_release(&release(web, "r/web:2", &["silent"]), NOW)
        .await
        .unwrap();
    let stuck = store.claim_rollout(silent, NOW).await.unwrap().unwrap();
    // Another service's host, heard from lately, keeps its rollout however long it takes.
    let busy = store
        .create_release(&release(web, "r/web:3", &["alive"]), NOW)
        .await
        .unwrap();
    let working = store.claim_rollout(alive, NOW).await.unwrap().unwrap();
    let lease = 30_000;
    let later = NOW + lease + 1;
    store.heartbeat(alive, &[], lease, later).await.unwrap();

    // Within the lease nothing is judged.
    assert!(
        store
            .abandon_rollouts(NOW - 1, NOW + lease)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.abandon_rollouts(later - lease, later).await.unwrap(),
        vec![stuck.rollout_id]
    );
    let failed = store.release(second.id).await.unwrap();
    assert_eq!(failed.state, ReleaseState::Failed);
    assert_eq!(
        failed.reason.as_deref(),
        Some("agent silent stopped answering during the rollout")
    );
    assert!(failed.finished_at.is_some());
    assert_eq!(
        store.release(live).await.unwrap().state,
        ReleaseState::Live,
        "the previous release stays live"
    );
    assert_eq!(
        store.live_rollouts(silent).await.unwrap()[0].release_id,
        live
    );
    assert_eq!(
        store.release(busy.id).await.unwrap().state,
        ReleaseState::Pulling
    );
    assert_eq!(working.release_id, busy.id);
    // A release for a host that is not answering fails rather than wait for it forever.
    let waiting = store
        .create_release(&release(web, "r/web:4", &["silent"]), later)
        .await
        .unwrap();
    let much_later = later + lease + 1;
    store
        .heartbeat(alive, &[], lease, much_later)
        .await
        .unwrap();
    assert_eq!(
        store
            .abandon_rollouts(much_later - lease, much_later)
            .await
            .unwrap(),
        vec![waiting.rollouts[0].id]
    );
    let failed = store.release(waiting.id).await.unwrap();
    assert_eq!(failed.state, ReleaseState::Failed);
    assert_eq!(
        failed.reason.as_deref(),
        Some("agent silent is not answering; the rollout did not start")
    );
    // A report from the agent that comes back is refused; it runs what is live instead.
    let error = store
        .report_rollout(&report(silent, stuck.rollout_id, ReleaseState::Live), later)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
}

#[tokio::test]
async fn a_release_log_takes_lines_only_from_hosts_rolling_it_out_in_one_order() {
    let (store, _db, web) = setup().await;
    let a = agent(&store, "edge-a", &["deploy", "eu"]).await;
    let b = agent(&store, "edge-b", &["deploy", "eu"]).await;
    let stranger = agent(&store, "elsewhere", &["deploy"]).await;
    let created = store
        .create_release(&release(web, "r/web:1", &["label:eu"]), NOW)
        .await
        .unwrap();
    let line = |text: &str| NewLogLine {
        stream: LogStream::Wharf,
        text: text.to_owned(),
    };
    let (on_a, on_b) = (created.rollouts[0].id, created.rollouts[1].id);
    // Not claimed yet: its host may not write.
    assert!(matches!(
        store
            .append_release_logs(on_a, a, &[line("early")], 1000, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store.claim_rollout(a, NOW).await.unwrap().unwrap();
    store.claim_rollout(b, NOW).await.unwrap().unwrap();
    // Another agent cannot write into a rollout that is not its own.
    assert!(matches!(
        store
            .append_release_logs(on_a, stranger, &[line("forged")], 1000, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .append_release_logs(i64::MAX, a, &[line("x")], 1000, NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let first = store
        .append_release_logs(on_a, a, &[line("pull: a"), line("started a")], 60, NOW)
        .await
        .unwrap();
    assert_eq!((first.stored, first.truncated), (2, false));
    store
        .append_release_logs(on_b, b, &[line("pull: b")], 60, NOW)
        .await
        .unwrap();
    // 26 bytes stored of 60; 40 more do not fit: the note says so and the host learns it.
    let cut = store
        .append_release_logs(on_a, a, &[line(&"x".repeat(39))], 60, NOW)
        .await
        .unwrap();
    assert_eq!((cut.stored, cut.truncated), (0, true));
    let (lines, truncated) = store.release_logs_after(created.id, 0, 100).await.unwrap();
    assert!(truncated);
    let seen: Vec<(i64, &str, &str)> = lines
        .iter()
        .map(|line| (line.seq, line.host.as_deref().unwrap(), line.text.as_str()))
        .collect();
    assert_eq!(
        seen[..3],
        [
            (1, "edge-a", "pull: a"),
            (2, "edge-a", "started a"),
            (3, "edge-b", "pull: b")
        ]
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[3].text.contains("limit"));
    assert_eq!(
        store
            .release_logs_after(created.id, 3, 100)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    // A rollout that ended takes no more lines.
    go_live_claimed(&store, a, on_a).await;
    assert!(matches!(
        store
            .append_release_logs(on_a, a, &[line("late")], 1000, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.release_logs_after(i64::MAX, 0, 100).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Reports the claimed rollout `rollout_id` of `agent_id` live.
async fn go_live_claimed(store: &Store, agent_id: i64, rollout_id: i64) {
    for state in [
        ReleaseState::Starting,
        ReleaseState::HealthChecking,
        ReleaseState::Live,
    ] {
        store
            .report_rollout(&report(agent_id, rollout_id, state), NOW)
            .await
            .unwrap();
    }
}
