//! Email sinks through a real SMTP conversation: a small SMTP server written here, on
//! 127.0.0.1, speaks EHLO, STARTTLS (with a certificate of a CA made by `openssl` for the
//! test, which the server trusts through `WHARF_SMTP_CA_FILE`'s setting), AUTH PLAIN or LOGIN,
//! MAIL, RCPT and DATA, and answers as it is told. The test plays the agent whose build fails.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::helpers::{Options, TestApp, sha, spawn_app_with, wait_until};
use crate::notifications::wharf;

const DEADLINE: Duration = Duration::from_secs(20);

/// A CA and a certificate it signed for 127.0.0.1, made with `openssl`.
struct Certificates {
    ca_pem: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

impl Certificates {
    fn make() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        std::fs::write(
            path("server.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &path("ca.key"),
                "-out",
                &path("ca.pem"),
                "-days",
                "2",
                "-subj",
                "/CN=Wharf test mail CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &path("server.key"),
                "-out",
                &path("server.csr"),
                "-subj",
                "/CN=127.0.0.1",
            ],
            &[
                "x509",
                "-req",
                "-in",
                &path("server.csr"),
                "-CA",
                &path("ca.pem"),
                "-CAkey",
                &path("ca.key"),
                "-CAcreateserial",
                "-out",
                &path("server.pem"),
                "-days",
                "2",
                "-extfile",
                &path("server.ext"),
            ],
        ];
        for args in steps {
            let output = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(path("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Certificates {
            ca_pem: std::fs::read(path("ca.pem")).unwrap(),
            server: Arc::new(server),
        }
    }
}

/// A message the server accepted.
#[derive(Clone, Debug)]
struct Accepted {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

/// How the server behaves, and what it saw.
#[derive(Default)]
struct SmtpState {
    /// Offer STARTTLS.
    starttls: bool,
    /// The AUTH mechanisms offered after STARTTLS: "PLAIN LOGIN", "LOGIN".
    mechanisms: &'static str,
    /// Replies to the end of DATA before one accepts (`451 …`, `550 …`).
    script: VecDeque<&'static str>,
    accepted: Vec<Accepted>,
    /// Messages whose data arrived, accepted or not.
    data_received: usize,
    /// (mechanism, user, password) of each AUTH.
    logins: Vec<(String, String, String)>,
    /// Every command line but AUTH's own, in order, with whether it came over TLS.
    commands: Vec<(bool, String)>,
}

struct SmtpServer {
    port: u16,
    state: Arc<Mutex<SmtpState>>,
}

impl SmtpServer {
    async fn start(certificates: &Certificates, state: SmtpState) -> SmtpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(state));
        let acceptor = TlsAcceptor::from(certificates.server.clone());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = session(stream, acceptor, state).await;
                });
            }
        });
        SmtpServer { port, state }
    }

    fn state<T>(&self, read: impl FnOnce(&SmtpState) -> T) -> T {
        read(&self.state.lock().unwrap())
    }

    async fn wait_for_accepted(&self, count: usize) -> Vec<Accepted> {
        wait_until(
            &format!("{count} messages reach the mail server"),
            DEADLINE,
            || async { self.state(|state| state.accepted.len()) >= count },
        )
        .await;
        self.state(|state| state.accepted.clone())
    }
}

async fn read_line<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    let stream = stream.get_mut();
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await
}

/// One connection: plain text until STARTTLS, then the rest over TLS.
async fn session(
    stream: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<SmtpState>>,
) -> std::io::Result<()> {
    let mut plain = BufReader::new(stream);
    reply(&mut plain, "220 mail.test ESMTP\r\n").await?;
    let starttls = state.lock().unwrap().starttls;
    loop {
        let Some(line) = read_line(&mut plain).await? else {
            return Ok(());
        };
        state.lock().unwrap().commands.push((false, line.clone()));
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" if starttls => {
                reply(
                    &mut plain,
                    "250-mail.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
                )
                .await?
            }
            // Without STARTTLS, offer AUTH in the clear, as a careless server would.
            "EHLO" => {
                reply(
                    &mut plain,
                    "250-mail.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
                )
                .await?
            }
            "STARTTLS" if starttls => {
                reply(&mut plain, "220 2.0.0 Ready to start TLS\r\n").await?;
                break;
            }
            "QUIT" => {
                reply(&mut plain, "221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => {
                reply(
                    &mut plain,
                    "530 5.7.0 Must issue a STARTTLS command first\r\n",
                )
                .await?
            }
        }
    }
    let tls = acceptor.accept(plain.into_inner()).await?;
    secured(BufReader::new(tls), state).await
}

fn decoded(text: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64 from the client");
    String::from_utf8(bytes).unwrap()
}

/// After STARTTLS: EHLO again, AUTH, and the mail itself.
async fn secured<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: BufReader<S>,
    state: Arc<Mutex<SmtpState>>,
) -> std::io::Result<()> {
    let mechanisms = state.lock().unwrap().mechanisms;
    let (mut mail_from, mut rcpt_to) = (String::new(), Vec::new());
    while let Some(line) = read_line(&mut stream).await? {
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if verb != "AUTH" {
            state.lock().unwrap().commands.push((true, line.clone()));
        }
        match verb.as_str() {
            "EHLO" => {
                let offer = format!("250-mail.test\r\n250-AUTH {mechanisms}\r\n250 8BITMIME\r\n");
                reply(&mut stream, &offer).await?
            }
            "AUTH" => {
                let mut words = line.split_whitespace().skip(1);
                let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
                let initial = words.next().map(str::to_owned);
                let (user, password) = if mechanism == "PLAIN" {
                    let response = match initial {
                        Some(initial) => initial,
                        None => {
                            reply(&mut stream, "334 \r\n").await?;
                            read_line(&mut stream).await?.unwrap_or_default()
                        }
                    };
                    let plain = decoded(&response);
                    let mut parts = plain.split('\0').skip(1);
                    let user = parts.next().unwrap_or_default().to_owned();
                    (user, parts.next().unwrap_or_default().to_owned())
                } else {
                    let user = match initial {
                        Some(initial) => decoded(&initial),
                        None => {
                            reply(&mut stream, "334 VXNlcm5hbWU6\r\n").await?;
                            decoded(&read_line(&mut stream).await?.unwrap_or_default())
                        }
                    };
                    reply(&mut stream, "334 UGFzc3dvcmQ6\r\n").await?;
                    let password = decoded(&read_line(&mut stream).await?.unwrap_or_default());
                    (user, password)
                };
                state
                    .lock()
                    .unwrap()
                    .logins
                    .push((mechanism, user, password));
                reply(&mut stream, "235 2.7.0 Authentication successful\r\n").await?
            }
            "MAIL" => {
                mail_from = line.clone();
                rcpt_to.clear();
                reply(&mut stream, "250 2.1.0 Ok\r\n").await?
            }
            "RCPT" => {
                rcpt_to.push(line.clone());
                reply(&mut stream, "250 2.1.5 Ok\r\n").await?
            }
            "DATA" => {
                reply(&mut stream, "354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    let Some(line) = read_line(&mut stream).await? else {
                        return Ok(());
                    };
                    if line == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push_str("\r\n");
                }
                let answer = {
                    let mut state = state.lock().unwrap();
                    state.data_received += 1;
                    let scripted = state.script.pop_front();
                    if scripted.is_none() {
                        state.accepted.push(Accepted {
                            mail_from: mail_from.clone(),
                            rcpt_to: rcpt_to.clone(),
                            data,
                        });
                    }
                    scripted
                };
                match answer {
                    Some(answer) => reply(&mut stream, &format!("{answer}\r\n")).await?,
                    None => reply(&mut stream, "250 2.0.0 Ok: queued\r\n").await?,
                }
            }
            "RSET" | "NOOP" => reply(&mut stream, "250 2.0.0 Ok\r\n").await?,
            "QUIT" => {
                reply(&mut stream, "221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => reply(&mut stream, "502 5.5.2 Command not recognized\r\n").await?,
        }
    }
    Ok(())
}

/// A received message, read as a mail client would: its headers, and its two parts decoded.
struct Letter {
    headers: Vec<(String, String)>,
    plain: String,
    html: String,
}

impl Letter {
    fn read(data: &str) -> Letter {
        let (head, body) = data.split_once("\r\n\r\n").expect("headers, then a body");
        let headers = header_lines(head);
        let content_type = header(&headers, "Content-Type");
        assert!(
            content_type.starts_with("multipart/alternative"),
            "{content_type}"
        );
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .expect("a boundary")
            .trim_matches('"')
            .to_owned();
        let (mut plain, mut html) = (None, None);
        for part in body.split(&format!("--{boundary}")).skip(1) {
            let Some((part_head, part_body)) = part.split_once("\r\n\r\n") else {
                continue;
            };
            let part_headers = header_lines(part_head.trim_start());
            let text = match header(&part_headers, "Content-Transfer-Encoding").as_str() {
                "base64" => decoded(&part_body.replace("\r\n", "")),
                "quoted-printable" => quoted_printable(part_body),
                _ => part_body.to_owned(),
            };
            let kind = header(&part_headers, "Content-Type");
            if kind.starts_with("text/plain") {
                plain = Some(text);
            } else if kind.starts_with("text/html") {
                html = Some(text);
            }
        }
        Letter {
            headers,
            plain: plain.expect("a text/plain part"),
            html: html.expect("a text/html part"),
        }
    }

    fn header(&self, name: &str) -> String {
        header(&self.headers, name)
    }
}

fn header_lines(head: &str) -> Vec<(String, String)> {
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn header(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'=')
            .then(|| joined.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8(out).unwrap()
}

async fn app_trusting(certificates: &Certificates) -> TestApp {
    spawn_app_with(Options {
        smtp_ca_pem: Some(certificates.ca_pem.clone()),
        ..Options::default()
    })
    .await
}

/// A service whose build of `commit` an agent claims and reports failed; answers its id.
async fn failed_build(app: &TestApp, reason: &str) -> i64 {
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let build = app
        .post("/v1/services/web/builds", json!({"ref": sha('e')}))
        .await;
    assert_eq!(build.status, StatusCode::CREATED, "{}", build.text);
    let id = build.body["id"].as_i64().unwrap();
    let agent = app.create_agent("builder").await;
    let claim = app
        .post_as(&agent, "/v1/agent/claim", json!({"wait_ms": 5000}))
        .await;
    assert_eq!(claim.body["job"]["build"]["id"], id, "{}", claim.text);
    let answer = app
        .post_as(
            &agent,
            &format!("/v1/agent/builds/{id}/state"),
            json!({"state": "failed", "reason": reason}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    id
}

/// Adds an email sink through the API.
async fn add_email_sink(app: &TestApp, name: &str, url: &str, password: Option<&str>) {
    let answer = app
        .post(
            "/v1/notifications",
            json!({"name": name, "kind": "email", "url": url, "secret": password,
                   "email": {"to": ["ops@example.com"], "from": "wharf@example.com"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
}

async fn deliveries(app: &TestApp, sink: &str) -> Vec<Value> {
    let answer = app
        .get(&format!("/v1/notifications/{sink}/deliveries?failed=false"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_failed_build_is_mailed_over_starttls_with_both_parts_and_a_link_to_its_page() {
    const PASSWORD: &str = "smtp-password-6120";
    let certificates = Certificates::make();
    let server = SmtpServer::start(
        &certificates,
        SmtpState {
            starttls: true,
            mechanisms: "PLAIN LOGIN",
            ..SmtpState::default()
        },
    )
    .await;
    let app = app_trusting(&certificates).await;

    // The user is in the URL; its password comes from standard input.
    let smtp = format!("smtp://wharf@example.com@127.0.0.1:{}", server.port);
    let (ok, added) = wharf(
        &app,
        &[
            "notify",
            "add",
            "mail",
            "--email",
            "ops@example.com",
            "--email",
            "oncall@example.com",
            "--from",
            "Wharf <wharf@example.com>",
            "--smtp",
            &smtp,
            "--events",
            "build.failed",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert!(ok, "{added}");
    let shown = format!("smtp://127.0.0.1:{}", server.port);
    assert_eq!(added, format!("Added email sink mail ({shown})\n"));
    let (ok, listed) = wharf(&app, &["notify", "list"], "").await;
    assert!(ok, "{listed}");
    assert!(
        listed.contains(&format!("ops@example.com,oncall@example.com via {shown}")),
        "{listed}"
    );
    let (ok, json_listed) = wharf(&app, &["notify", "list", "--json"], "").await;
    assert!(ok, "{json_listed}");
    for text in [&listed, &json_listed] {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains("wharf@example.com@"), "{text}");
    }
    // At rest, the server's URL and its password are sealed.
    let sink = app.store.sink("mail").await.unwrap().unwrap();
    assert!(!sink.url_sealed.contains("127.0.0.1"));
    assert!(!sink.secret_sealed.as_deref().unwrap().contains(PASSWORD));

    let id = failed_build(&app, "the Dockerfile's RUN step failed").await;
    let accepted = server.wait_for_accepted(1).await;
    let message = &accepted[0];
    assert_eq!(message.mail_from, "MAIL FROM:<wharf@example.com>");
    assert_eq!(
        message.rcpt_to,
        ["RCPT TO:<ops@example.com>", "RCPT TO:<oncall@example.com>"]
    );
    let letter = Letter::read(&message.data);
    assert_eq!(
        letter.header("Subject"),
        format!("[Wharf] web (production): build #{id} failed")
    );
    assert_eq!(letter.header("From"), "Wharf <wharf@example.com>");
    assert_eq!(letter.header("To"), "ops@example.com, oncall@example.com");
    assert_eq!(letter.header("X-Wharf-Event"), "build.failed");
    let delivery = deliveries(&app, "mail").await[0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(letter.header("X-Wharf-Delivery"), delivery);
    assert_eq!(
        letter.header("Message-ID"),
        format!("<{delivery}@127.0.0.1>")
    );
    let page = format!("{}/builds/{id}", app.url);
    assert!(letter.plain.contains(&page), "{}", letter.plain);
    assert!(letter.plain.contains("the Dockerfile's RUN step failed"));
    assert!(letter.plain.contains(&format!("Commit: {}", sha('e'))));
    assert!(letter.plain.contains("Environment: production"));
    assert!(
        letter.html.contains(&format!("<a href=\"{page}\">")),
        "{}",
        letter.html
    );
    assert!(letter.html.contains("the Dockerfile&#39;s RUN step failed"));

    // The password went to AUTH, over TLS, and nowhere else.
    let (logins, commands) = server.state(|state| (state.logins.clone(), state.commands.clone()));
    assert_eq!(
        logins,
        [(
            "PLAIN".to_owned(),
            "wharf@example.com".to_owned(),
            PASSWORD.to_owned()
        )]
    );
    let before_tls: Vec<&str> = commands
        .iter()
        .filter(|(tls, _)| !tls)
        .map(|(_, line)| line.as_str())
        .collect();
    assert_eq!(
        before_tls.len(),
        2,
        "EHLO and STARTTLS only: {before_tls:?}"
    );
    assert_eq!(before_tls[0], "EHLO [127.0.0.1]");
    assert_eq!(before_tls[1], "STARTTLS");
    for (_, line) in &commands {
        assert!(!line.contains(PASSWORD), "{line}");
    }
    assert!(!message.data.contains(PASSWORD));
    assert!(!app.logs.text().contains(PASSWORD));
    wait_until("the message is recorded as delivered", DEADLINE, || async {
        deliveries(&app, "mail")
            .await
            .first()
            .is_some_and(|delivery| delivery["state"] == "delivered")
    })
    .await;
    let delivered = &deliveries(&app, "mail").await[0];
    assert_eq!(delivered["last_status"], 250);
    assert_eq!(delivered["attempts"], 1);
}

#[tokio::test]
async fn a_mail_server_that_answers_451_first_gets_the_message_once() {
    let certificates = Certificates::make();
    let server = SmtpServer::start(
        &certificates,
        SmtpState {
            starttls: true,
            mechanisms: "LOGIN",
            script: VecDeque::from(["451 4.3.0 Try again later"]),
            ..SmtpState::default()
        },
    )
    .await;
    let app = app_trusting(&certificates).await;
    let url = format!("smtp://relay@127.0.0.1:{}", server.port);
    add_email_sink(&app, "mail", &url, Some("relay-password")).await;
    let tested = app.post("/v1/notifications/mail/test", json!({})).await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);

    let accepted = server.wait_for_accepted(1).await;
    assert_eq!(server.state(|state| state.data_received), 2);
    let letter = Letter::read(&accepted[0].data);
    assert_eq!(letter.header("Subject"), "[Wharf] a test message");
    assert_eq!(letter.header("X-Wharf-Event"), "test");
    wait_until("the message is recorded as delivered", DEADLINE, || async {
        deliveries(&app, "mail")
            .await
            .first()
            .is_some_and(|delivery| delivery["state"] == "delivered")
    })
    .await;
    let deliveries = deliveries(&app, "mail").await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["attempts"], 2);
    let logins = server.state(|state| state.logins.clone());
    assert_eq!(
        logins,
        [
            (
                "LOGIN".to_owned(),
                "relay".to_owned(),
                "relay-password".to_owned()
            ),
            (
                "LOGIN".to_owned(),
                "relay".to_owned(),
                "relay-password".to_owned()
            ),
        ],
        "each attempt logs in over TLS"
    );
    // Both attempts were one message: the same id.
    let first = server.state(|state| state.accepted[0].data.clone());
    assert!(first.contains(&format!(
        "X-Wharf-Delivery: {}",
        deliveries[0]["message_id"].as_str().unwrap()
    )));
}

#[tokio::test]
async fn a_mail_servers_refusal_is_a_dead_letter_at_once() {
    let certificates = Certificates::make();
    let server = SmtpServer::start(
        &certificates,
        SmtpState {
            starttls: true,
            mechanisms: "PLAIN",
            script: VecDeque::from(["550 5.1.1 No such user"]),
            ..SmtpState::default()
        },
    )
    .await;
    let app = app_trusting(&certificates).await;
    add_email_sink(
        &app,
        "mail",
        &format!("smtp://127.0.0.1:{}", server.port),
        None,
    )
    .await;
    app.post("/v1/notifications/mail/test", json!({})).await;
    wait_until("the refused message is dead", DEADLINE, || async {
        deliveries(&app, "mail")
            .await
            .first()
            .is_some_and(|delivery| delivery["state"] == "dead")
    })
    .await;
    let dead = &deliveries(&app, "mail").await[0];
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert_eq!(dead["last_status"], 550, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("No such user"),
        "{dead}"
    );
    // Without a user in the URL, nothing logs in.
    assert!(server.state(|state| state.logins.is_empty()));
    // Retried by hand, it is sent again and taken.
    let retried = app.post("/v1/notifications/mail/retry", json!({})).await;
    assert_eq!(retried.body["retried"], 1, "{}", retried.text);
    server.wait_for_accepted(1).await;
}

#[tokio::test]
async fn a_mail_server_without_starttls_never_gets_the_password() {
    let certificates = Certificates::make();
    let server = SmtpServer::start(
        &certificates,
        SmtpState {
            starttls: false,
            mechanisms: "PLAIN LOGIN",
            ..SmtpState::default()
        },
    )
    .await;
    let app = app_trusting(&certificates).await;
    let url = format!("smtp://relay@127.0.0.1:{}", server.port);
    add_email_sink(&app, "mail", &url, Some("never-in-clear")).await;
    app.post("/v1/notifications/mail/test", json!({})).await;
    wait_until("an attempt fails", DEADLINE, || async {
        deliveries(&app, "mail")
            .await
            .first()
            .is_some_and(|delivery| delivery["last_error"].is_string())
    })
    .await;
    let delivery = &deliveries(&app, "mail").await[0];
    assert_eq!(delivery["state"], "pending", "{delivery}");
    let commands = server.state(|state| state.commands.clone());
    assert!(
        commands
            .iter()
            .all(|(_, line)| line.starts_with("EHLO") || line == "QUIT"),
        "only a greeting before giving up: {commands:?}"
    );
    assert!(server.state(|state| state.logins.is_empty() && state.accepted.is_empty()));
}

#[tokio::test]
async fn email_sinks_are_checked_when_added() {
    let certificates = Certificates::make();
    let app = app_trusting(&certificates).await;
    let attempts = [
        (
            json!({"name": "m", "kind": "email", "url": "smtp://user:pw@mail.example.com",
                   "email": {"to": ["ops@example.com"], "from": "w@example.com"}}),
            "standard input",
        ),
        (
            json!({"name": "m", "kind": "email", "url": "smtp://user@mail.example.com",
                   "email": {"to": ["ops@example.com"], "from": "w@example.com"}}),
            "give its password",
        ),
        (
            json!({"name": "m", "kind": "email", "url": "smtp://mail.example.com",
                   "secret": "pw", "email": {"to": ["ops@example.com"], "from": "w@example.com"}}),
            "a password needs a user",
        ),
        (
            json!({"name": "m", "kind": "email", "url": "smtp://mail.example.com",
                   "email": {"to": ["not an address"], "from": "w@example.com"}}),
            "is not an email address",
        ),
        (
            json!({"name": "m", "kind": "email", "url": "smtp://mail.example.com"}),
            "recipients",
        ),
        (
            json!({"name": "m", "kind": "email", "url": "https://mail.example.com",
                   "email": {"to": ["ops@example.com"], "from": "w@example.com"}}),
            "smtp://",
        ),
        (
            json!({"name": "m", "kind": "webhook", "url": "https://ops.example.com/h",
                   "email": {"to": ["ops@example.com"], "from": "w@example.com"}}),
            "only an email sink",
        ),
    ];
    for (request, expected) in attempts {
        let answer = app.post("/v1/notifications", request.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{request}: {}",
            answer.text
        );
        assert!(answer.text.contains(expected), "{request}: {}", answer.text);
        assert!(!answer.text.contains(":pw@"), "{}", answer.text);
    }
}
