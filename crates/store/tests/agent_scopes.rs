//! What an agent's token allows, on the backend the test run selects: builds go only to tokens
//! that allow `build` and serve the build's service, releases only to hosts whose tokens allow
//! `deploy`, the label that names them and the service, and revoking a token returns its builds
//! to the queue and fails its unfinished rollouts while what was live stays live.

use wharf_domain::agents::AgentScope;
use wharf_store::testing::{TestDatabase, new_service};
use wharf_store::{NewBuild, NewRelease, NewService, RolloutReport, Store, hash_token};
use wharf_wire::{BuildState, BuildTrigger, ReleaseState, ReleaseTrigger};

const NOW: i64 = 1_800_000_000_000;
const LEASE: i64 = 30_000;

async fn service(store: &Store, name: &str, project: &str) -> i64 {
    store
        .create_service(
            &NewService {
                project: project.to_owned(),
                ..new_service(name, &format!("acme/{name}"))
            },
            NOW,
        )
        .await
        .unwrap()
        .id
}

async fn queue(store: &Store, service_id: i64) -> i64 {
    let build = NewBuild {
        service_id,
        environment: None,
        commit_sha: "a".repeat(40),
        branch: Some("main".to_owned()),
        trigger: BuildTrigger::Manual,
        installation_id: None,
        delivery_id: None,
        retry_of: None,
        max_attempts: 3,
    };
    store.queue_build(&build, NOW).await.unwrap().id
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// An agent whose token allows `allowed` (default `build,deploy` when empty) for `projects` and
/// `services`, registered with `registered` as the store records it.
async fn agent(
    store: &Store,
    name: &str,
    allowed: &[&str],
    projects: &[&str],
    services: &[&str],
    registered: &[&str],
) -> i64 {
    let scope = AgentScope::issue(&strings(allowed), &strings(projects), &strings(services))
        .expect("a valid scope");
    let id = store
        .create_agent(name, &hash_token(name), &scope, NOW)
        .await
        .unwrap()
        .id;
    store
        .register_agent(id, &strings(registered), None, None, NOW)
        .await
        .unwrap();
    id
}

async fn claim(store: &Store, agent_id: i64) -> Option<i64> {
    store
        .claim_build(agent_id, LEASE, None, NOW)
        .await
        .unwrap()
        .map(|claimed| claimed.build.id)
}

fn release(service_id: i64, image: &str, hosts: &[&str]) -> NewRelease {
    NewRelease {
        service_id,
        environment: "production".to_owned(),
        build_id: None,
        image: image.to_owned(),
        trigger: ReleaseTrigger::Manual,
        rollback_of: None,
        hosts: strings(hosts),
    }
}

async fn report(store: &Store, agent_id: i64, rollout_id: i64, state: ReleaseState) {
    let report = RolloutReport {
        agent_id,
        rollout_id,
        state,
        reason: None,
        probes: Vec::new(),
        log_tail: Vec::new(),
    };
    store.report_rollout(&report, NOW).await.unwrap();
}

#[tokio::test]
async fn builds_go_only_to_tokens_that_allow_build_for_their_service() {
    let (store, _db) = TestDatabase::create().await.unwrap();
    let web = service(&store, "web", "shop").await;
    let blog = service(&store, "blog", "site").await;
    let docs = service(&store, "docs", "site").await;
    let deployer = agent(&store, "deployer", &["deploy"], &[], &[], &["deploy"]).await;
    let shop_builder = agent(&store, "shop-builder", &["build"], &["shop"], &[], &[]).await;
    let docs_builder = agent(&store, "docs-builder", &[], &[], &["docs"], &[]).await;

    let web_build = queue(&store, web).await;
    let blog_build = queue(&store, blog).await;
    let docs_build = queue(&store, docs).await;

    assert_eq!(claim(&store, deployer).await, None, "deploy-only token");
    // The oldest build the token serves, past older ones it does not.
    assert_eq!(claim(&store, docs_builder).await, Some(docs_build));
    assert_eq!(claim(&store, shop_builder).await, Some(web_build));
    assert_eq!(
        claim(&store, shop_builder).await,
        None,
        "blog is not in shop"
    );
    let blog_state = store.build(blog_build).await.unwrap().state;
    assert_eq!(blog_state, BuildState::Pending);

    let anyone = agent(&store, "anyone", &[], &[], &[], &[]).await;
    assert_eq!(claim(&store, anyone).await, Some(blog_build));
}

#[tokio::test]
async fn revoking_a_token_ends_it_and_returns_its_builds_to_the_queue() {
    let (store, _db) = TestDatabase::create().await.unwrap();
    let web = service(&store, "web", "shop").await;
    let builder = agent(&store, "builder", &[], &[], &[], &["build"]).await;
    let other = agent(&store, "other", &[], &[], &[], &["build"]).await;
    let held = queue(&store, web).await;
    assert_eq!(claim(&store, builder).await, Some(held));

    let revoked = store.revoke_agent("builder", NOW + 1).await.unwrap();
    assert_eq!(revoked.requeued_builds, vec![held]);
    assert!(revoked.failed_rollouts.is_empty());
    assert!(revoked.agent.revoked_at.is_some());
    assert!(
        store
            .agent_by_token_hash(&hash_token("builder"))
            .await
            .unwrap()
            .is_none(),
        "a revoked token finds no agent"
    );
    let build = store.build(held).await.unwrap();
    assert_eq!(build.state, BuildState::Pending);
    assert_eq!(build.agent, None);

    // Its claims take nothing, even with the token's hash in hand; another agent takes the build.
    queue(&store, service(&store, "api", "shop").await).await;
    assert_eq!(claim(&store, builder).await, None);
    assert_eq!(claim(&store, other).await, Some(held));

    // Revoking again changes nothing; an unknown name is not found.
    let again = store.revoke_agent("builder", NOW + 2).await.unwrap();
    assert!(again.requeued_builds.is_empty());
    assert_eq!(again.agent.revoked_at, revoked.agent.revoked_at);
    assert!(store.revoke_agent("nobody", NOW).await.is_err());

    // A new token for the name (what `wharf up` does for its local agent) works again.
    store
        .replace_agent_token("builder", &hash_token("builder-2"))
        .await
        .unwrap();
    let back = store.agent_by_token_hash(&hash_token("builder-2")).await;
    assert!(
        back.unwrap()
            .is_some_and(|agent| agent.revoked_at.is_none())
    );
}

#[tokio::test]
async fn releases_go_only_to_hosts_whose_tokens_allow_them() {
    let (store, _db) = TestDatabase::create().await.unwrap();
    let web = service(&store, "web", "shop").await;
    // Registered with `eu` though its token lacks it (as the store records whatever it is told).
    let unlabelled = agent(&store, "edge-1", &["deploy"], &[], &[], &["deploy", "eu"]).await;
    let labelled = agent(
        &store,
        "edge-2",
        &["deploy", "eu"],
        &[],
        &[],
        &["deploy", "eu"],
    )
    .await;
    let elsewhere = agent(&store, "edge-3", &["deploy", "eu"], &["site"], &[], &["eu"]).await;
    let builder = agent(&store, "builder", &["build"], &[], &[], &["build"]).await;

    let created = store
        .create_release(&release(web, "r/web:1", &["label:eu", "builder"]), NOW)
        .await
        .unwrap();
    let hosts: Vec<&str> = created
        .rollouts
        .iter()
        .map(|rollout| rollout.agent.as_str())
        .collect();
    assert_eq!(hosts, ["edge-2"]);
    for agent_id in [unlabelled, elsewhere, builder] {
        assert!(store.claim_rollout(agent_id, NOW).await.unwrap().is_none());
    }
    assert!(store.claim_rollout(labelled, NOW).await.unwrap().is_some());

    // A revoked host is no host.
    store.revoke_agent("edge-2", NOW).await.unwrap();
    let next = store
        .create_release(&release(web, "r/web:2", &["edge-2"]), NOW)
        .await
        .unwrap();
    assert_eq!(next.state, ReleaseState::Failed);
    assert!(next.rollouts.is_empty());
}

#[tokio::test]
async fn revoking_a_host_fails_its_rollouts_and_keeps_what_was_live_live() {
    let (store, _db) = TestDatabase::create().await.unwrap();
    let web = service(&store, "web", "shop").await;
    let host = agent(&store, "edge-1", &[], &[], &[], &["deploy"]).await;
    let first = store
        .create_release(&release(web, "r/web:1", &["edge-1"]), NOW)
        .await
        .unwrap();
    let claimed = store.claim_rollout(host, NOW).await.unwrap().unwrap();
    for state in [
        ReleaseState::Starting,
        ReleaseState::HealthChecking,
        ReleaseState::Live,
    ] {
        report(&store, host, claimed.rollout_id, state).await;
    }
    let second = store
        .create_release(&release(web, "r/web:2", &["edge-1"]), NOW)
        .await
        .unwrap();
    let running = store.claim_rollout(host, NOW).await.unwrap().unwrap();
    report(&store, host, running.rollout_id, ReleaseState::Starting).await;

    let revoked = store.revoke_agent("edge-1", NOW + 1).await.unwrap();
    assert_eq!(revoked.failed_rollouts, vec![running.rollout_id]);
    let failed = store.release(second.id).await.unwrap();
    assert_eq!(failed.state, ReleaseState::Failed);
    assert_eq!(failed.reason.as_deref(), Some("agent edge-1 was revoked"));
    let rollout = store.rollout(running.rollout_id).await.unwrap();
    assert_eq!(rollout.reason.as_deref(), Some("agent edge-1 was revoked"));
    assert_eq!(
        store.release(first.id).await.unwrap().state,
        ReleaseState::Live
    );
    let live = store.live_rollouts(host).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].release_id, first.id);
}
