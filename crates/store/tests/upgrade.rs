//! Upgrades on the backend the test run selects: a database left by Wharf's first schema, with
//! rows written as that version wrote them, is migrated to today's schema and used; a database a
//! newer Wharf has migrated is refused untouched, with a message saying what to run.

use wharf_store::testing::{TestDatabase, execute};
use wharf_store::{BuildFilter, NEWEST_SCHEMA, Store, StoreError, known_schemas};
use wharf_wire::{BuildState, VariableMembers};

const NOW: i64 = 1_800_000_000_000;

/// Rows as Wharf's first schema (migration 0001) held them: an installation with a repository,
/// a service tracking it, an agent, a delivery that queued a build still pending, and a build
/// that failed.
const FIRST_SCHEMA_ROWS: &str = "
INSERT INTO installations (id, account_login, account_type, suspended, deleted, created_at, updated_at)
    VALUES (7, 'acme', 'Organization', FALSE, FALSE, 1700000000000, 1700000000000);
INSERT INTO repositories (id, installation_id, full_name, repo_key, private, updated_at)
    VALUES (70, 7, 'acme/Web', 'acme/web', TRUE, 1700000000000);
INSERT INTO projects (name, created_at) VALUES ('default', 1700000000000);
INSERT INTO services (project_id, name, repo, repo_key, branch, port, domain, created_at)
    VALUES ((SELECT id FROM projects WHERE name = 'default'), 'web', 'acme/Web', 'acme/web',
            'main', 8080, 'web.example.com', 1700000000000);
INSERT INTO agents (name, token_hash, labels, version, created_at)
    VALUES ('host-1', 'aaaa', 'build,deploy', '0.1.0', 1700000000000);
INSERT INTO deliveries (id, event, action, dedupe_key, body, outcome, received_at)
    VALUES ('d-1', 'push', NULL, 'push:acme/web:refs/heads/main:abc', '{}', 'queued', 1700000000000);
INSERT INTO builds (service_id, commit_sha, branch, trigger, state, reason, attempt, max_attempts,
                    installation_id, delivery_id, created_at, updated_at, finished_at)
    VALUES ((SELECT id FROM services WHERE name = 'web'),
            '1111111111111111111111111111111111111111', 'main', 'push', 'failed', 'exit 1', 1, 3,
            7, NULL, 1700000000000, 1700000000500, 1700000000500);
INSERT INTO builds (service_id, commit_sha, branch, trigger, state, attempt, max_attempts,
                    installation_id, delivery_id, created_at, updated_at)
    VALUES ((SELECT id FROM services WHERE name = 'web'),
            '2222222222222222222222222222222222222222', 'main', 'push', 'pending', 0, 3,
            7, 'd-1', 1700000001000, 1700000001000);
";

#[tokio::test]
async fn a_database_of_the_first_schema_is_migrated_and_its_work_goes_on() {
    let (store, _database) = TestDatabase::create_at_schema(1).await.unwrap();
    execute(&store, FIRST_SCHEMA_ROWS).await.unwrap();

    store.migrate().await.expect("migrating from schema 1");
    assert_eq!(store.schema_version().await.unwrap(), Some(NEWEST_SCHEMA));

    let service = store.service_by_name("web").await.unwrap();
    assert_eq!(service.repo, "acme/Web");
    assert_eq!(service.branch, "main");
    assert_eq!(service.port, Some(8080));
    assert_eq!(service.domain.as_deref(), Some("web.example.com"));
    // Linked to the one repository of its name the installation named.
    assert_eq!(service.repository_id, Some(70));

    let builds = store.list_builds(&BuildFilter::default()).await.unwrap();
    assert_eq!(builds.len(), 2);
    for build in &builds {
        assert_eq!(build.environment, "production", "build #{}", build.id);
        assert_eq!(build.service, "web");
    }
    let failed = builds
        .iter()
        .find(|build| build.state == BuildState::Failed)
        .expect("the failed build is kept");
    assert_eq!(failed.reason.as_deref(), Some("exit 1"));

    // The pending build of the first schema is claimed and run by today's queue.
    let agent = store
        .agent_by_token_hash("aaaa")
        .await
        .unwrap()
        .expect("the agent's token still authenticates");
    let claimed = store
        .claim_build(agent.id, 60_000, None, NOW)
        .await
        .unwrap()
        .expect("the pending build is claimed");
    assert_eq!(
        claimed.build.commit_sha,
        "2222222222222222222222222222222222222222"
    );
    assert_eq!(claimed.build.installation_id, Some(7));
}

#[tokio::test]
async fn every_schema_of_an_earlier_wharf_is_migrated_to_today() {
    for schema in known_schemas().filter(|schema| *schema < NEWEST_SCHEMA) {
        let (store, _database) = TestDatabase::create_at_schema(schema).await.unwrap();
        // A number no migration has (one kept free) leaves the schema at the one before it.
        if store.schema_version().await.unwrap() != Some(schema) {
            continue;
        }
        store
            .migrate()
            .await
            .unwrap_or_else(|error| panic!("migrating from schema {schema}: {error}"));
        assert_eq!(store.schema_version().await.unwrap(), Some(NEWEST_SCHEMA));
        store.list_services().await.unwrap();
        store.list_builds(&BuildFilter::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_database_a_newer_wharf_migrated_is_refused_untouched() {
    let (store, database) = TestDatabase::create().await.unwrap();
    let newer = NEWEST_SCHEMA + 1;
    execute(
        &store,
        &format!(
            "INSERT INTO wharf_migrations (version, name, applied_at) \
             VALUES ({newer}, 'from_the_future', {NOW})"
        ),
    )
    .await
    .unwrap();
    store.close().await;

    let error = Store::connect(&database.url)
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(
        matches!(error, StoreError::NewerSchema { found, known } if found == newer && known == NEWEST_SCHEMA),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("schema is {newer}")), "{message}");
    assert!(message.contains("newer Wharf"), "{message}");

    let reopened = Store::open_existing(&database.url).await.unwrap();
    assert_eq!(reopened.schema_version().await.unwrap(), Some(newer));
}

/// The schema before variables named their compose members.
const BEFORE_VARIABLE_MEMBERS: i64 = 12;

#[tokio::test]
async fn variables_set_before_members_were_named_reach_every_member_after_the_upgrade() {
    let (store, _database) = TestDatabase::create_at_schema(BEFORE_VARIABLE_MEMBERS)
        .await
        .unwrap();
    execute(&store, FIRST_SCHEMA_ROWS).await.unwrap();
    execute(
        &store,
        "INSERT INTO service_env (service_id, name, value, sealed, secret, build, updated_at)
             VALUES ((SELECT id FROM services WHERE name = 'web'), 'API_KEY', NULL, 'v1:sealed',
                     TRUE, FALSE, 1700000000000),
                    ((SELECT id FROM services WHERE name = 'web'), 'MODE', 'production', NULL,
                     FALSE, FALSE, 1700000000000);",
    )
    .await
    .unwrap();

    store.migrate().await.expect("migrating the variables");
    let service = store.service_by_name("web").await.unwrap();
    let variables = store.list_env(service.id).await.unwrap();
    let shape: Vec<(&str, &VariableMembers)> = variables
        .iter()
        .map(|variable| (variable.name.as_str(), &variable.members))
        .collect();
    assert_eq!(
        shape,
        [
            ("API_KEY", &VariableMembers::All),
            ("MODE", &VariableMembers::All)
        ]
    );

    // Variables set now keep the members they name.
    let web_only = VariableMembers::Named(vec!["web".to_owned(), "all".to_owned()]);
    for (name, members) in [
        ("API_KEY", web_only.clone()),
        ("MODE", VariableMembers::Routed),
    ] {
        let mut variable = variables
            .iter()
            .find(|variable| variable.name == name)
            .unwrap()
            .clone();
        variable.members = members;
        store.set_env(service.id, &variable, NOW).await.unwrap();
    }
    let members: Vec<VariableMembers> = store
        .list_env(service.id)
        .await
        .unwrap()
        .into_iter()
        .map(|variable| variable.members)
        .collect();
    assert_eq!(members, [web_only, VariableMembers::Routed]);
}
