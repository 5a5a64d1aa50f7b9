//! The dashboard as a browser meets it, over plain HTTP: sign-in with its CSRF check and where
//! it sends the browser on, the session cookie standing for the admin token in the REST API
//! (writes only with the session's CSRF token), signing out, and the build, release, overview
//! and agents pages with their live streams.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use wharf_server::RequestLimits;

use crate::helpers::{
    ADMIN_TOKEN, Options, TestApp, push_payload, run_cli, sha, spawn_app, spawn_app_with,
    wait_until,
};

const STREAM_DEADLINE: Duration = Duration::from_secs(20);

/// A client that shows redirects instead of following them and keeps no cookies: the tests
/// carry cookies by hand, so each one is seen.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value `name` is set to by the answer's `Set-Cookie` headers, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// `name=value` from a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of the hidden form field `name` in a page.
fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// A browser's sign-in: the form, then the admin token posted with the form's CSRF token.
/// Answers the session cookie (`wharf_session=…`) and the session's CSRF token.
async fn sign_in(app: &TestApp) -> (String, String) {
    sign_in_as(app, "", ADMIN_TOKEN)
        .await
        .expect("the admin token signs in")
}

/// A sign-in as `user` (empty: with the admin token) with `secret`; `None` when refused.
async fn sign_in_as(app: &TestApp, user: &str, secret: &str) -> Option<(String, String)> {
    let browser = browser();
    let form = browser
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    let sign_in_cookie = cookie_pair(&set_cookie(&form, "wharf_sign_in").unwrap());
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf_token");
    let signed_in = browser
        .post(format!("{}/login", app.url))
        .header(COOKIE, &sign_in_cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("user", user),
            ("token", secret),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    if signed_in.status() == StatusCode::UNAUTHORIZED {
        return None;
    }
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let session = cookie_pair(&set_cookie(&signed_in, "wharf_session").unwrap());
    let overview = page(app, &session, "/").await;
    Some((session, hidden_field(&overview, "csrf_token")))
}

/// A GET with the session cookie, as a browser sends it.
async fn fetch(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    browser()
        .get(format!("{}{path}", app.url))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap()
}

/// A page read with the session cookie, which must answer 200.
async fn page(app: &TestApp, session: &str, path: &str) -> String {
    let response = fetch(app, session, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.unwrap()
}

async fn append(app: &TestApp, agent: &str, path: &str, lines: &[&str]) {
    append_to(app, agent, path, "stdout", lines).await;
}

/// Appends lines of `stream` (`stdout`, `stderr`, or `wharf` for the agent's own notes).
async fn append_to(app: &TestApp, agent: &str, path: &str, stream: &str, lines: &[&str]) {
    let lines: Vec<Value> = lines
        .iter()
        .map(|text| json!({"stream": stream, "text": text}))
        .collect();
    let answer = app.post_as(agent, path, json!({ "lines": lines })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

async fn report(app: &TestApp, agent: &str, id: i64, body: Value) {
    let answer = app
        .post_as(agent, &format!("/v1/agent/builds/{id}/state"), body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// Reads an event stream until `until` appears in it (or it ends), within the deadline.
async fn read_stream(mut response: reqwest::Response, until: &str) -> String {
    let mut text = String::new();
    let reading = async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(until) {
                break;
            }
        }
    };
    tokio::time::timeout(STREAM_DEADLINE, reading)
        .await
        .unwrap_or_else(|_| panic!("{until:?} did not come in time"));
    text
}

async fn app_with_service() -> TestApp {
    let app = spawn_app().await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    app
}

#[tokio::test]
async fn a_page_sends_a_browser_without_a_session_to_sign_in_and_back() {
    let app = spawn_app().await;
    let browser = browser();
    let away = browser
        .get(format!("{}/builds/7?tab=log", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        away.headers()[LOCATION],
        "/login?next=/builds/7%3Ftab%3Dlog"
    );

    let form = browser
        .get(format!("{}/login?next=/builds/7", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let sign_in_cookie = set_cookie(&form, "wharf_sign_in").unwrap();
    assert!(sign_in_cookie.contains("HttpOnly"), "{sign_in_cookie}");
    let sign_in_cookie = cookie_pair(&sign_in_cookie);
    let form = form.text().await.unwrap();
    for field in ["name=\"token\"", "name=\"user\"", "type=\"password\""] {
        assert!(form.contains(field), "{field} in {form}");
    }
    let csrf = hidden_field(&form, "csrf_token");
    assert_eq!(hidden_field(&form, "next"), "/builds/7");

    let post = |fields: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut request = browser.post(format!("{}/login", app.url)).form(&fields);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send()
    };
    // A form posted from elsewhere (no sign-in cookie, or another token) is refused, even with
    // the right admin token.
    for (cookie, token) in [
        (None, csrf.clone()),
        (Some(sign_in_cookie.clone()), "forged".to_owned()),
    ] {
        let refused = post(
            vec![("csrf_token", token), ("token", ADMIN_TOKEN.to_owned())],
            cookie,
        )
        .await
        .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(&refused, "wharf_session").is_none());
    }
    // A wrong token is a 401 that says so and starts nothing; so is a user who does not exist.
    for (user, token) in [("", "not-the-token"), ("alice", ADMIN_TOKEN)] {
        let refused = post(
            vec![
                ("csrf_token", csrf.clone()),
                ("user", user.to_owned()),
                ("token", token.to_owned()),
            ],
            Some(sign_in_cookie.clone()),
        )
        .await
        .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookie(&refused, "wharf_session").is_none());
        let page = refused.text().await.unwrap();
        assert!(page.contains("role=\"alert\""), "{page}");
        assert!(!page.contains(ADMIN_TOKEN), "{page}");
    }
    // The admin token starts a session and goes on to the page asked for; another site is
    // never where a sign-in goes on to.
    for (next, expected) in [
        ("/builds/7", "/builds/7"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
    ] {
        let signed_in = post(
            vec![
                ("csrf_token", csrf.clone()),
                ("token", ADMIN_TOKEN.to_owned()),
                ("next", next.to_owned()),
            ],
            Some(sign_in_cookie.clone()),
        )
        .await
        .unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        assert_eq!(signed_in.headers()[LOCATION], expected);
        let session = set_cookie(&signed_in, "wharf_session").unwrap();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(session.contains(attribute), "{attribute} in {session}");
        }
        // The test server's public URL is http: a Secure cookie would never come back.
        assert!(!session.contains("Secure"), "{session}");
    }
    // The session's id is not what the store keeps.
    let (session, _) = sign_in(&app).await;
    let id = session.trim_start_matches("wharf_session=");
    let dump = format!("{:?}", app.store.dashboard_session(id, 0).await.unwrap());
    assert_eq!(dump, "None");
}

#[tokio::test]
async fn failed_sign_ins_are_limited_like_other_failed_authentication_with_a_page() {
    let app = spawn_app().await;
    let browser = browser();
    let form = browser
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    let sign_in_cookie = cookie_pair(&set_cookie(&form, "wharf_sign_in").unwrap());
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf_token");
    let attempt = |token: &'static str| {
        browser
            .post(format!("{}/login", app.url))
            .header(COOKIE, &sign_in_cookie)
            .header("Accept", "text/html")
            .form(&[("csrf_token", csrf.as_str()), ("token", token)])
            .send()
    };
    // A server allows 20 failed authentications a minute from one address.
    for _ in 0..20 {
        assert_eq!(
            attempt("guess").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = attempt("guess").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(
        limited.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        limited
            .text()
            .await
            .unwrap()
            .contains("too many failed authentications")
    );
    // The right token still signs in: only failing requests are refused.
    assert_eq!(
        attempt(ADMIN_TOKEN).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn live_parts_outlive_the_request_timeout() {
    let app = spawn_app_with(Options {
        limits: Some(RequestLimits {
            request_timeout: Duration::from_secs(1),
            ..RequestLimits::default()
        }),
        ..Options::default()
    })
    .await;
    let (session, _) = sign_in(&app).await;
    let mut stream = fetch(&app, &session, "/events/overview").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let first = String::from_utf8_lossy(&stream.chunk().await.unwrap().unwrap()).into_owned();
    assert!(first.contains("event: fragment"), "{first}");
    // Well past the request timeout, a change still reaches the open stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.create_service("later", "https://git.example.com/acme/later", "main")
        .await;
    let later = read_stream(stream, "data-service=\"later\"").await;
    assert!(later.contains("event: fragment"), "{later}");
}

#[tokio::test]
async fn a_new_admin_token_ends_the_sessions_of_the_old_one() {
    let mut app = spawn_app().await;
    let (session, _) = sign_in(&app).await;
    // The same token after a restart: the session goes on.
    app.restart_server().await;
    assert_eq!(fetch(&app, &session, "/").await.status(), StatusCode::OK);
    // A new token (the old one leaked, say): whoever signed in with the old one is out.
    app.config.admin_token = secrecy::SecretString::from("a-new-admin-token-0123456789abcdef0123");
    app.restart_server().await;
    assert_eq!(
        fetch(&app, &session, "/").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_session_reads_the_api_and_writes_only_with_its_csrf_token_until_it_signs_out() {
    let app = app_with_service().await;
    let agent = app.create_agent("builder").await;
    let id = app.claimed_build(&agent, "web", &sha('a')).await;
    let (session, csrf) = sign_in(&app).await;
    let browser = browser();

    let read = browser
        .get(format!("{}/v1/builds/{id}", app.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    // A write without the CSRF token, or with another, is what another site's page could make
    // a signed-in browser send: refused.
    for token in [None, Some("forged")] {
        let mut request = browser
            .post(format!("{}/v1/builds/{id}/cancel", app.url))
            .header(COOKIE, &session);
        if let Some(token) = token {
            request = request.header("X-CSRF-Token", token);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(app.build(id).await["state"], "claimed");
    let cancelled = browser
        .post(format!("{}/v1/builds/{id}/cancel", app.url))
        .header(COOKIE, &session)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(app.build(id).await["state"], "cancelled");

    // A made-up session is no session.
    let forged = browser
        .get(format!("{}/v1/builds", app.url))
        .header(COOKIE, "wharf_session=made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // A live part opened before signing out ends with the session.
    let open_stream = fetch(&app, &session, "/events/overview").await;
    assert_eq!(open_stream.status(), StatusCode::OK);

    // Signing out needs the CSRF token too, then ends the session everywhere.
    let refused = browser
        .post(format!("{}/logout", app.url))
        .header(COOKIE, &session)
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    page(&app, &session, "/").await;
    let signed_out = browser
        .post(format!("{}/logout", app.url))
        .header(COOKIE, &session)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_out.headers()[LOCATION], "/login");
    tokio::time::timeout(STREAM_DEADLINE, open_stream.text())
        .await
        .expect("the live part ends once its session has")
        .unwrap();
    assert!(
        set_cookie(&signed_out, "wharf_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = browser
        .get(format!("{}/v1/builds", app.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let page_after = browser
        .get(format!("{}/", app.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page_after.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_build_page_shows_the_log_so_far_then_streams_it_until_the_build_ends() {
    let app = app_with_service().await;
    let agent = app.create_agent("builder").await;
    let commit = sha('b');
    let id = app.claimed_build(&agent, "web", &commit).await;
    let log = format!("/v1/agent/builds/{id}/logs");
    append_to(&app, &agent, &log, "wharf", &["Fetching the commit"]).await;
    append(
        &app,
        &agent,
        &log,
        &[
            "\u{1b}[31mred <script>alert(1)</script>\u{1b}[0m",
            "step 1/3",
        ],
    )
    .await;
    let (session, _) = sign_in(&app).await;

    let shown = page(&app, &session, &format!("/builds/{id}")).await;
    assert!(shown.contains("Build #"), "{shown}");
    assert!(shown.contains(&commit[..12]), "{shown}");
    assert!(
        shown.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{shown}"
    );
    assert!(!shown.contains("<script>alert"), "{shown}");
    assert!(shown.contains("class=\"fg1\""), "the red is kept: {shown}");
    assert!(shown.contains("class=\"steps\""), "{shown}");
    assert!(shown.contains("Fetching the commit"), "{shown}");
    assert!(
        shown.contains(&format!("sse-connect=\"/builds/{id}/events?after=3\"")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("hx-post=\"/v1/builds/{id}/cancel\"")),
        "{shown}"
    );

    let stream = fetch(&app, &session, &format!("/builds/{id}/events?after=3")).await;
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    append(&app, &agent, &log, &["step 2/3 <b>"]).await;
    append_to(&app, &agent, &log, "wharf", &["Building the image"]).await;
    report(
        &app,
        &agent,
        id,
        json!({"state": "failed", "reason": "step build failed: exit status 2",
               "failure": {"step": "build", "command": "podman build .", "exit_code": 2,
                           "output_tail": ["error: no such file"]}}),
    )
    .await;
    let events = read_stream(stream, "event: done").await;
    assert!(events.contains("id: 4"), "{events}");
    assert!(events.contains("step 2/3 &lt;b&gt;"), "{events}");
    assert!(
        !events.contains("id: 1\n"),
        "only lines after the page's: {events}"
    );
    assert!(events.contains("event: summary"), "{events}");
    assert!(events.contains("data-state=\"failed\""), "{events}");
    assert!(events.contains("podman build ."), "{events}");
    // A step noted while the page is open joins the steps of the summary, besides its line.
    assert!(events.contains("<li>Building the image"), "{events}");

    // A reconnect resumes after the last line it saw and ends at once.
    let resumed = browser()
        .get(format!("{}/builds/{id}/events?after=0", app.url))
        .header(COOKIE, &session)
        .header("Last-Event-ID", "5")
        .send()
        .await
        .unwrap();
    let resumed = read_stream(resumed, "event: done").await;
    assert!(!resumed.contains("event: line"), "{resumed}");

    // A finished build is a plain page, with its failure and a retry button.
    let finished = page(&app, &session, &format!("/builds/{id}")).await;
    assert!(!finished.contains("sse-connect"), "{finished}");
    assert!(finished.contains("The build step failed"), "{finished}");
    assert!(
        finished.contains(&format!("hx-post=\"/v1/builds/{id}/retry\"")),
        "{finished}"
    );

    // Nothing is shown without a session, and a build that does not exist is a 404 page.
    let away = browser()
        .get(format!("{}/builds/{id}/events", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), StatusCode::SEE_OTHER);
    for missing in ["/builds/999", "/builds/x", "/releases/999"] {
        let answer = fetch(&app, &session, missing).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{missing}");
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

#[tokio::test]
async fn the_release_overview_and_agents_pages_show_what_is_live_and_who_works() {
    let app = app_with_service().await;
    // A service deploys to the host named `local` unless it names others.
    let agent = app.create_agent("local").await;
    let registered = app
        .post_as(
            &agent,
            "/v1/agent/register",
            json!({"labels": ["build", "deploy"]}),
        )
        .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text);
    let commit = sha('c');
    let id = app.claimed_build(&agent, "web", &commit).await;
    report(
        &app,
        &agent,
        id,
        json!({"state": "completed", "image": format!("registry.test/default/web:{commit}"),
               "digest": format!("sha256:{}", "0".repeat(64))}),
    )
    .await;
    let claimed = app
        .post_as(
            &agent,
            "/v1/agent/rollouts/claim",
            json!({"wait_ms": 10000}),
        )
        .await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.text);
    let rollout = claimed.body["job"]["rollout_id"].as_i64().unwrap();
    let release = claimed.body["job"]["release_id"].as_i64().unwrap();
    let (session, _) = sign_in(&app).await;

    let stream = fetch(&app, &session, &format!("/releases/{release}/events")).await;
    append(
        &app,
        &agent,
        &format!("/v1/agent/rollouts/{rollout}/logs"),
        &["pulled the image"],
    )
    .await;
    for state in ["starting", "health_checking", "live"] {
        let answer = app
            .post_as(
                &agent,
                &format!("/v1/agent/rollouts/{rollout}/state"),
                json!({"state": state}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let events = read_stream(stream, "event: done").await;
    assert!(events.contains("pulled the image"), "{events}");
    assert!(events.contains("local"), "{events}");
    assert!(events.contains("data-state=\"live\""), "{events}");

    let shown = page(&app, &session, &format!("/releases/{release}")).await;
    assert!(shown.contains(&format!("href=\"/builds/{id}\"")), "{shown}");
    assert!(shown.contains("data-host=\"local\""), "{shown}");

    let docs = app
        .post(
            "/v1/services",
            json!({"name": "docs", "repo": "https://git.example.com/acme/docs", "branch": "main",
                   "port": 8080, "domain": "docs.example.com"}),
        )
        .await;
    assert_eq!(docs.status, StatusCode::CREATED, "{}", docs.text);
    let overview = page(&app, &session, "/").await;
    assert!(overview.contains("data-service=\"web\""), "{overview}");
    // A domain links to the app the way WHARF_APP_URL_SCHEME says apps are reached.
    assert!(
        overview.contains("href=\"http://docs.example.com\""),
        "{overview}"
    );
    assert!(
        overview.contains(&format!("href=\"/releases/{release}\"")),
        "the live release: {overview}"
    );
    assert!(
        overview.contains(&format!("data-build=\"{id}\"")),
        "{overview}"
    );
    assert!(overview.contains("data-agent=\"local\""), "{overview}");
    assert!(overview.contains("data-state=\"online\""), "{overview}");
    // The overview's stream sends it whole, and again when something changes.
    let stream = fetch(&app, &session, "/events/overview").await;
    let first = read_stream(stream, "data-service=\"web\"").await;
    assert!(first.contains("event: fragment"), "{first}");

    // The service's page: its settings, its variables without secret values, its timeline
    // with the build and the release and what can be done with each.
    for (name, value, secret) in [
        ("GREETING", "hello", false),
        ("API_KEY", "s3cr3t-value", true),
    ] {
        let set = app
            .post(
                "/v1/services/web/env",
                json!({"name": name, "value": value, "secret": secret}),
            )
            .await;
        assert!(set.status.is_success(), "{}", set.text);
    }
    let service = page(&app, &session, "/services/web").await;
    assert!(
        service.contains("https://git.example.com/acme/web"),
        "{service}"
    );
    assert!(service.contains("data-variable=\"API_KEY\""), "{service}");
    assert!(service.contains("hello"), "{service}");
    assert!(
        !service.contains("s3cr3t-value"),
        "a secret's value is never shown: {service}"
    );
    assert!(
        service.contains(&format!("data-build=\"{id}\"")),
        "{service}"
    );
    assert!(
        service.contains(&format!("data-release=\"{release}\"")),
        "{service}"
    );
    assert!(
        service.contains("hx-post=\"/v1/services/web/deploy\""),
        "{service}"
    );
    assert!(
        service.contains("hx-post=\"/v1/services/web/builds\""),
        "{service}"
    );
    let missing = fetch(&app, &session, "/services/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let agents = page(&app, &session, "/agents").await;
    assert!(agents.contains("data-agent=\"local\""), "{agents}");
    assert!(agents.contains("build, deploy"), "{agents}");
}

#[tokio::test]
async fn assets_are_served_from_the_binary_for_a_year() {
    let app = spawn_app().await;
    let (session, _) = sign_in(&app).await;
    // No other site may frame a page (a click there would be the user's), no cache keeps one.
    let shown = fetch(&app, &session, "/").await;
    assert_eq!(shown.headers()["x-frame-options"], "DENY");
    assert_eq!(
        shown.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert_eq!(shown.headers()["cache-control"], "no-store");
    let overview = page(&app, &session, "/").await;
    for script in [
        "/assets/htmx-2.0.11.min.js",
        "/assets/htmx-ext-sse-2.2.4.min.js",
    ] {
        assert!(overview.contains(script), "{overview}");
        let answer = browser()
            .get(format!("{}{script}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(
            answer.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(answer.text().await.unwrap().len() > 1000);
    }
}

#[tokio::test]
async fn a_viewer_sees_everything_and_changes_nothing_until_removed() {
    let app = app_with_service().await;
    let agent = app.create_agent("builder").await;
    let id = app.claimed_build(&agent, "web", &sha('f')).await;
    let viewer = app
        .post("/v1/users", json!({"name": "alice", "role": "viewer"}))
        .await;
    assert_eq!(viewer.status, StatusCode::CREATED, "{}", viewer.text);
    let password = viewer.body["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 20, "{password}");
    assert_eq!(viewer.body["user"]["role"], "viewer");
    for (request, status) in [
        (json!({"name": "alice"}), StatusCode::CONFLICT),
        (json!({"name": "Alice Smith"}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "carol", "role": "owner"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = app.post("/v1/users", request.clone()).await;
        assert_eq!(refused.status, status, "{request}: {}", refused.text);
    }
    let listed = app.get("/v1/users").await;
    assert!(
        !listed.text.contains(&password) && !listed.text.contains("argon2"),
        "{}",
        listed.text
    );

    // A wrong password, or another user's, signs no one in.
    assert!(sign_in_as(&app, "alice", "wrong-password").await.is_none());
    assert!(sign_in_as(&app, "mallory", &password).await.is_none());
    assert!(sign_in_as(&app, "alice", ADMIN_TOKEN).await.is_none());
    let (session, csrf) = sign_in_as(&app, "alice", &password).await.unwrap();

    // She sees the build and its log, without a single button, and her writes are refused.
    let shown = page(&app, &session, &format!("/builds/{id}")).await;
    assert!(shown.contains("alice · viewer"), "{shown}");
    assert!(!shown.contains("hx-post"), "{shown}");
    let service = page(&app, &session, "/services/web").await;
    assert!(!service.contains("hx-post"), "{service}");
    let browser = browser();
    let read = browser
        .get(format!("{}/v1/builds/{id}", app.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    for path in [format!("/v1/builds/{id}/cancel"), "/v1/users".to_owned()] {
        let refused = browser
            .post(format!("{}{path}", app.url))
            .header(COOKIE, &session)
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"name": "eve", "role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(refused.text().await.unwrap().contains("viewer"));
    }
    assert_eq!(app.build(id).await["state"], "claimed");

    // An admin user may act, like the admin token.
    let admin = app
        .post("/v1/users", json!({"name": "bob", "role": "admin"}))
        .await;
    let admin_password = admin.body["password"].as_str().unwrap();
    let (admin_session, admin_csrf) = sign_in_as(&app, "bob", admin_password).await.unwrap();
    assert!(
        page(&app, &admin_session, &format!("/builds/{id}"))
            .await
            .contains("hx-post")
    );
    let cancelled = browser
        .post(format!("{}/v1/builds/{id}/cancel", app.url))
        .header(COOKIE, &admin_session)
        .header("X-CSRF-Token", &admin_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);

    // Removing a user ends her sessions at once.
    let removed = app.delete("/v1/users/alice").await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert_eq!(removed.body[0]["name"], "bob", "{}", removed.text);
    let after = browser
        .get(format!("{}/v1/builds", app.url))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.delete("/v1/users/alice").await.status,
        StatusCode::NOT_FOUND
    );

    // The CLI adds, lists and removes users; the password is shown once, at creation.
    let created = run_cli(
        &app,
        Some(ADMIN_TOKEN),
        &["users", "create", "carol", "--role", "admin"],
        b"",
        None,
    )
    .await;
    assert!(created.ok(), "{}", created.text());
    assert!(
        created.stdout.contains("carol") && created.stdout.contains("admin"),
        "{}",
        created.text()
    );
    let listed = run_cli(&app, Some(ADMIN_TOKEN), &["users", "list"], b"", None).await;
    assert!(listed.ok(), "{}", listed.text());
    assert!(
        listed.stdout.contains("bob") && listed.stdout.contains("carol"),
        "{}",
        listed.text()
    );
    let refused = run_cli(
        &app,
        Some(ADMIN_TOKEN),
        &["users", "create", "dave", "--role", "owner"],
        b"",
        None,
    )
    .await;
    assert!(
        !refused.ok() && refused.stderr.contains("admin or viewer"),
        "{}",
        refused.text()
    );
}

#[tokio::test]
async fn a_build_past_its_deadline_shows_as_stuck_with_what_happens_next() {
    let app = spawn_app_with(Options {
        lease: Some(Duration::from_secs(2)),
        ..Options::default()
    })
    .await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let agent = app.create_agent("builder").await;
    let queued = app
        .post("/v1/services/web/builds", json!({"ref": sha('e')}))
        .await;
    let id = queued.body["id"].as_i64().unwrap();
    // An agent whose build timeout is a millisecond: its build's deadline is a lease away.
    let claim = app
        .post_as(
            &agent,
            "/v1/agent/claim",
            json!({"wait_ms": 2000, "build_timeout_ms": 1}),
        )
        .await;
    assert_eq!(claim.body["job"]["build"]["id"], id, "{}", claim.text);
    let (session, _) = sign_in(&app).await;
    let fresh = page(&app, &session, &format!("/builds/{id}")).await;
    assert!(!fresh.contains("data-state=\"stuck\""), "{fresh}");
    // The agent keeps answering (so the lease holds) but never ends the build.
    wait_until("the build shows as stuck", Duration::from_secs(15), || {
        let (app, session) = (&app, &session);
        let agent = agent.clone();
        async move {
            let beat = app
                .post_as(&agent, "/v1/agent/heartbeat", json!({"builds": [id]}))
                .await;
            assert_eq!(beat.status, StatusCode::OK, "{}", beat.text);
            page(app, session, &format!("/builds/{id}"))
                .await
                .contains("data-state=\"stuck\"")
        }
    })
    .await;
    let shown = page(&app, &session, &format!("/builds/{id}")).await;
    assert!(shown.contains("past its deadline"), "{shown}");
    assert_eq!(app.build(id).await["state"], "claimed");
}

/// Where the tests' npm packages are (`testdata`, installed by `scripts/setup.sh`).
fn testdata() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// Debian's Chromium, driven by Playwright (`testdata/browser/dashboard.mjs`): sent to sign
/// in, it signs in, sees the log so far in colour, sees a line arrive live and the build fail,
/// and retries it with the button (htmx, with the session's CSRF token); on the service page it
/// sees the retried build complete and deploys it; the overview shows a signed push's build
/// without a reload, its Cancel button cancels it, a release's roll-back button brings it back,
/// and a viewer finds no button and has her writes refused. With `WHARF_SCREENSHOTS=DIR` (relative to the workspace) it also saves the overview, a
/// build and a release page there as PNG. Run once, on SQLite.
#[tokio::test]
async fn in_a_browser_one_signs_in_follows_logs_retries_deploys_cancels_and_rolls_back() {
    let app = app_with_service().await;
    let agent = app.create_agent("builder").await;
    // The host releases go to (a service's default), there before any release is made.
    let host = app.create_agent("local").await;
    for token in [&agent, &host] {
        let registered = app
            .post_as(
                token,
                "/v1/agent/register",
                json!({"labels": ["build", "deploy"]}),
            )
            .await;
        assert_eq!(registered.status, StatusCode::OK, "{}", registered.text);
    }
    let id = app.claimed_build(&agent, "web", &sha('d')).await;
    let log = format!("/v1/agent/builds/{id}/logs");
    append(
        &app,
        &agent,
        &log,
        &["\u{1b}[31m<b>compiling</b>\u{1b}[0m", "step 1/3"],
    )
    .await;

    let mut browser = tokio::process::Command::new("node");
    if let Some(dir) = std::env::var_os("WHARF_SCREENSHOTS") {
        let dir = testdata().join("..").join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        browser.env("WHARF_SCREENSHOTS", dir);
    }
    let mut browser = browser
        .arg(testdata().join("browser/dashboard.mjs"))
        .args([&app.url, ADMIN_TOKEN, &id.to_string()])
        .current_dir(testdata())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs it with Playwright and Chromium)");
    let mut orders = browser.stdin.take().unwrap();
    let mut said = tokio::io::BufReader::new(browser.stdout.take().unwrap()).lines();
    // What the browser says went wrong, for any failure below.
    let complaints = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = tokio::io::BufReader::new(browser.stderr.take().unwrap()).lines();
    let collected = complaints.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let mut collected = collected.lock().unwrap();
            collected.push_str(&line);
            collected.push('\n');
        }
    });
    let why = || complaints.lock().unwrap().clone();
    let ready = tokio::time::timeout(Duration::from_secs(60), said.next_line())
        .await
        .expect("the browser signs in and shows the log within a minute")
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"), "{}", why());
    append(&app, &agent, &log, &["arrived live"]).await;
    report(
        &app,
        &agent,
        id,
        json!({"state": "failed", "reason": "step build failed: exit status 1"}),
    )
    .await;
    let retried = tokio::time::timeout(Duration::from_secs(60), said.next_line())
        .await
        .expect("the browser retries within a minute")
        .unwrap();
    let newest = app.builds().await[0].clone();
    assert_eq!(newest["retry_of"], id, "{newest}");
    assert_eq!(
        retried,
        Some(format!("retried /builds/{}", newest["id"])),
        "{}",
        why()
    );
    // The retried build completes while the browser watches the service's page.
    let retried = newest["id"].as_i64().unwrap();
    app.claim_build(&agent, retried).await;
    let commit = newest["commit_sha"].as_str().unwrap();
    report(
        &app,
        &agent,
        retried,
        json!({"state": "completed", "image": format!("registry.test/default/web:{commit}"),
               "digest": format!("sha256:{}", "1".repeat(64))}),
    )
    .await;
    let deployed = tokio::time::timeout(Duration::from_secs(60), said.next_line())
        .await
        .expect("the browser deploys within a minute")
        .unwrap();
    let releases = app.get("/v1/services/web/releases").await.body;
    let manual = releases[0].clone();
    assert_eq!(manual["trigger"], "manual", "{releases}");
    assert_eq!(manual["build_id"], retried, "{releases}");
    assert_eq!(
        deployed,
        Some(format!("deployed /releases/{}", manual["id"])),
        "{}",
        why()
    );

    // The overview shows a signed push's build without a reload.
    let mut ask = async |order: String| -> String {
        orders
            .write_all(format!("{order}\n").as_bytes())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), said.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser answers {order:?} within a minute"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser ended at {order:?}: {}", why()))
    };
    app.create_service("site", "acme/site", "main").await;
    assert_eq!(ask("overview".to_owned()).await, "overview");
    let pushed = app
        .webhook(
            "push",
            "browser-push",
            &push_payload("acme/site", "refs/heads/main", &sha('7')),
        )
        .await;
    let pushed = pushed.body["builds"][0]
        .as_i64()
        .expect("the push queues a build");
    assert_eq!(
        ask(format!("expect-build {pushed}")).await,
        format!("seen {pushed}")
    );
    // Its Cancel button cancels it.
    assert_eq!(
        ask(format!("cancel {pushed}")).await,
        format!("cancelled {pushed}")
    );
    assert_eq!(app.build(pushed).await["state"], "cancelled");

    // The roll-back button brings a release that was live back.
    app.roll_out_live(&host).await;
    let again = app
        .post("/v1/services/web/deploy", json!({"build": retried}))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    app.roll_out_live(&host).await;
    let previous = manual["id"].as_i64().unwrap();
    assert_eq!(
        app.get(&format!("/v1/releases/{previous}")).await.body["state"],
        "superseded"
    );
    let rolled_back = ask(format!("rollback {previous}")).await;
    let releases = app.get("/v1/services/web/releases").await.body;
    assert_eq!(releases[0]["trigger"], "rollback", "{releases}");
    assert_eq!(
        rolled_back,
        format!("rolled back /releases/{}", releases[0]["id"])
    );

    // A viewer sees the pages without a single button, and the API refuses her writes.
    let viewer = app
        .post("/v1/users", json!({"name": "vera", "role": "viewer"}))
        .await;
    let password = viewer.body["password"].as_str().unwrap();
    let running = app.claimed_build(&agent, "web", &sha('8')).await;
    assert_eq!(
        ask(format!("viewer vera {password} {running}")).await,
        "viewer 0 403"
    );
    assert_eq!(app.build(running).await["state"], "claimed");

    // Screenshots for the README, when asked for (WHARF_SCREENSHOTS=docs/).
    for (name, path) in [
        ("overview", "/".to_owned()),
        ("build", format!("/builds/{id}")),
        ("release", format!("/releases/{}", again.body["id"])),
    ] {
        assert_eq!(ask(format!("shoot {name} {path}")).await, "shot");
    }
    orders.write_all(b"done\n").await.unwrap();
    drop(orders);
    let output = tokio::time::timeout(Duration::from_secs(30), browser.wait_with_output())
        .await
        .expect("the browser closes")
        .unwrap();
    assert!(output.status.success(), "{}", why());
}

#[tokio::test]
async fn the_github_app_is_made_from_the_dashboard_and_used_at_once_and_after_a_restart() {
    let mut app = spawn_app_with(Options {
        github: true,
        github_app_from_dashboard: true,
        ..Options::default()
    })
    .await;
    let push = crate::helpers::push_payload("acme/web", "refs/heads/main", &sha('1'));
    let refused = app.webhook("push", "before-the-app", &push).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );

    // A second replica, running before the App exists.
    let (replica, _replica) = app.start_replica().await;
    let (session, csrf) = sign_in(&app).await;
    let github_page = fetch(&app, &session, "/github").await;
    let state_cookie = cookie_pair(&set_cookie(&github_page, "wharf_github_state").unwrap());
    let shown = github_page.text().await.unwrap();
    assert!(shown.contains("data-origin=\"missing\""), "{shown}");
    // The form posts Wharf's manifest to GitHub, with a state only this session can give back.
    let standin = app.github.as_ref().unwrap();
    let form = shown.find("class=\"manifest\"").expect("the manifest form");
    let action_start = form + shown[form..].find("action=\"").unwrap() + "action=\"".len();
    let action = shown[action_start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        action.starts_with(&format!("{}/settings/apps/new?state=", standin.api_url())),
        "{action}"
    );
    let state = action.split("state=").nth(1).unwrap().to_owned();
    assert_ne!(state, csrf, "the CSRF token itself never goes to GitHub");
    let manifest: Value =
        serde_json::from_str(&hidden_field(&shown, "manifest").replace("&quot;", "\"")).unwrap();
    assert_eq!(
        manifest["hook_attributes"]["url"],
        format!("{}/api/webhooks/github", app.config.public_url)
    );
    assert_eq!(
        manifest["redirect_url"],
        format!("{}/github/manifest/callback", app.config.public_url)
    );
    assert_eq!(
        manifest["setup_url"],
        format!("{}/api/github/setup", app.config.public_url)
    );
    assert_eq!(manifest["default_permissions"]["contents"], "read");
    assert_eq!(manifest["public"], false);

    // GitHub sends the browser back with a code; another session's state, or none, is refused.
    let key = app.app_key.as_ref().unwrap();
    standin.offer_manifest_conversion("code-1", &key.private_pem, crate::helpers::WEBHOOK_SECRET);
    let callback = |state: &str, code: &str| {
        browser()
            .get(format!(
                "{}/github/manifest/callback?code={code}&state={state}",
                app.url
            ))
            .header(COOKIE, format!("{session}; {state_cookie}"))
            .send()
    };
    assert_eq!(
        callback("forged", "code-1").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Nor does the right state from a browser that was not given it.
    let without_cookie = browser()
        .get(format!(
            "{}/github/manifest/callback?code=code-1&state={state}",
            app.url
        ))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(without_cookie.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        callback(&state, "unknown").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let made = callback(&state, "code-1").await.unwrap();
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    assert_eq!(made.headers()[LOCATION], "/github");
    let shown = page(&app, &session, "/github").await;
    assert!(shown.contains("data-origin=\"dashboard\""), "{shown}");
    let offers_nothing = fetch(&app, &session, "/github").await;
    assert!(set_cookie(&offers_nothing, "wharf_github_state").is_none());
    assert!(!shown.contains("Create the GitHub App"), "{shown}");
    // The key and the secret are kept sealed, never as given.
    let stored = app.store.github_app().await.unwrap().unwrap();
    assert!(!stored.private_key_sealed.contains("PRIVATE KEY"));
    assert!(
        !stored
            .webhook_secret_sealed
            .contains(crate::helpers::WEBHOOK_SECRET)
    );
    assert!(!app.logs.text().contains(crate::helpers::WEBHOOK_SECRET));

    // The other replica takes the App's webhooks too, without a restart.
    let other_push = push_payload("acme/web", "refs/heads/main", &sha('3'));
    let on_replica = reqwest::Client::new()
        .post(format!("{replica}/api/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "on-the-replica")
        .header("x-hub-signature-256", crate::helpers::sign(&other_push))
        .body(other_push.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(on_replica.status(), StatusCode::ACCEPTED);

    // At once: webhooks signed with its secret are taken, and the App's JWT works on GitHub.
    let taken = app.webhook("push", "after-the-app", &push).await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.text);
    standin.add_installation(42, "acme");
    standin.add_repository(42, "acme/web").unwrap();
    let set_up = browser()
        .get(format!(
            "{}/api/github/setup?installation_id=42&setup_action=install",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(set_up.status(), StatusCode::SEE_OTHER);
    let shown = page(&app, &session, "/github").await;
    assert!(
        shown.contains("data-installation=\"42\"") && shown.contains("acme/web"),
        "{shown}"
    );
    // A second App is refused while this one is kept.
    standin.offer_manifest_conversion("code-2", &key.private_pem, "another-secret");
    assert_eq!(
        callback(&state, "code-2").await.unwrap().status(),
        StatusCode::CONFLICT
    );

    // After a restart the App is loaded before the first webhook is answered.
    app.restart_server().await;
    let push = crate::helpers::push_payload("acme/web", "refs/heads/main", &sha('2'));
    let again = app.webhook("push", "after-a-restart", &push).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
}

/// The roll-back button (and the API under it) never puts an old version into an environment
/// it was not made for.
#[tokio::test]
async fn a_rollback_stays_in_the_environment_the_service_deploys_to() {
    let app = app_with_service().await;
    let host = app.create_agent("local").await;
    for tag in ["one", "two"] {
        let image = format!("registry.test/default/web:{tag}");
        let made = app
            .post("/v1/services/web/deploy", json!({ "image": image }))
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        app.roll_out_live(&host).await;
    }
    let releases = app.get("/v1/services/web/releases").await.body;
    let first = releases[1]["id"].as_i64().unwrap();
    let mut service = app.get("/v1/services/web").await.body;
    service["deploy"]["environment"] = json!("staging");
    let moved = app.put("/v1/services/web", service).await;
    assert!(moved.status.is_success(), "{}", moved.text);
    let refused = app
        .post("/v1/services/web/rollback", json!({ "to": first }))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(
        refused.text.contains("was made for production"),
        "{}",
        refused.text
    );
}
