//! Pull requests, their comments and their labels, against the GitHub stand-in, which checks
//! every request and answer against GitHub's OpenAPI description: a comment made once, edited
//! and read back through every page of the list, the open pull requests across pages, a label
//! taken off (and taking off one that is not there is no error), and GitHub's 403 without the
//! permission each call needs.

use std::time::Duration;

use secrecy::SecretString;
use wharf_github::{AppConfig, GithubApp, IssueComment, RetryPolicy};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 42;

struct Fixture {
    standin: GithubStandin,
    app: GithubApp,
}

async fn start() -> Fixture {
    let key = AppKey::generate().unwrap();
    let standin = GithubStandin::start(StandinConfig::new(APP_ID, &key.public_pem))
        .await
        .unwrap();
    standin.add_installation(INSTALLATION, "acme");
    standin.add_repository(INSTALLATION, "acme/web").unwrap();
    standin
        .commit_files("acme/web", "main", &[("README", b"hi\n")], "first")
        .unwrap();
    let app = GithubApp::new(&AppConfig {
        app_id: APP_ID,
        private_key: SecretString::from(key.private_pem.clone()),
        api_url: standin.api_url(),
    })
    .unwrap()
    .with_retry(RetryPolicy {
        attempts: 1,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    });
    Fixture { standin, app }
}

fn assert_no_violations(standin: &GithubStandin) {
    assert!(
        standin.schema_violations().is_empty(),
        "{:#?}",
        standin.schema_violations()
    );
}

#[tokio::test]
async fn a_comment_is_made_once_then_edited_and_read_back_through_the_list() {
    let Fixture { standin, app } = start().await;
    standin.open_pull_request("acme/web", 7);
    let id = app
        .create_issue_comment(INSTALLATION, "acme", "web", 7, "Preview is building")
        .await
        .unwrap();
    let sent = standin.requests().last().unwrap().clone();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str(), sent.status),
        ("POST", "/repos/acme/web/issues/7/comments", 201)
    );
    assert_eq!(
        sent.body,
        Some(serde_json::json!({"body": "Preview is building"}))
    );
    app.update_issue_comment(INSTALLATION, "acme", "web", id, "Preview is live")
        .await
        .unwrap();

    let comments = app
        .issue_comments(INSTALLATION, "acme", "web", 7)
        .await
        .unwrap();
    assert_eq!(
        comments,
        vec![IssueComment {
            id,
            body: "Preview is live".to_owned(),
            user_login: Some("wharf-test-app[bot]".to_owned()),
        }]
    );
    assert_eq!(
        standin.comment_history(id),
        ["Preview is building", "Preview is live"]
    );
    let stored = standin.issue_comments("acme/web", 7);
    assert_eq!(stored.len(), 1, "made once, then edited: {stored:#?}");
    assert_eq!(stored[0]["body"], "Preview is live");
    assert!(
        app.issue_comments(INSTALLATION, "acme", "web", 8)
            .await
            .unwrap()
            .is_empty(),
        "another pull request's comments are its own"
    );

    // A comment GitHub does not have (deleted, say) is a 404, which a later try cannot mend.
    let missing = app
        .update_issue_comment(INSTALLATION, "acme", "web", 1, "Preview is live")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");
    assert!(!missing.is_transient());
    assert_no_violations(&standin);
}

#[tokio::test]
async fn every_page_of_comments_is_read_oldest_first() {
    let Fixture { standin, app } = start().await;
    standin.open_pull_request("acme/web", 3);
    for index in 0..120 {
        standin.add_issue_comment("acme/web", 3, "someone", &format!("comment {index}"));
    }
    let ours = app
        .create_issue_comment(INSTALLATION, "acme", "web", 3, "<!-- wharf:web -->")
        .await
        .unwrap();
    let comments = app
        .issue_comments(INSTALLATION, "acme", "web", 3)
        .await
        .unwrap();
    assert_eq!(comments.len(), 121, "two pages of 100");
    assert_eq!(comments[0].body, "comment 0");
    assert_eq!(comments[0].user_login.as_deref(), Some("someone"));
    assert_eq!(comments[120].id, ours);
    let pages: Vec<Option<String>> = standin
        .requests()
        .iter()
        .filter(|request| request.method == "GET")
        .map(|request| request.query.clone())
        .collect();
    assert_eq!(
        pages,
        [
            Some("per_page=100&page=1".to_owned()),
            Some("per_page=100&page=2".to_owned())
        ]
    );
    assert_no_violations(&standin);
}

#[tokio::test]
async fn only_open_pull_requests_are_listed_across_pages() {
    let Fixture { standin, app } = start().await;
    for number in 1..=130 {
        standin.open_pull_request("acme/web", number);
    }
    for number in [2, 50, 129] {
        standin.close_pull_request("acme/web", number);
    }
    // Closed, then opened again: open.
    standin.close_pull_request("acme/web", 60);
    standin.open_pull_request("acme/web", 60);
    // Closed without ever having been listed open.
    standin.close_pull_request("acme/web", 131);

    let mut numbers = app
        .open_pull_requests(INSTALLATION, "acme", "web")
        .await
        .unwrap();
    assert_eq!(numbers.len(), 127);
    assert_eq!(numbers[0], 130, "newest first");
    numbers.sort_unstable();
    let expected: Vec<u64> = (1..=130)
        .filter(|number| ![2, 50, 129].contains(number))
        .collect();
    assert_eq!(numbers, expected);
    let listings: Vec<Option<String>> = standin
        .requests()
        .iter()
        .filter(|request| request.path == "/repos/acme/web/pulls")
        .map(|request| request.query.clone())
        .collect();
    assert_eq!(
        listings,
        [
            Some("state=open&per_page=100&page=1".to_owned()),
            Some("state=open&per_page=100&page=2".to_owned())
        ]
    );

    // A repository without pull requests has none open.
    standin.add_repository(INSTALLATION, "acme/api").unwrap();
    assert!(
        app.open_pull_requests(INSTALLATION, "acme", "api")
            .await
            .unwrap()
            .is_empty()
    );
    assert_no_violations(&standin);
}

#[tokio::test]
async fn a_label_is_taken_off_and_one_that_is_not_there_is_no_error() {
    let Fixture { standin, app } = start().await;
    standin.open_pull_request("acme/web", 8);
    standin.add_label("acme/web", 8, "safe to preview");
    standin.add_label("acme/web", 8, "area/ui");
    standin.add_label("acme/web", 9, "safe to preview");

    app.remove_label(INSTALLATION, "acme", "web", 8, "safe to preview")
        .await
        .unwrap();
    assert_eq!(standin.labels("acme/web", 8), ["area/ui"]);
    assert_eq!(
        standin.labels("acme/web", 9),
        ["safe to preview"],
        "another pull request keeps its label"
    );
    let removal = standin.requests().last().unwrap().clone();
    assert_eq!(
        (
            removal.method.as_str(),
            removal.path.as_str(),
            removal.status
        ),
        (
            "DELETE",
            "/repos/acme/web/issues/8/labels/safe%20to%20preview",
            200
        )
    );

    // Already gone: GitHub answers 404, which is what was wanted.
    app.remove_label(INSTALLATION, "acme", "web", 8, "safe to preview")
        .await
        .unwrap();
    assert_eq!(standin.requests().last().unwrap().status, 404);

    // A name with a slash stays one path segment.
    app.remove_label(INSTALLATION, "acme", "web", 8, "area/ui")
        .await
        .unwrap();
    assert_eq!(
        standin.requests().last().unwrap().path,
        "/repos/acme/web/issues/8/labels/area%2Fui"
    );
    assert!(standin.labels("acme/web", 8).is_empty());
    assert_no_violations(&standin);
}

#[tokio::test]
async fn without_the_permission_github_refuses_with_403() {
    let Fixture { standin, app } = start().await;
    standin.open_pull_request("acme/web", 7);
    standin.add_label("acme/web", 7, "safe to preview");
    standin
        .set_installation_permissions(INSTALLATION, &[("contents", "read"), ("metadata", "read")]);

    let refused = app
        .create_issue_comment(INSTALLATION, "acme", "web", 7, "Preview is building")
        .await
        .unwrap_err();
    assert!(refused.is_missing_permission(), "{refused}");
    assert!(!refused.is_transient());
    let refused = app
        .update_issue_comment(INSTALLATION, "acme", "web", 1, "Preview is live")
        .await
        .unwrap_err();
    assert!(refused.is_missing_permission(), "{refused}");
    let refused = app
        .issue_comments(INSTALLATION, "acme", "web", 7)
        .await
        .unwrap_err();
    assert!(refused.is_missing_permission(), "{refused}");
    let refused = app
        .open_pull_requests(INSTALLATION, "acme", "web")
        .await
        .unwrap_err();
    assert!(refused.is_missing_permission(), "{refused}");
    // The 403 is no "already gone": only a 404 is.
    let refused = app
        .remove_label(INSTALLATION, "acme", "web", 7, "safe to preview")
        .await
        .unwrap_err();
    assert!(refused.is_missing_permission(), "{refused}");
    assert_eq!(standin.labels("acme/web", 7), ["safe to preview"]);

    // `pull_requests: write` is enough to comment on a pull request, not to take its labels off.
    standin.set_installation_permissions(
        INSTALLATION,
        &[
            ("contents", "read"),
            ("metadata", "read"),
            ("pull_requests", "write"),
        ],
    );
    app.forget_token(INSTALLATION).await;
    let id = app
        .create_issue_comment(INSTALLATION, "acme", "web", 7, "Preview is building")
        .await
        .unwrap();
    assert_eq!(
        app.issue_comments(INSTALLATION, "acme", "web", 7)
            .await
            .unwrap()[0]
            .id,
        id
    );
    assert_eq!(
        app.open_pull_requests(INSTALLATION, "acme", "web")
            .await
            .unwrap(),
        [7]
    );
    let refused = app
        .remove_label(INSTALLATION, "acme", "web", 7, "safe to preview")
        .await
        .unwrap_err();
    assert!(refused.is_missing_permission(), "{refused}");
    assert_no_violations(&standin);
}
