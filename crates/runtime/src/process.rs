//! Running one external program the way Wharf always does: from an argument vector (never a
//! shell string), in a process group of its own, with its output read line by line into a
//! channel while it runs, bounded memory whatever it prints, and the whole group killed when
//! the run is cancelled or its deadline passes.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
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

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The program exited by itself with this code.
    Exited(i32),
    /// A signal Wharf did not send ended the program (the OOM killer, an operator's `kill`).
    Killed { signal: i32 },
    /// Wharf killed the program's group: it was still running when its time, `limit`, was up.
    TimedOut { limit: Duration },
    /// Wharf killed the program's group: the run was cancelled.
    Cancelled,
}

impl Ended {
    pub fn success(self) -> bool {
        self == Ended::Exited(0)
    }

    /// The exit code, when the program exited by itself.
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Ended::Exited(code) => Some(code),
            _ => None,
        }
    }
}

/// "exited 3", "was killed by signal 9", "did not finish within 120 s", "was cancelled": what
/// follows the command in a message.
impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exited {code}"),
            Ended::Killed { signal } => write!(f, "was killed by signal {signal}"),
            Ended::TimedOut { limit } if limit.subsec_millis() == 0 => {
                write!(f, "did not finish within {} s", limit.as_secs())
            }
            Ended::TimedOut { limit } => {
                write!(f, "did not finish within {} ms", limit.as_millis())
            }
            Ended::Cancelled => f.write_str("was cancelled"),
        }
    }
}

/// How a streamed run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The command as shown to users ([`CommandSpec::display`]).
    pub command: String,
    pub ended: Ended,
    /// The last lines of output, stdout and stderr interleaved as they came.
    pub tail: Vec<String>,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.ended.success()
    }

    /// The last line of output that is not blank, or "no output".
    pub fn last_line(&self) -> &str {
        last_nonblank(self.tail.iter().map(String::as_str))
    }
}

/// A short command that ran to its end and what it printed, kept as data: the outcome shown to
/// users when it failed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command as shown to users ([`CommandSpec::display`]).
    pub command: String,
    pub ended: Ended,
    pub stdout: String,
    pub stderr: String,
    /// Output past the limit was dropped: `stdout` and `stderr` hold only their first bytes.
    pub truncated: bool,
    /// How long the command ran.
    pub took: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.ended.success()
    }

    /// The last line that is not blank, stderr's first, clipped to 300 characters, or
    /// "no output".
    pub fn last_line(&self) -> String {
        last_nonblank(self.stdout.lines().chain(self.stderr.lines()))
            .chars()
            .take(300)
            .collect()
    }

    /// The output when the command succeeded; a [`CommandFailed`] saying how it ended otherwise.
    pub fn succeeded(self) -> Result<CommandOutput, CommandFailed> {
        if self.success() {
            Ok(self)
        } else {
            Err(CommandFailed(Box::new(self)))
        }
    }
}

/// A command that ran and did not succeed: "`podman pull -- x` exited 125: Error: …".
#[derive(Debug, Clone)]
pub struct CommandFailed(pub Box<CommandOutput>);

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let output = &self.0;
        write!(f, "`{}` {}", output.command, output.ended)?;
        match output.ended {
            Ended::Exited(_) | Ended::Killed { .. } => write!(f, ": {}", output.last_line()),
            Ended::TimedOut { .. } | Ended::Cancelled => Ok(()),
        }
    }
}

impl std::error::Error for CommandFailed {}

/// The last line of `lines` that is not blank, or "no output".
fn last_nonblank<'a>(mut lines: impl DoubleEndedIterator<Item = &'a str>) -> &'a str {
    lines
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or("no output")
}

/// Why a program could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program}: {source}")]
pub struct SpawnError {
    pub program: String,
    #[source]
    pub source: std::io::Error,
}

/// Where a streamed run's output goes while it runs, and what ends it early.
pub struct Streaming<'a> {
    /// Every output line, as it comes; the send waits when the receiver is slow, which slows
    /// the program rather than growing memory.
    pub lines: &'a mpsc::Sender<OutputLine>,
    /// Turns true when the run must stop.
    pub stop: watch::Receiver<bool>,
    pub deadline: Instant,
}

/// Runs `spec` until it exits, `to.stop` turns true, or `to.deadline` passes. The first line
/// sent is a [`Stream::Note`] showing the command (`$ program args…`), then every output line
/// as it comes. On cancellation or timeout the whole process group is killed.
pub async fn run(spec: &CommandSpec, to: &Streaming<'_>) -> Result<RunOutcome, SpawnError> {
    let command = spec.display();
    let _ = to
        .lines
        .send(OutputLine {
            stream: Stream::Note,
            text: format!("$ {command}"),
        })
        .await;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    // A deadline shared by several runs (a build's) leaves each what remains of it.
    let limit = to.deadline.saturating_duration_since(Instant::now());
    let ended = supervise(spec, to.stop.clone(), to.deadline, limit, |line| {
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.text.clone());
        to.lines.send(line)
    })
    .await?;
    Ok(RunOutcome {
        command,
        ended,
        tail: tail.into_iter().collect(),
    })
}

/// Runs `spec` and collects its output, for short commands whose output is data
/// (`podman inspect`, `git rev-parse`). Each of stdout and stderr keeps its first `max_bytes`;
/// what comes after is dropped, and the output says it was (`truncated`).
pub async fn output(
    spec: &CommandSpec,
    timeout: Duration,
    max_bytes: usize,
) -> Result<CommandOutput, SpawnError> {
    let begun = Instant::now();
    let (_stop_sender, stop) = watch::channel(false);
    let mut stdout = String::new();
    let mut stderr = String::new();
    // Whether stdout and stderr have reached their limit: nothing more is kept of them.
    let mut full = [false, false];
    let ended = supervise(spec, stop, begun + timeout, timeout, |line| {
        let (target, full) = match line.stream {
            Stream::Stdout => (&mut stdout, &mut full[0]),
            Stream::Stderr | Stream::Note => (&mut stderr, &mut full[1]),
        };
        if !*full && target.len() + line.text.len() < max_bytes {
            target.push_str(&line.text);
            target.push('\n');
        } else {
            *full = true;
        }
        std::future::ready(Ok::<(), mpsc::error::SendError<OutputLine>>(()))
    })
    .await?;
    Ok(CommandOutput {
        command: spec.display(),
        ended,
        stdout,
        stderr,
        truncated: full[0] || full[1],
        took: begun.elapsed(),
    })
}

/// Runs `spec` in a process group of its own and hands every output line to `line` as it
/// comes (a send that waits slows the program); kills the group when `stop` turns true or
/// `deadline` passes (`limit` after it started, for the outcome), and says how the run ended.
async fn supervise<F, Fut, E>(
    spec: &CommandSpec,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
    limit: Duration,
    mut line: F,
) -> Result<Ended, SpawnError>
where
    F: FnMut(OutputLine) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
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
    let spawn_error = |source| SpawnError {
        program: spec.program.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let group = child.id().map(|pid| pid as i32);
    let (line_sender, mut line_receiver) = mpsc::channel::<OutputLine>(256);
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(read_lines(out, Stream::Stdout, line_sender.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(read_lines(err, Stream::Stderr, line_sender.clone())));
    drop(line_sender);

    let mut interrupted = None;
    let mut status = None;
    let mut output_open = true;
    let mut stop_open = true;
    // Once the program exits, its output gets a short while to drain; a process that escaped
    // the group and still holds the pipes must not hold the run open.
    let mut drain_deadline = None;
    while status.is_none() || output_open {
        tokio::select! {
            next = line_receiver.recv(), if output_open => match next {
                Some(next) => {
                    if line(next).await.is_err() {
                        // Nobody listens any more; keep draining so the program never blocks.
                    }
                }
                None => output_open = false,
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited);
                // Whatever the program left running in its group goes with it, so no stray
                // process keeps the pipes open.
                kill_group(group);
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
            _ = sleep_until_some(drain_deadline), if status.is_some() && output_open => break,
            changed = stop.changed(), if stop_open && interrupted.is_none() => {
                match changed {
                    Ok(()) if *stop.borrow() => {
                        interrupted = Some(Ended::Cancelled);
                        kill_group(group);
                    }
                    Ok(()) => {}
                    Err(_) => stop_open = false,
                }
            }
            _ = tokio::time::sleep_until(deadline), if interrupted.is_none() && status.is_none() => {
                interrupted = Some(Ended::TimedOut { limit });
                kill_group(group);
            }
        }
    }
    for reader in [stdout, stderr].into_iter().flatten() {
        reader.abort();
    }
    if let Some(interrupted) = interrupted {
        return Ok(interrupted);
    }
    let status = status
        .expect("the loop ends once the program exited")
        .map_err(spawn_error)?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Ended::Exited(code),
        (None, Some(signal)) => Ended::Killed { signal },
        // Neither a code nor a signal: not a state a waited-for child on Unix can be in.
        (None, None) => Ended::Killed { signal: 0 },
    })
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

    /// Streams `spec` into `lines` for at most `limit`, never cancelled.
    async fn run_for(
        spec: &CommandSpec,
        lines: &mpsc::Sender<OutputLine>,
        limit: Duration,
    ) -> Result<RunOutcome, SpawnError> {
        let to = Streaming {
            lines,
            stop: never(),
            deadline: Instant::now() + limit,
        };
        run(spec, &to).await
    }

    #[tokio::test]
    async fn streams_both_outputs_after_the_command_and_reports_the_exit_code() {
        let (sender, lines) = collect();
        let spec = CommandSpec::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]);
        let outcome = run_for(&spec, &sender, Duration::from_secs(10))
            .await
            .unwrap();
        drop(sender);
        assert_eq!(outcome.ended, Ended::Exited(3));
        assert_eq!(outcome.ended.exit_code(), Some(3));
        assert!(!outcome.success());
        let lines = lines.await.unwrap();
        assert_eq!(
            lines[0],
            OutputLine {
                stream: Stream::Note,
                text: "$ sh -c \"echo out; echo err >&2; exit 3\"".into()
            }
        );
        assert!(lines.contains(&OutputLine {
            stream: Stream::Stdout,
            text: "out".into()
        }));
        assert!(lines.contains(&OutputLine {
            stream: Stream::Stderr,
            text: "err".into()
        }));
        assert_eq!(outcome.tail.len(), 2);
        assert_eq!(outcome.command, "sh -c \"echo out; echo err >&2; exit 3\"");
    }

    #[tokio::test]
    async fn arguments_are_never_read_by_a_shell() {
        let (sender, lines) = collect();
        let spec = CommandSpec::new("echo").arg("$(id); rm -rf / `x`");
        let outcome = run_for(&spec, &sender, Duration::from_secs(10))
            .await
            .unwrap();
        drop(sender);
        assert!(outcome.success());
        assert_eq!(lines.await.unwrap()[1].text, "$(id); rm -rf / `x`");
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
        let outcome = run_for(&spec, &sender, Duration::from_millis(500))
            .await
            .unwrap();
        assert!(
            matches!(outcome.ended, Ended::TimedOut { limit } if limit <= Duration::from_millis(500)),
            "{:?}",
            outcome.ended
        );
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
        let to = Streaming {
            lines: &sender,
            stop,
            deadline: Instant::now() + Duration::from_secs(60),
        };
        let outcome = run(&spec, &to).await.unwrap();
        let _ = cancel.await;
        assert_eq!(outcome.ended, Ended::Cancelled);
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
                if line.stream != Stream::Note {
                    count += 1;
                    longest = longest.max(line.text.len());
                }
            }
            (count, longest)
        });
        // 20 MB without a newline, then 100,000 short lines.
        let spec = CommandSpec::new("sh").args([
            "-c",
            "head -c 20000000 /dev/zero | tr '\\0' 'x'; echo; seq 100000",
        ]);
        let outcome = run_for(&spec, &sender, Duration::from_secs(60))
            .await
            .unwrap();
        drop(sender);
        assert!(outcome.success());
        let (count, longest) = counter.await.unwrap();
        assert_eq!(longest, MAX_LINE_BYTES);
        assert!(count > 100_000 + 20_000_000 / MAX_LINE_BYTES - 2, "{count}");
        assert_eq!(outcome.tail.len(), TAIL_LINES);
        assert_eq!(outcome.tail.last().unwrap(), "100000");
        assert_eq!(outcome.last_line(), "100000");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let (sender, _lines) = collect();
        let spec = CommandSpec::new("/nonexistent/program");
        let error = run_for(&spec, &sender, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("/nonexistent/program"));
        let error = output(&spec, Duration::from_secs(1), 1024)
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

    #[tokio::test]
    async fn output_is_collected_by_stream_with_the_exit_code() {
        let spec = CommandSpec::new("sh").args(["-c", "echo one; echo two >&2; echo three"]);
        let output = output(&spec, Duration::from_secs(10), 1024).await.unwrap();
        assert_eq!(output.ended, Ended::Exited(0));
        assert_eq!(output.stdout, "one\nthree\n");
        assert_eq!(output.stderr, "two\n");
        assert!(!output.truncated);
        assert!(output.succeeded().is_ok());

        let spec = CommandSpec::new("sh").args(["-c", "echo partial; echo broken >&2; exit 7"]);
        let failed = output_of(&spec).await.succeeded().unwrap_err();
        assert_eq!(failed.0.ended, Ended::Exited(7));
        assert_eq!(
            failed.to_string(),
            "`sh -c \"echo partial; echo broken >&2; exit 7\"` exited 7: broken"
        );
    }

    async fn output_of(spec: &CommandSpec) -> CommandOutput {
        output(spec, Duration::from_secs(10), 1024).await.unwrap()
    }

    #[tokio::test]
    async fn a_command_killed_by_a_signal_says_so() {
        let spec = CommandSpec::new("sh").args(["-c", "echo dying >&2; kill -9 $$"]);
        let output = output_of(&spec).await;
        assert_eq!(output.ended, Ended::Killed { signal: 9 });
        assert_eq!(output.ended.exit_code(), None);
        assert!(!output.success());
        let message = output.succeeded().unwrap_err().to_string();
        assert_eq!(
            message,
            "`sh -c \"echo dying >&2; kill -9 $$\"` was killed by signal 9: dying"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_time_is_killed_and_said_to_have_timed_out() {
        let spec = CommandSpec::new("sh").args(["-c", "echo started; sleep 300"]);
        let started = std::time::Instant::now();
        let output = output(&spec, Duration::from_millis(300), 1024)
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            output.ended,
            Ended::TimedOut {
                limit: Duration::from_millis(300)
            }
        );
        // What it printed before it was killed is kept.
        assert_eq!(output.stdout, "started\n");
        assert_eq!(
            output.succeeded().unwrap_err().to_string(),
            "`sh -c \"echo started; sleep 300\"` did not finish within 300 ms"
        );
        let whole_seconds = Ended::TimedOut {
            limit: Duration::from_secs(120),
        };
        assert_eq!(whole_seconds.to_string(), "did not finish within 120 s");
    }

    #[tokio::test]
    async fn output_past_the_limit_is_dropped_and_the_output_says_so() {
        // 1,000 lines of 9 bytes on stdout, one short line on stderr at the end.
        let spec = CommandSpec::new("sh").args(["-c", "seq 10000001 10001000; echo done >&2"]);
        let output = output(&spec, Duration::from_secs(10), 100).await.unwrap();
        assert!(output.success());
        assert!(output.truncated);
        // The first lines whole, none past the limit, and no later line slipped in.
        let first: String = (10000001..=10000011).map(|n| format!("{n}\n")).collect();
        assert_eq!(output.stdout, first);
        assert_eq!(output.stderr, "done\n");
        let whole = output_of(&CommandSpec::new("seq").arg("3")).await;
        assert!(!whole.truncated);
    }
}
