//! A Caddy of the edge's own: started with every route the edge set when no admin API answers,
//! supervised (started again with backoff when it dies), watched when an earlier edge started
//! the one found running, stopped on shutdown or left running when the edge detaches.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::caddy_config;
use super::{EdgeError, Shared};
use crate::process::signal_group;

/// The config file of a Caddy the edge starts, in the state directory.
const CONFIG_FILE: &str = "caddy.json";
/// What Caddy prints before its logging is set up (and panics); truncated at a start once it
/// passes [`OUTPUT_LOG_LIMIT`].
const OUTPUT_LOG: &str = "caddy-output.log";
const OUTPUT_LOG_LIMIT: u64 = 1 << 20;
/// How long a Caddy being started has to answer on its admin address.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long Caddy has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How often the admin address of a Caddy found running is checked.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A Caddy that ran this long before it exited is restarted after the first backoff again.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// The task that keeps the edge's Caddy running (or watches the one found running).
pub(super) struct Supervisor {
    /// Anything but `Run` ends the supervisor task; dropping it counts as `Stop`.
    stop: watch::Sender<Ending>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Supervisor {
    /// Supervises the Caddy this Edge started (`first`), or watches the one it found running.
    pub(super) fn start(shared: Arc<Shared>, first: Option<Child>) -> Supervisor {
        let (stop, stop_receiver) = watch::channel(Ending::Run);
        let task = tokio::spawn(supervise(shared, first, stop_receiver));
        Supervisor {
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Asks the supervisor to end as `ending` says, and waits until it has.
    pub(super) async fn end(&self, ending: Ending) {
        let _ = self.stop.send(ending);
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// What the supervisor is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Keep Caddy running (the supervisor's normal life).
    Run,
    /// Stop the Caddy it started, and end.
    Stop,
    /// End and leave Caddy running, for whoever comes next.
    Detach,
}

/// Starts Caddy with a config holding every route this Edge set, and returns once its admin API
/// answers. Holds the routes lock throughout, so no change can slip in between the config
/// written and the Caddy that serves it.
pub(super) async fn start_caddy(shared: &Shared) -> Result<Child, EdgeError> {
    let routes = shared.routes.lock().await;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EdgeError::Io { path, source }
    };
    let config_path = shared.state_dir.join(CONFIG_FILE);
    let config = caddy_config(
        &shared.admin.address,
        &shared.listen,
        &shared.state_dir,
        &routes,
    );
    std::fs::write(&config_path, config.to_string()).map_err(io(&config_path))?;
    let output_path = shared.state_dir.join(OUTPUT_LOG);
    let output = open_output_log(&output_path).map_err(io(&output_path))?;
    let errors = output.try_clone().map_err(io(&output_path))?;
    let mut child = tokio::process::Command::new(&shared.caddy_bin)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        // Caddy keeps certificates and its autosave under these; both belong in the state dir.
        .env("XDG_DATA_HOME", &shared.state_dir)
        .env("XDG_CONFIG_HOME", &shared.state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(errors))
        // Its own group: a terminal's Ctrl-C does not reach it, and stopping it stops all of it.
        .process_group(0)
        // When the supervisor is dropped without a shutdown (a test ends, the runtime goes), Caddy
        // goes with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            EdgeError::Start(format!(
                "cannot run {}: {error}",
                shared.caddy_bin.display()
            ))
        })?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(EdgeError::Start(format!(
                "caddy exited ({status}) before its admin API answered: {}",
                output_tail(&output_path)
            )));
        }
        if shared.admin.answers().await {
            break;
        }
        if Instant::now() >= deadline {
            if let Some(pid) = child.id() {
                signal_group(pid as i32, libc::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(EdgeError::Start(format!(
                "its admin API did not answer at {} within {} s: {}",
                shared.admin.address,
                START_DEADLINE.as_secs(),
                output_tail(&output_path)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap_or(0);
    shared.caddy_pid.store(pid, Ordering::SeqCst);
    tracing::info!(
        pid,
        admin = %shared.admin.address,
        listen = %shared.listen,
        routes = routes.len(),
        "started Caddy"
    );
    Ok(child)
}

/// Opens the file Caddy's stdout and stderr go to, starting it afresh once it is too large.
fn open_output_log(path: &Path) -> std::io::Result<std::fs::File> {
    let too_large = std::fs::metadata(path).is_ok_and(|m| m.len() > OUTPUT_LOG_LIMIT);
    std::fs::OpenOptions::new()
        .create(true)
        .append(!too_large)
        .write(true)
        .truncate(too_large)
        .open(path)
}

/// The last lines of Caddy's output, for an error message.
fn output_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let text = String::from_utf8_lossy(&text[start..]);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
    if tail.is_empty() {
        "it printed nothing".to_owned()
    } else {
        tail
    }
}

/// Watches the Caddy this Edge started (`first`), or the one it found running (`None`): starts
/// one (again, with backoff) when it exits or, for one found running, when its admin address
/// stops listening. Stops the Caddy it started when asked to or when the last Edge is dropped;
/// leaves it running when detached.
async fn supervise(shared: Arc<Shared>, first: Option<Child>, mut stop: watch::Receiver<Ending>) {
    // A Caddy this Edge did not start answers at the admin address: it is only watched.
    let mut found = first.is_none();
    let mut child = first;
    let mut started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some(running) = child.as_mut() {
            let ending = tokio::select! {
                status = running.wait() => {
                    shared.caddy_pid.store(0, Ordering::SeqCst);
                    let status =
                        status.map_or_else(|error| error.to_string(), |s| s.to_string());
                    if started.elapsed() >= STABLE_RUN {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::warn!(
                        %status,
                        retry_in_ms = backoff.as_millis() as u64,
                        "Caddy exited; starting it again"
                    );
                    child = None;
                    continue;
                }
                ending = stop_requested(&mut stop) => ending,
            };
            shared.caddy_pid.store(0, Ordering::SeqCst);
            if ending == Ending::Detach {
                tracing::info!(pid = running.id(), "leaving Caddy running");
                // Dropping the handle would kill it (kill_on_drop).
                std::mem::forget(child.take());
            } else {
                stop_caddy(running).await;
            }
            return;
        }
        let wait = if found { WATCH_INTERVAL } else { backoff };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop_requested(&mut stop) => return,
        }
        match shared.admin.listening().await {
            Ok(false) if found => {
                tracing::warn!(
                    admin = %shared.admin.address,
                    "the Caddy found running stopped answering; starting one with Wharf's routes"
                );
                found = false;
            }
            Ok(false) => backoff = (backoff * 2).min(MAX_BACKOFF),
            Ok(true) => {
                if !found {
                    tracing::warn!(
                        admin = %shared.admin.address,
                        "something else listens at Caddy's admin address; not starting \
                         another Caddy beside it, watching it instead"
                    );
                    found = true;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether Caddy's admin address is free");
                continue;
            }
        }
        tokio::select! {
            started_again = start_caddy(&shared) => match started_again {
                Ok(new) => {
                    started = Instant::now();
                    child = Some(new);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not start Caddy; will retry");
                }
            },
            // Dropping the start kills a Caddy it had spawned (kill_on_drop).
            _ = stop_requested(&mut stop) => {
                shared.caddy_pid.store(0, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Returns what was asked for once it is not `Run`; the sender (the last Edge) dropped is a stop.
async fn stop_requested(stop: &mut watch::Receiver<Ending>) -> Ending {
    match stop.wait_for(|ending| *ending != Ending::Run).await {
        Ok(ending) => *ending,
        Err(_) => Ending::Stop,
    }
}

/// SIGTERM to Caddy's group; SIGKILL when it has not exited after [`STOP_GRACE`]. Caddy's exit
/// waits for requests in flight, and Go counts a client connection that has not sent its first
/// request yet as busy for its first five seconds; so a client that opened a spare connection
/// can make Caddy take about that long.
async fn stop_caddy(child: &mut Child) {
    let Some(pid) = child.id() else {
        return;
    };
    signal_group(pid as i32, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "Caddy did not stop after SIGTERM; killing it");
        signal_group(pid as i32, libc::SIGKILL);
        let _ = child.wait().await;
    }
    tracing::info!(pid, "stopped Caddy");
}
