//! Running one external program the way Wharf always does: from an argument vector (never a
//! shell string), in a process group of its own, with its output read line by line into a
//! channel while it runs, bounded memory whatever it prints, and the whole group killed when
//! the run is cancelled or its deadline passes.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The longest line kept whole; longer ones are split.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// How many of the last lines a run keeps for its outcome.
pub const TAIL_LINES: usize = 40;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// A line the caller adds itself (which step runs, how it ended); no program writes these.
    Note,
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub text: String,
}

/// A program to run.
#[derive(Clone)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<OsString>,
    /// Extra environment; values may be secrets (they are never shown).
    pub env: Vec<(String, OsString)>,
    pub cwd: Option<PathBuf>,
    /// Start from an empty environment plus `env` and a few safe variables (PATH, HOME, LANG).
    pub clear_env: bool,
}

impl CommandSpec {
    pub fn new(program: &str) -> CommandSpec {
        CommandSpec {
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            clear_env: false,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> CommandSpec {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> CommandSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> CommandSpec {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> CommandSpec {
        self.cwd = Some(dir.into());
        self
    }

    /// The command as shown to users: the program and its arguments (never the environment,
    /// where secrets travel).
    pub fn display(&self) -> String {
        let mut shown = self.program.clone();
        for arg in &self.args {
            shown.push(' ');
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                shown.push_str(&format!("{arg:?}"));
            } else {
                shown.push_str(&arg);
            }
        }
        shown
    }
}

/// The program `bin` names, if it exists and may be executed: a path, or a name on PATH.
pub fn find_program(bin: &Path) -> Option<PathBuf> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if bin.components().count() > 1 {
        return executable(bin).then(|| bin.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(bin))
        .find(|candidate| executable(candidate))
}

/// Why a run was ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    Cancelled,
    TimedOut,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The exit code, when the program exited by itself.
    pub exit_code: Option<i32>,
    pub interrupted: Option<Interruption>,
    /// The last lines of output, stdout and stderr interleaved as they came.
    pub tail: Vec<String>,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.interrupted.is_none() && self.exit_code == Some(0)
    }
}

/// Why a program could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program}: {source}")]
pub struct SpawnError {
    pub program: String,
    #[source]
    pub source: std::io::Error,
}

/// Runs `spec` until it exits, `stop` turns true, or `deadline` passes; every output line goes
/// to `lines` as it comes (the send waits when the receiver is slow, which slows the program
/// rather than growing memory). On cancellation or timeout the whole process group is killed.
pub async fn run(
    spec: &CommandSpec,
    lines: &mpsc::Sender<OutputLine>,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) -> Result<RunOutcome, SpawnError> {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if spec.clear_env {
        command.env_clear();
        for key in ["PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
    }
    for (key, value) in &spec.env {
        command.env(key, value);
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|source| SpawnError {
        program: spec.program.clone(),
        source,
    })?;
    let group = child.id().map(|pid| pid as i32);
    let (tail_sender, mut tail_receiver) = mpsc::channel::<OutputLine>(256);
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(read_lines(out, Stream::Stdout, tail_sender.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(read_lines(err, Stream::Stderr, tail_sender.clone())));
    drop(tail_sender);

    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut interrupted = None;
    let mut exit_code = None;
    let mut exited = false;
    let mut output_open = true;
    let mut stop_open = true;
    // Once the program exits, its output gets a short while to drain; a process that escaped
    // the group and still holds the pipes must not hold the run open.
    let mut drain_deadline = None;
    while !exited || output_open {
        tokio::select! {
            line = tail_receiver.recv(), if output_open => match line {
                Some(line) => {
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.text.clone());
                    if lines.send(line).await.is_err() {
                        // Nobody listens any more; keep draining so the program never blocks.
                    }
                }
                None => output_open = false,
            },
            status = child.wait(), if !exited => {
                exited = true;
                exit_code = status.ok().and_then(|status| status.code());
                // Whatever the program left running in its group goes with it, so no stray
                // process keeps the pipes open.
                kill_group(group);
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
            _ = sleep_until_some(drain_deadline), if exited && output_open => break,
            changed = stop.changed(), if stop_open && interrupted.is_none() => {
                match changed {
                    Ok(()) if *stop.borrow() => {
                        interrupted = Some(Interruption::Cancelled);
                        kill_group(group);
                    }
                    Ok(()) => {}
                    Err(_) => stop_open = false,
                }
            }
            _ = tokio::time::sleep_until(deadline), if interrupted.is_none() && !exited => {
                interrupted = Some(Interruption::TimedOut);
                kill_group(group);
            }
        }
    }
    for reader in [stdout, stderr].into_iter().flatten() {
        reader.abort();
    }
    if interrupted.is_some() {
        exit_code = None;
    }
    Ok(RunOutcome {
        exit_code,
        interrupted,
        tail: tail.into_iter().collect(),
    })
}

/// Runs `spec` and collects its output, for short commands whose output is data
/// (`podman inspect`, `git rev-parse`). Output beyond `max_bytes` is an error.
pub async fn output(
    spec: &CommandSpec,
    timeout: Duration,
    max_bytes: usize,
) -> Result<(i32, String, String), SpawnError> {
    let (sender, mut receiver) = mpsc::channel(64);
    let (_stop_sender, stop) = watch::channel(false);
    let deadline = Instant::now() + timeout;
    let run = async move {
        let outcome = run(spec, &sender, stop, deadline).await;
        drop(sender);
        outcome
    };
    let collect = async {
        let mut stdout = String::new();
        let mut stderr = String::new();
        while let Some(line) = receiver.recv().await {
            let target = match line.stream {
                Stream::Stdout => &mut stdout,
                Stream::Stderr | Stream::Note => &mut stderr,
            };
            if target.len() + line.text.len() < max_bytes {
                target.push_str(&line.text);
                target.push('\n');
            }
        }
        (stdout, stderr)
    };
    let (outcome, (stdout, stderr)) = tokio::join!(run, collect);
    let outcome = outcome?;
    let code = match outcome.interrupted {
        Some(_) => -1,
        None => outcome.exit_code.unwrap_or(-1),
    };
    Ok((code, stdout, stderr))
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn kill_group(group: Option<i32>) {
    if let Some(pgid) = group {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// Sends `signal` to process group `pgid` (a program started with `process_group(0)` leads a
/// group whose id is its pid). Groups 0 and 1 are never signalled: they would mean our own group
/// and init.
pub(crate) fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: killpg only sends a signal; a group that is already gone gives ESRCH.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Reads `source` into lines of at most [`MAX_LINE_BYTES`], lossily decoded.
async fn read_lines<R: AsyncRead + Unpin>(
    mut source: R,
    stream: Stream,
    sink: mpsc::Sender<OutputLine>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let read = match source.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                let text = decode(&pending);
                pending.clear();
                if sink.send(OutputLine { stream, text }).await.is_err() {
                    return;
                }
            } else if byte != b'\r' {
                pending.push(byte);
                if pending.len() >= MAX_LINE_BYTES {
                    let text = decode(&pending);
                    pending.clear();
                    if sink.send(OutputLine { stream, text }).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    if !pending.is_empty() {
        let _ = sink
            .send(OutputLine {
                stream,
                text: decode(&pending),
            })
            .await;
    }
}

fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_by_path_or_on_path() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/bin/sh")).is_some());
        assert!(find_program(Path::new("/nonexistent/caddy")).is_none());
        assert!(find_program(Path::new("wharf-no-such-program")).is_none());
    }

    fn collect() -> (
        mpsc::Sender<OutputLine>,
        tokio::task::JoinHandle<Vec<OutputLine>>,
    ) {
        let (sender, mut receiver) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(line) = receiver.recv().await {
                lines.push(line);
            }
            lines
        });
        (sender, task)
    }

    fn never() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    #[tokio::test]
    async fn streams_both_outputs_and_reports_the_exit_code() {
        let (sender, lines) = collect();
        let spec = CommandSpec::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]);
        let outcome = run(
            &spec,
            &sender,
            never(),
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
        drop(sender);
        assert_eq!(outcome.exit_code, Some(3));
        assert!(!outcome.success());
        let lines = lines.await.unwrap();
        assert!(lines.contains(&OutputLine {
            stream: Stream::Stdout,
            text: "out".into()
        }));
        assert!(lines.contains(&OutputLine {
            stream: Stream::Stderr,
            text: "err".into()
        }));
        assert_eq!(outcome.tail.len(), 2);
    }

    #[tokio::test]
    async fn arguments_are_never_read_by_a_shell() {
        let (sender, lines) = collect();
        let spec = CommandSpec::new("echo").arg("$(id); rm -rf / `x`");
        let outcome = run(
            &spec,
            &sender,
            never(),
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
        drop(sender);
        assert!(outcome.success());
        assert_eq!(lines.await.unwrap()[0].text, "$(id); rm -rf / `x`");
    }

    /// Waits until no process of `group` is left, or fails after `deadline`.
    async fn wait_group_gone(group: i32, deadline: Duration) {
        let started = std::time::Instant::now();
        // SAFETY: signal 0 only checks whether the group exists.
        while unsafe { libc::killpg(group, 0) } == 0 {
            assert!(
                started.elapsed() < deadline,
                "process group {group} still alive"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let (sender, _lines) = collect();
        // The shell starts a grandchild that would outlive it, then waits forever.
        let spec = CommandSpec::new("sh").args([
            "-c".to_owned(),
            format!("sleep 300 & echo $$ > {}; wait", pid_file.display()),
        ]);
        let started = std::time::Instant::now();
        let outcome = run(
            &spec,
            &sender,
            never(),
            Instant::now() + Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert_eq!(outcome.interrupted, Some(Interruption::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(5));
        let group: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_group_gone(group, Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn cancelling_kills_the_tree_at_once() {
        let (sender, _lines) = collect();
        let (stop_sender, stop) = watch::channel(false);
        let spec = CommandSpec::new("sh").args(["-c", "sleep 300 & sleep 300; wait"]);
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop_sender.send(true).unwrap();
            stop_sender
        });
        let started = std::time::Instant::now();
        let outcome = run(
            &spec,
            &sender,
            stop,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
        let _ = cancel.await;
        assert_eq!(outcome.interrupted, Some(Interruption::Cancelled));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn huge_output_keeps_memory_bounded_and_long_lines_are_split() {
        let (sender, mut receiver) = mpsc::channel::<OutputLine>(4);
        let counter = tokio::spawn(async move {
            let (mut count, mut longest) = (0usize, 0usize);
            while let Some(line) = receiver.recv().await {
                count += 1;
                longest = longest.max(line.text.len());
            }
            (count, longest)
        });
        // 20 MB without a newline, then 100,000 short lines.
        let spec = CommandSpec::new("sh").args([
            "-c",
            "head -c 20000000 /dev/zero | tr '\\0' 'x'; echo; seq 100000",
        ]);
        let outcome = run(
            &spec,
            &sender,
            never(),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
        drop(sender);
        assert!(outcome.success());
        let (count, longest) = counter.await.unwrap();
        assert_eq!(longest, MAX_LINE_BYTES);
        assert!(count > 100_000 + 20_000_000 / MAX_LINE_BYTES - 2, "{count}");
        assert_eq!(outcome.tail.len(), TAIL_LINES);
        assert_eq!(outcome.tail.last().unwrap(), "100000");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let (sender, _lines) = collect();
        let spec = CommandSpec::new("/nonexistent/program");
        let error = run(
            &spec,
            &sender,
            never(),
            Instant::now() + Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("/nonexistent/program"));
    }

    #[test]
    fn display_shows_arguments_not_the_environment() {
        let spec = CommandSpec::new("git")
            .args(["fetch", "--depth", "1", "origin", "a b"])
            .env("GIT_CONFIG_VALUE_0", "Authorization: Basic c2VjcmV0");
        assert_eq!(spec.display(), "git fetch --depth 1 origin \"a b\"");
    }
}
