//! What the store keeps for reporting builds to GitHub, on the backend the test run selects:
//! which builds are reported, how a reporter takes them under a lease, and how changes of a
//! build or of its release make it due again; the check on its commit, installations that may
//! not write checks, and the log lines a failed check quotes.

use wharf_domain::agents::AgentScope;
use wharf_store::testing::{TestDatabase, insert_release, new_service, set_release_state};
use wharf_store::{
    DeliveryEffect, GithubReportEnd, InstallationChange, NewBuild, NewDelivery, NewService,
    StateReport, Store, hash_token,
};
use wharf_wire::{BuildState, BuildTrigger, LogStream, NewLogLine, ReleaseState};

const NOW: i64 = 1_800_000_000_000;
const LEASE: i64 = 60_000;

async fn store() -> (Store, TestDatabase) {
    TestDatabase::create().await.expect("a fresh test database")
}

async fn service(store: &Store, name: &str, repo: &str) -> i64 {
    let repo_key = (!repo.starts_with("https://")).then(|| repo.to_ascii_lowercase());
    store
        .create_service(
            &NewService {
                repo_key,
                domain: Some(format!("{name}.example.com")),
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
        installation_id: Some(42),
        delivery_id: None,
        retry_of: None,
        max_attempts: 2,
    }
}

async fn queue(store: &Store, new: &NewBuild) -> i64 {
    store.queue_build(new, NOW).await.unwrap().id
}

#[tokio::test]
async fn builds_of_a_tracked_github_branch_with_an_installation_are_reported() {
    let (store, _db) = store().await;
    let web = service(&store, "web", "acme/web").await;
    let public = service(&store, "public", "https://git.example.com/acme/public").await;
    let reported = queue(&store, &build_of(web, 'a')).await;
    let other_branch = queue(
        &store,
        &NewBuild {
            branch: Some("feature".to_owned()),
            ..build_of(web, 'b')
        },
    )
    .await;
    let no_installation = queue(
        &store,
        &NewBuild {
            installation_id: None,
            ..build_of(web, 'c')
        },
    )
    .await;
    let on_a_url = queue(&store, &build_of(public, 'd')).await;
    let pushed = store
        .record_delivery(
            &NewDelivery {
                id: "d-1".to_owned(),
                event: "push".to_owned(),
                action: None,
                dedupe_key: Some("acme/web refs/heads/main eee".to_owned()),
                body: "{}".to_owned(),
            },
            &DeliveryEffect::QueueBuilds {
                repo_key: "acme/web".to_owned(),
                repository_id: 1_000,
                repo_full_name: "acme/web".to_owned(),
                branch: "main".to_owned(),
                commit_sha: "e".repeat(40),
                installation_id: Some(42),
                max_attempts: 2,
            },
            NOW,
        )
        .await
        .unwrap();
    let wharf_store::DeliveryOutcome::Recorded { build_ids, .. } = pushed else {
        panic!("the push was stored: {pushed:?}");
    };
    for (id, expected) in [
        (reported, true),
        (other_branch, false),
        (no_installation, false),
        (on_a_url, false),
        (build_ids[0], true),
    ] {
        let report = store.github_report(id).await.unwrap();
        assert_eq!(report.reported, expected, "build #{id}: {report:?}");
    }
    // Only reported builds are due, at once.
    let mut taken = store.take_github_reports(NOW, LEASE, 10).await.unwrap();
    taken.sort_unstable();
    assert_eq!(taken, vec![reported, build_ids[0]]);

    let report = store.github_report(build_ids[0]).await.unwrap();
    assert_eq!(report.repo, "acme/web");
    assert_eq!(report.commit_sha, "e".repeat(40));
    assert_eq!(report.installation_id, Some(42));
    assert_eq!(report.build_state, BuildState::Pending);
    assert_eq!(report.domain.as_deref(), Some("web.example.com"));
    assert_eq!(report.deploy.environment, "production");
    assert_eq!(report.release, None);
    assert_eq!(report.deployment_id, None);
    assert_eq!(report.status, None);
    assert_eq!(report.attempts, 1);
}

#[tokio::test]
async fn a_taken_build_is_leased_and_a_change_during_its_pass_keeps_it_due() {
    let (store, _db) = store().await;
    let web = service(&store, "web", "acme/web").await;
    let id = queue(&store, &build_of(web, 'a')).await;
    assert_eq!(
        store.take_github_reports(NOW, LEASE, 10).await.unwrap(),
        [id]
    );
    // Leased: nobody else takes it, until the lease runs out.
    assert!(
        store
            .take_github_reports(NOW + 1, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let read = store.github_report(id).await.unwrap();

    // The build is claimed while the pass runs.
    let agent = store
        .create_agent("a", &hash_token("a"), &AgentScope::default_token(), NOW)
        .await
        .unwrap()
        .id;
    store
        .claim_build(agent, 30_000, None, NOW + 5)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .take_github_reports(NOW + 5, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_github_report(id, read.changes, &GithubReportEnd::UpToDate, NOW + 10)
        .await
        .unwrap();
    // The claim came after the pass read the build: it is due again, at once.
    assert_eq!(
        store
            .take_github_reports(NOW + 10, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );
    let again = store.github_report(id).await.unwrap();
    assert_eq!(again.build_state, BuildState::Claimed);
    assert_eq!(again.changes, read.changes + 1);
    store
        .finish_github_report(id, again.changes, &GithubReportEnd::UpToDate, NOW + 20)
        .await
        .unwrap();
    assert!(
        store
            .take_github_reports(NOW + 10 * LEASE, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.github_report(id).await.unwrap().attempts, 0);

    // A report of the same state is no change; a new state is.
    let report = |state| StateReport {
        agent_id: agent,
        build_id: id,
        state,
        reason: None,
        image: None,
        digest: None,
        failure: None,
        images: Vec::new(),
        compose_file: None,
    };
    store
        .report_build_state(&report(BuildState::Claimed), NOW + 30)
        .await
        .ok();
    assert!(
        store
            .take_github_reports(NOW + 30, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .report_build_state(&report(BuildState::Cloning), NOW + 40)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_github_reports(NOW + 40, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );

    // A reporter that dies mid-pass leaves the build to be taken when its lease runs out.
    assert!(
        store
            .take_github_reports(NOW + 40 + LEASE - 1, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .take_github_reports(NOW + 40 + LEASE, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );
    assert_eq!(store.github_report(id).await.unwrap().attempts, 2);
}

#[tokio::test]
async fn releases_made_from_a_build_make_it_due() {
    let (store, _db) = store().await;
    let web = service(&store, "web", "acme/web").await;
    let id = queue(&store, &build_of(web, 'a')).await;
    let up_to_date = |at: i64| {
        let store = store.clone();
        async move {
            let taken = store.take_github_reports(at, LEASE, 10).await.unwrap();
            for build in &taken {
                let report = store.github_report(*build).await.unwrap();
                store
                    .finish_github_report(*build, report.changes, &GithubReportEnd::UpToDate, at)
                    .await
                    .unwrap();
            }
            taken
        }
    };
    assert_eq!(up_to_date(NOW).await, [id]);
    assert!(up_to_date(NOW + 1).await.is_empty());

    let release = insert_release(&store, id, ReleaseState::Pending, None, NOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store.github_report(id).await.unwrap().release,
        Some((ReleaseState::Pending, None))
    );
    assert_eq!(up_to_date(NOW + 2).await, [id]);
    set_release_state(&store, release, ReleaseState::Pending, None, NOW + 3)
        .await
        .unwrap();
    assert!(
        up_to_date(NOW + 3).await.is_empty(),
        "the same state is no change"
    );
    set_release_state(
        &store,
        release,
        ReleaseState::Failed,
        Some("pull failed"),
        NOW + 4,
    )
    .await
    .unwrap();
    assert_eq!(up_to_date(NOW + 4).await, [id]);
    // The newest release is the one that counts.
    insert_release(&store, id, ReleaseState::Live, None, NOW + 5)
        .await
        .unwrap();
    assert_eq!(
        store.github_report(id).await.unwrap().release,
        Some((ReleaseState::Live, None))
    );
}

#[tokio::test]
async fn what_github_accepted_is_kept_and_failures_wait_or_stop_the_reports() {
    let (store, _db) = store().await;
    let web = service(&store, "web", "acme/web").await;
    let id = queue(&store, &build_of(web, 'a')).await;
    store.take_github_reports(NOW, LEASE, 10).await.unwrap();
    store.record_github_deployment(id, 1_000_001).await.unwrap();
    store.record_github_status(id, "queued").await.unwrap();
    let report = store.github_report(id).await.unwrap();
    assert_eq!(report.deployment_id, Some(1_000_001));
    assert_eq!(report.status.as_deref(), Some("queued"));

    // GitHub failed: the build waits until the time given, with the error kept.
    let retry = GithubReportEnd::RetryAt {
        at: NOW + 500,
        error: "GitHub answered 502".to_owned(),
    };
    store
        .finish_github_report(id, report.changes, &retry, NOW)
        .await
        .unwrap();
    assert!(
        store
            .take_github_reports(NOW + 499, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .take_github_reports(NOW + 500, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );
    let report = store.github_report(id).await.unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(report.error.as_deref(), Some("GitHub answered 502"));

    // GitHub refused for good: no more reports, whatever the build does next.
    let give_up = GithubReportEnd::GiveUp {
        error: "GitHub answered 404".to_owned(),
    };
    store
        .finish_github_report(id, report.changes, &give_up, NOW + 500)
        .await
        .unwrap();
    store
        .cancel_build(id, "cancelled by a user", NOW + 600)
        .await
        .unwrap();
    assert!(
        store
            .take_github_reports(NOW + 10 * LEASE, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let report = store.github_report(id).await.unwrap();
    assert!(!report.reported);
    assert_eq!(report.error.as_deref(), Some("GitHub answered 404"));
    assert_eq!(report.build_state, BuildState::Cancelled);
}

#[tokio::test]
async fn a_limit_takes_the_most_overdue_first() {
    let (store, _db) = store().await;
    let mut ids = Vec::new();
    for index in 0..5 {
        let service_id = service(&store, &format!("web{index}"), &format!("acme/web{index}")).await;
        let mut new = build_of(service_id, 'a');
        new.commit_sha = format!("{index:040x}");
        ids.push(store.queue_build(&new, NOW + 10 - index).await.unwrap().id);
    }
    // Queued later, due later: the last build was queued first.
    let taken = store
        .take_github_reports(NOW + 100, LEASE, 2)
        .await
        .unwrap();
    assert_eq!(taken, vec![ids[3], ids[4]]);
    let rest = store
        .take_github_reports(NOW + 100, LEASE, 10)
        .await
        .unwrap();
    assert_eq!(rest, vec![ids[0], ids[1], ids[2]]);
}

fn installation_42(outcome: &str) -> InstallationChange {
    InstallationChange {
        installation_id: 42,
        account_login: "acme".to_owned(),
        account_type: "Organization".to_owned(),
        suspended: None,
        deleted: false,
        add_repositories: Vec::new(),
        remove_repositories: Vec::new(),
        outcome: outcome.to_owned(),
    }
}

#[tokio::test]
async fn the_check_github_accepted_and_a_refused_checks_permission_are_kept() {
    let (store, _db) = store().await;
    store
        .apply_installation(&installation_42("created"), NOW)
        .await
        .unwrap();
    let web = service(&store, "web", "acme/web").await;
    let id = queue(&store, &build_of(web, 'a')).await;
    let report = store.github_report(id).await.unwrap();
    assert_eq!(
        (report.check_run_id, report.check, report.checks_refused),
        (None, None, false)
    );

    store.record_github_check_run(id, 7_000_001).await.unwrap();
    store.record_github_check(id, "in_progress").await.unwrap();
    let report = store.github_report(id).await.unwrap();
    assert_eq!(report.check_run_id, Some(7_000_001));
    assert_eq!(report.check.as_deref(), Some("in_progress"));

    // Refused once: news the first time only, and every build of the installation knows.
    assert!(store.refuse_checks(42, NOW).await.unwrap());
    assert!(!store.refuse_checks(42, NOW + 1).await.unwrap());
    assert!(store.github_report(id).await.unwrap().checks_refused);
    let other = queue(&store, &build_of(web, 'b')).await;
    assert!(store.github_report(other).await.unwrap().checks_refused);

    // An installation event (new permissions accepted, say) makes Wharf try checks again.
    store
        .apply_installation(&installation_42("new_permissions_accepted"), NOW + 2)
        .await
        .unwrap();
    assert!(!store.github_report(id).await.unwrap().checks_refused);
    // A build whose installation Wharf has no row of tries checks.
    assert!(!store.refuse_checks(43, NOW).await.unwrap());
}

#[tokio::test]
async fn a_build_logs_last_lines_come_oldest_first() {
    let (store, _db) = store().await;
    let web = service(&store, "web", "acme/web").await;
    let id = queue(&store, &build_of(web, 'a')).await;
    assert!(store.build_log_tail(id, 3).await.unwrap().is_empty());
    let agent = store
        .create_agent("a", &hash_token("a"), &AgentScope::default_token(), NOW)
        .await
        .unwrap()
        .id;
    store
        .claim_build(agent, LEASE, None, NOW)
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<NewLogLine> = (1..=5)
        .map(|line| NewLogLine {
            stream: LogStream::Stdout,
            text: format!("line {line}"),
        })
        .collect();
    store
        .append_logs(id, agent, &lines, 1 << 20, NOW)
        .await
        .unwrap();
    assert_eq!(
        store.build_log_tail(id, 3).await.unwrap(),
        ["line 3", "line 4", "line 5"]
    );
    assert_eq!(store.build_log_tail(id, 10).await.unwrap().len(), 5);
}
