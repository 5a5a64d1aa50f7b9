//! The installation-token cache under concurrency: callers that need one installation's token
//! at once make one request to GitHub, and a slow request for one installation holds up no
//! other. GitHub here is a small HTTP server that counts token requests and answers each
//! installation's only when the test lets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf_github::{AppConfig, GithubApp, RetryPolicy};
use wharf_github_standin::AppKey;

/// A GitHub that issues tokens: it counts the requests per installation and holds each
/// installation's answers until the test opens its gate.
struct TokenIssuer {
    url: String,
    requests: Arc<Mutex<HashMap<u64, usize>>>,
    gates: HashMap<u64, watch::Sender<bool>>,
}

impl TokenIssuer {
    async fn start(installations: &[u64]) -> TokenIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let mut gates = HashMap::new();
        let mut receivers = HashMap::new();
        for installation in installations {
            let (sender, receiver) = watch::channel(false);
            gates.insert(*installation, sender);
            receivers.insert(*installation, receiver);
        }
        let counted = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let counted = counted.clone();
                let receivers = receivers.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        let read = stream.read(&mut buffer).await.unwrap();
                        if read == 0 {
                            return;
                        }
                        head.extend_from_slice(&buffer[..read]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or_default();
                    let installation: u64 = path
                        .strip_prefix("/app/installations/")
                        .and_then(|rest| rest.strip_suffix("/access_tokens"))
                        .and_then(|id| id.parse().ok())
                        .expect("a token request");
                    let count = {
                        let mut counted = counted.lock().unwrap();
                        let count = counted.entry(installation).or_insert(0);
                        *count += 1;
                        *count
                    };
                    let mut gate = receivers[&installation].clone();
                    gate.wait_for(|open| *open).await.unwrap();
                    let body = format!(
                        r#"{{"token":"ghs_{installation}_{count}","expires_at":"2099-01-01T00:00:00Z"}}"#
                    );
                    let answer = format!(
                        "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(answer.as_bytes()).await.unwrap();
                    stream.shutdown().await.ok();
                });
            }
        });
        TokenIssuer {
            url,
            requests,
            gates,
        }
    }

    fn open(&self, installation: u64) {
        self.gates[&installation].send_replace(true);
    }

    fn requests(&self, installation: u64) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(&installation)
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request_and_other_installations_do_not_wait() {
    let issuer = TokenIssuer::start(&[1, 2]).await;
    let key = AppKey::generate().unwrap();
    let app = GithubApp::new(&AppConfig {
        app_id: 4242,
        private_key: SecretString::from(key.private_pem.clone()),
        api_url: issuer.url.clone(),
    })
    .unwrap()
    .with_retry(RetryPolicy {
        attempts: 1,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    });

    // Five callers want installation 1's token while GitHub holds its answer.
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.installation_token(1).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while issuer.requests(1) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no token request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Installation 2 is answered while installation 1's request is still under way.
    issuer.open(2);
    let other = tokio::time::timeout(Duration::from_secs(10), app.installation_token(2))
        .await
        .expect("installation 2's token does not wait for installation 1's")
        .unwrap();
    assert_eq!(other.token.expose_secret(), "ghs_2_1");
    assert!(waiting.iter().all(|caller| !caller.is_finished()));

    issuer.open(1);
    for caller in waiting {
        let token = caller.await.unwrap().unwrap();
        assert_eq!(token.token.expose_secret(), "ghs_1_1");
    }
    assert_eq!(issuer.requests(1), 1, "one request for five callers");
    // The token is cached now.
    app.installation_token(1).await.unwrap();
    assert_eq!(issuer.requests(1), 1);
}
