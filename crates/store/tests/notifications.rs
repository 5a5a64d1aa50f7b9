//! The notifications' outbox on the backend the test run selects: the triggers write one event
//! per outcome in the transaction of the change, the fan-out keeps repeated failures quiet and
//! marks a recovery, and deliveries are taken under a lease, retried, given up on and retried
//! again on request.

use wharf_domain::agents::AgentScope;
use wharf_store::testing::{TestDatabase, insert_release, new_service, set_release_state};
use wharf_store::{
    DeliveryEnd, NewBuild, NewRelease, NewSink, StateReport, Store, StoredSink, hash_token,
};
use wharf_wire::{
    BuildState, BuildTrigger, EmailAddresses, NotificationDeliveryState, NotificationEvent,
    ReleaseState, ReleaseTrigger, SinkKind,
};

const NOW: i64 = 1_800_000_000_000;
const LEASE: i64 = 60_000;
const MINUTE: i64 = 60_000;

async fn store() -> (Store, TestDatabase) {
    TestDatabase::create().await.expect("a fresh test database")
}

async fn service(store: &Store, name: &str) -> i64 {
    store
        .create_service(&new_service(name, &format!("acme/{name}")), NOW)
        .await
        .unwrap()
        .id
}

async fn sink(
    store: &Store,
    name: &str,
    events: Vec<NotificationEvent>,
    services: &[&str],
) -> StoredSink {
    store
        .create_sink(
            &NewSink {
                name: name.to_owned(),
                kind: SinkKind::Webhook,
                url_shown: "http://127.0.0.1/hook".to_owned(),
                url_sealed: "sealed-url".to_owned(),
                secret_sealed: Some("sealed-secret".to_owned()),
                email: None,
                events,
                services: services.iter().map(|name| (*name).to_owned()).collect(),
            },
            NOW,
        )
        .await
        .unwrap()
}

/// A sink's messages, oldest first, as (event, disposition).
async fn messages(store: &Store, sink: &StoredSink) -> Vec<(NotificationEvent, String)> {
    let mut deliveries = store.sink_deliveries(sink.id, false, 100).await.unwrap();
    deliveries.reverse();
    deliveries
        .into_iter()
        .map(|delivery| (delivery.event, delivery.disposition))
        .collect()
}

/// A release of an image by hand to the service's default host.
fn manual_release(service_id: i64) -> NewRelease {
    NewRelease {
        service_id,
        environment: "production".to_owned(),
        build_id: None,
        image: "registry.test/web:1".to_owned(),
        trigger: ReleaseTrigger::Manual,
        rollback_of: None,
        hosts: Vec::new(),
    }
}

fn build_of(service_id: i64) -> NewBuild {
    NewBuild {
        service_id,
        environment: None,
        commit_sha: "a".repeat(40),
        branch: Some("main".to_owned()),
        trigger: BuildTrigger::Manual,
        installation_id: None,
        delivery_id: None,
        retry_of: None,
        max_attempts: 2,
    }
}

#[tokio::test]
async fn outcomes_become_one_event_each_through_the_triggers() {
    use NotificationEvent::*;
    let (store, _db) = store().await;
    let web = service(&store, "web").await;
    let everything = sink(&store, "everything", Vec::new(), &[]).await;
    let failures_of_api = sink(&store, "api-failures", vec![BuildFailed], &["api"]).await;

    // A build that fails.
    let build = store.queue_build(&build_of(web), NOW).await.unwrap().id;
    let agent = store
        .create_agent("a", &hash_token("a"), &AgentScope::default_token(), NOW)
        .await
        .unwrap()
        .id;
    store
        .claim_build(agent, LEASE, None, NOW + 1)
        .await
        .unwrap()
        .unwrap();
    let report = StateReport {
        agent_id: agent,
        build_id: build,
        state: BuildState::Failed,
        reason: Some("the Dockerfile's RUN step failed".to_owned()),
        image: None,
        digest: None,
        failure: None,
        images: Vec::new(),
        compose_file: None,
    };
    store.report_build_state(&report, NOW + 2).await.unwrap();

    // A release that is rolled back: one event however its state is written again.
    let release = insert_release(&store, build, ReleaseState::Pending, None, NOW + 3)
        .await
        .unwrap();
    set_release_state(&store, release, ReleaseState::HealthChecking, None, NOW + 4)
        .await
        .unwrap();
    set_release_state(
        &store,
        release,
        ReleaseState::RolledBack,
        Some("unhealthy"),
        NOW + 5,
    )
    .await
    .unwrap();
    set_release_state(
        &store,
        release,
        ReleaseState::RolledBack,
        Some("unhealthy"),
        NOW + 6,
    )
    .await
    .unwrap();

    assert_eq!(store.fan_out_notifications(NOW + 10, 100).await.unwrap(), 1);
    assert_eq!(
        messages(&store, &everything).await,
        [
            (BuildFailed, "sent".to_owned()),
            // The rolled-back release follows the failed build: a repeat inside the hour.
        ]
    );
    assert!(messages(&store, &failures_of_api).await.is_empty());
    assert_eq!(store.fan_out_notifications(NOW + 11, 100).await.unwrap(), 0);

    let delivery = store
        .sink_deliveries(everything.id, false, 10)
        .await
        .unwrap()[0]
        .clone();
    let message = store
        .notification_message(delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.event, BuildFailed);
    assert_eq!(message.service.as_deref(), Some("web"));
    assert_eq!(message.environment.as_deref(), Some("production"));
    assert_eq!(message.commit_sha, Some("a".repeat(40)));
    assert_eq!(message.build_id, Some(build));
    assert_eq!(
        message.reason.as_deref(),
        Some("the Dockerfile's RUN step failed")
    );
    assert_eq!(message.message_id.len(), 32, "{}", message.message_id);
}

#[tokio::test]
async fn repeated_failures_are_one_message_and_a_recovery_another() {
    use NotificationEvent::*;
    let (store, _db) = store().await;
    let web = service(&store, "web").await;
    let api = service(&store, "api").await;
    let everything = sink(&store, "everything", Vec::new(), &[]).await;
    let build = store.queue_build(&build_of(web), NOW).await.unwrap().id;
    let api_build = store.queue_build(&build_of(api), NOW).await.unwrap().id;

    let mut at = NOW;
    for outcome in [
        ReleaseState::RolledBack,
        ReleaseState::Failed,
        ReleaseState::RolledBack,
    ] {
        at += MINUTE;
        let release = insert_release(&store, build, ReleaseState::Pending, None, at)
            .await
            .unwrap();
        set_release_state(&store, release, outcome, Some("unhealthy"), at)
            .await
            .unwrap();
    }
    // Another service's outcome is its own.
    let other = insert_release(&store, api_build, ReleaseState::Pending, None, at)
        .await
        .unwrap();
    set_release_state(&store, other, ReleaseState::Live, None, at)
        .await
        .unwrap();
    // More than an hour after the first message, a failure says the service is still failing.
    at += 61 * MINUTE;
    let release = insert_release(&store, build, ReleaseState::Pending, None, at)
        .await
        .unwrap();
    set_release_state(
        &store,
        release,
        ReleaseState::Failed,
        Some("pull failed"),
        at,
    )
    .await
    .unwrap();
    at += MINUTE;
    let release = insert_release(&store, build, ReleaseState::Pending, None, at)
        .await
        .unwrap();
    set_release_state(&store, release, ReleaseState::Live, None, at)
        .await
        .unwrap();
    // Fanned out in two passes: the decisions hold across them.
    store.fan_out_notifications(at, 2).await.unwrap();
    store.fan_out_notifications(at, 100).await.unwrap();

    assert_eq!(
        messages(&store, &everything).await,
        [
            (ReleaseRolledBack, "sent".to_owned()),
            (ReleaseLive, "sent".to_owned()),
            (ReleaseFailed, "still_failing".to_owned()),
            (ReleaseLive, "recovered".to_owned()),
        ]
    );
}

#[tokio::test]
async fn agents_going_silent_and_coming_back_are_reported_once_each() {
    use NotificationEvent::*;
    let (store, _db) = store().await;
    let everything = sink(&store, "everything", Vec::new(), &[]).await;
    let agent = store
        .create_agent(
            "edge",
            &hash_token("edge"),
            &AgentScope::default_token(),
            NOW,
        )
        .await
        .unwrap()
        .id;
    let never_seen = store
        .create_agent(
            "never",
            &hash_token("never"),
            &AgentScope::default_token(),
            NOW,
        )
        .await
        .unwrap()
        .id;
    store
        .register_agent(agent, &[], None, None, NOW)
        .await
        .unwrap();

    assert!(
        store
            .mark_agents_offline(NOW, NOW + 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .mark_agents_offline(NOW + LEASE, NOW + LEASE + 1)
            .await
            .unwrap(),
        [agent]
    );
    assert!(
        store
            .mark_agents_offline(NOW + 2 * LEASE, NOW + 2 * LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .heartbeat(agent, &[], LEASE, NOW + 3 * LEASE)
        .await
        .unwrap();
    store
        .heartbeat(agent, &[], LEASE, NOW + 3 * LEASE + 1)
        .await
        .unwrap();
    store
        .fan_out_notifications(NOW + 4 * LEASE, 100)
        .await
        .unwrap();
    assert_eq!(
        messages(&store, &everything).await,
        [
            (AgentOffline, "sent".to_owned()),
            (AgentOnline, "sent".to_owned())
        ]
    );
    let delivery = store
        .sink_deliveries(everything.id, false, 1)
        .await
        .unwrap()[0]
        .clone();
    let message = store
        .notification_message(delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.agent.as_deref(), Some("edge"));
    let _ = never_seen;
}

#[tokio::test]
async fn a_build_whose_agent_went_silent_is_reported_stuck_once() {
    let (store, _db) = store().await;
    let web = service(&store, "web").await;
    let everything = sink(&store, "everything", Vec::new(), &[]).await;
    let new = NewBuild {
        max_attempts: 3,
        ..build_of(web)
    };
    store.queue_build(&new, NOW).await.unwrap();
    let agent = store
        .create_agent("a", &hash_token("a"), &AgentScope::default_token(), NOW)
        .await
        .unwrap()
        .id;
    for attempt in 0..2 {
        let at = NOW + attempt * 10 * LEASE;
        store
            .claim_build(agent, LEASE, None, at)
            .await
            .unwrap()
            .unwrap();
        let expiry = store.expire_leases(at + 2 * LEASE).await.unwrap();
        assert_eq!(expiry.requeued.len(), 1);
    }
    store
        .fan_out_notifications(NOW + 100 * LEASE, 100)
        .await
        .unwrap();
    assert_eq!(
        messages(&store, &everything).await,
        [(NotificationEvent::RolloutStuck, "sent".to_owned())]
    );
}

#[tokio::test]
async fn work_past_its_deadline_is_reported_stuck_once_and_work_within_it_is_not() {
    use NotificationEvent::*;
    let (store, _db) = store().await;
    let web = service(&store, "web").await;
    let everything = sink(&store, "everything", Vec::new(), &[]).await;
    let agent = store
        .create_agent(
            "local",
            &hash_token("local"),
            &AgentScope::default_token(),
            NOW,
        )
        .await
        .unwrap()
        .id;
    store.queue_build(&build_of(web), NOW).await.unwrap();
    let build = store
        .claim_build(agent, LEASE, Some(NOW + 10 * MINUTE), NOW)
        .await
        .unwrap()
        .unwrap();
    store
        .register_agent(agent, &[], None, None, NOW)
        .await
        .unwrap();
    let release = store
        .create_release(&manual_release(web), NOW)
        .await
        .unwrap();
    let rollout = store.claim_rollout(agent, NOW).await.unwrap().unwrap();
    assert_eq!(rollout.release_id, release.id);
    store
        .set_rollout_deadline(rollout.rollout_id, NOW + 20 * MINUTE)
        .await
        .unwrap();

    assert!(
        store
            .report_overdue(NOW + 10 * MINUTE)
            .await
            .unwrap()
            .is_empty(),
        "nothing is past its deadline yet"
    );
    let overdue = store.report_overdue(NOW + 11 * MINUTE).await.unwrap();
    assert_eq!(overdue.builds, [build.build.id]);
    assert!(overdue.releases.is_empty());
    let overdue = store.report_overdue(NOW + 21 * MINUTE).await.unwrap();
    assert!(overdue.builds.is_empty(), "the build was told already");
    assert_eq!(overdue.releases, [release.id]);
    assert!(
        store
            .report_overdue(NOW + 30 * MINUTE)
            .await
            .unwrap()
            .is_empty(),
        "each is told once"
    );

    store
        .fan_out_notifications(NOW + 30 * MINUTE, 100)
        .await
        .unwrap();
    assert_eq!(
        messages(&store, &everything).await,
        [
            (RolloutStuck, "sent".to_owned()),
            (RolloutStuck, "sent".to_owned())
        ]
    );
    let deliveries = store
        .sink_deliveries(everything.id, false, 10)
        .await
        .unwrap();
    let rollout_message = store
        .notification_message(deliveries[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rollout_message.release_id, Some(release.id));
    assert!(
        rollout_message
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("past its deadline"),
        "{:?}",
        rollout_message.reason
    );
    let build_message = store
        .notification_message(deliveries[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(build_message.build_id, Some(build.build.id));
    assert_eq!(build_message.agent.as_deref(), Some("local"));

    // A build that is taken again gets a new deadline, and none when its agent names none.
    store.queue_build(&build_of(web), NOW).await.unwrap();
    store.expire_leases(NOW + 40 * MINUTE).await.unwrap();
    let again = store
        .claim_build(agent, LEASE, None, NOW + 40 * MINUTE)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .report_overdue(NOW + 1000 * MINUTE)
            .await
            .unwrap()
            .builds
            .is_empty(),
        "build #{} has no deadline",
        again.build.id
    );
}

#[tokio::test]
async fn deliveries_are_leased_retried_given_up_on_and_retried_again() {
    let (store, _db) = store().await;
    let hook = sink(&store, "hook", Vec::new(), &[]).await;
    let other = sink(&store, "other", Vec::new(), &[]).await;
    let test = store.record_test_event(hook.id, NOW).await.unwrap();
    assert!(test > 0);
    assert_eq!(
        store.fan_out_notifications(NOW, 100).await.unwrap(),
        1,
        "a test goes to its sink only"
    );
    assert!(messages(&store, &other).await.is_empty());

    let taken = store
        .take_notification_deliveries(NOW, LEASE, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let id = taken[0];
    // Under its lease, no other sender takes it.
    assert!(
        store
            .take_notification_deliveries(NOW + 1, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.notification_message(id).await.unwrap().unwrap();
    assert_eq!(first.attempts, 1);
    store
        .finish_notification_delivery(
            id,
            &DeliveryEnd::RetryAt {
                at: NOW + 1000,
                status: Some(500),
                error: "500".to_owned(),
            },
            NOW + 2,
        )
        .await
        .unwrap();
    assert!(
        store
            .take_notification_deliveries(NOW + 999, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .take_notification_deliveries(NOW + 1000, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );
    let second = store.notification_message(id).await.unwrap().unwrap();
    assert_eq!(second.attempts, 2);
    assert_eq!(second.message_id, first.message_id, "one message, one id");
    // A sender that dies leaves it to be taken when its lease runs out.
    assert_eq!(
        store
            .take_notification_deliveries(NOW + 1000 + LEASE, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );
    store
        .finish_notification_delivery(
            id,
            &DeliveryEnd::Dead {
                status: Some(500),
                error: "500".to_owned(),
            },
            NOW + 2000 + LEASE,
        )
        .await
        .unwrap();
    let failed = store.sink_deliveries(hook.id, true, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].state, NotificationDeliveryState::Dead);
    assert_eq!(store.sink("hook").await.unwrap().unwrap().dead, 1);
    assert!(
        store
            .take_notification_deliveries(NOW + 100 * LEASE, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store
            .retry_dead_deliveries(hook.id, NOW + 100 * LEASE)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .take_notification_deliveries(NOW + 100 * LEASE, LEASE, 10)
            .await
            .unwrap(),
        [id]
    );
    store
        .finish_notification_delivery(
            id,
            &DeliveryEnd::Delivered { status: 200 },
            NOW + 101 * LEASE,
        )
        .await
        .unwrap();
    assert!(
        store
            .sink_deliveries(hook.id, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let delivered = store.sink_deliveries(hook.id, false, 10).await.unwrap();
    assert_eq!(delivered[0].state, NotificationDeliveryState::Delivered);
    assert_eq!(delivered[0].attempts, 1);

    // Removing a sink removes its deliveries.
    assert!(store.remove_sink("hook").await.unwrap());
    assert!(!store.remove_sink("hook").await.unwrap());
    assert!(store.notification_message(id).await.unwrap().is_none());
    assert_eq!(store.sinks().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_rollout_whose_agent_went_silent_is_reported_stuck_and_its_release_failed() {
    use NotificationEvent::*;
    let (store, _db) = store().await;
    let web = service(&store, "web").await;
    let everything = sink(&store, "everything", Vec::new(), &[]).await;
    let agent = store
        .create_agent(
            "local",
            &hash_token("local"),
            &AgentScope::default_token(),
            NOW,
        )
        .await
        .unwrap()
        .id;
    store
        .register_agent(agent, &[], None, None, NOW)
        .await
        .unwrap();
    let release = store
        .create_release(&manual_release(web), NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .abandon_rollouts(NOW + LEASE, NOW + 2 * LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .abandon_rollouts(NOW + 2 * LEASE, NOW + 3 * LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .fan_out_notifications(NOW + 3 * LEASE, 100)
        .await
        .unwrap();
    assert_eq!(
        messages(&store, &everything).await,
        [
            (RolloutStuck, "sent".to_owned()),
            (ReleaseFailed, "sent".to_owned())
        ]
    );
    let stuck = store
        .sink_deliveries(everything.id, false, 10)
        .await
        .unwrap()[1]
        .clone();
    let message = store.notification_message(stuck.id).await.unwrap().unwrap();
    assert_eq!(message.release_id, Some(release.id));
    assert_eq!(message.agent.as_deref(), Some("local"));
    assert!(
        message
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("not answering"),
        "{:?}",
        message.reason
    );
}

#[tokio::test]
async fn an_email_sink_keeps_its_addresses_and_its_server_sealed() {
    let (store, _db) = store().await;
    let addresses = EmailAddresses {
        to: vec![
            "ops@example.com".to_owned(),
            "oncall@example.com".to_owned(),
        ],
        from: "Wharf <wharf@example.com>".to_owned(),
    };
    let created = store
        .create_sink(
            &NewSink {
                name: "mail".to_owned(),
                kind: SinkKind::Email,
                url_shown: "smtp://mail.example.com:587".to_owned(),
                url_sealed: "sealed-smtp-url".to_owned(),
                secret_sealed: Some("sealed-password".to_owned()),
                email: Some(addresses.clone()),
                events: Vec::new(),
                services: Vec::new(),
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(created.kind, SinkKind::Email);
    assert_eq!(created.email.as_ref(), Some(&addresses));
    assert_eq!(created.url_sealed, "sealed-smtp-url");
    assert_eq!(created.secret_sealed.as_deref(), Some("sealed-password"));
    // A webhook beside it has no addresses.
    let hook = sink(&store, "hook", Vec::new(), &[]).await;
    assert_eq!(hook.email, None);
    let listed = store.sinks().await.unwrap();
    let mail = listed.iter().find(|sink| sink.name == "mail").unwrap();
    assert_eq!(mail.email.as_ref(), Some(&addresses));

    // A test message carries the addresses and the sealed server to the delivery loop.
    store.record_test_event(created.id, NOW).await.unwrap();
    assert_eq!(store.fan_out_notifications(NOW, 100).await.unwrap(), 1);
    let taken = store
        .take_notification_deliveries(NOW, LEASE, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let message = store.notification_message(taken[0]).await.unwrap().unwrap();
    assert_eq!(message.sink_kind, SinkKind::Email);
    assert_eq!(message.email.as_ref(), Some(&addresses));
    assert_eq!(message.url_sealed, "sealed-smtp-url");
    assert_eq!(message.secret_sealed.as_deref(), Some("sealed-password"));
    assert_eq!(message.event, NotificationEvent::Test);

    // A refusal on the first attempt is a dead letter at once, with the server's reply code.
    store
        .finish_notification_delivery(
            taken[0],
            &DeliveryEnd::Dead {
                status: Some(550),
                error: "the mail server refused the message: 550 no such user".to_owned(),
            },
            NOW + 1,
        )
        .await
        .unwrap();
    let failed = store.sink_deliveries(created.id, true, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].state, NotificationDeliveryState::Dead);
    assert_eq!(failed[0].last_status, Some(550));
    assert_eq!(failed[0].attempts, 1);
}
