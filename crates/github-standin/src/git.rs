//! Everything that runs the `git` command line: creating bare repositories, committing files with
//! plumbing commands (no work tree), resolving refs, reading commit details, and serving git over HTTP
//! through the real `git http-backend` CGI program. Commands always get an argument vector, never a
//! shell, and run isolated from the user's and the system's git configuration.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;

/// The object id git uses to say "this ref must not exist yet" (SHA-1 repositories).
const ZERO_OID: &str = "0000000000000000000000000000000000000000";

/// The identity that commits made by `commit_entries` carry.
const AUTHOR_NAME: &str = "Wharf Test";
const AUTHOR_EMAIL: &str = "test@wharf.invalid";

/// The environment every git command gets on top of the process environment minus its `GIT_*`
/// variables, so that nothing from the machine's or the test's git setup leaks in.
fn isolated_environment() -> Vec<(OsString, OsString)> {
    vec![
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
    ]
}

/// A `git` command with `--git-dir` set (when given) and an isolated environment.
fn git(git_dir: Option<&Path>) -> Command {
    let mut command = Command::new("git");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GIT_") {
            command.env_remove(&name);
        }
    }
    command.envs(isolated_environment());
    if let Some(git_dir) = git_dir {
        command.arg("--git-dir").arg(git_dir);
    }
    command
}

/// Runs a command to completion, feeding `input` to its standard input, and returns its standard
/// output. A non-zero exit is an error that includes the arguments and standard error.
fn run(mut command: Command, input: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let description = format!("{command:?}");
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {description}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().context("the child has no stdin")?;
        // Small inputs fit the pipe; larger ones are written from a thread so that a child that
        // writes output before it finishes reading cannot deadlock with us.
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child
            .wait_with_output()
            .with_context(|| format!("waiting for {description}"))?;
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the stdin writer for {description} panicked"))?
            .with_context(|| format!("writing to {description}"))?;
        return check_output(&description, output);
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {description}"))?;
    check_output(&description, output)
}

fn check_output(description: &str, output: std::process::Output) -> anyhow::Result<Vec<u8>> {
    if !output.status.success() {
        bail!(
            "{description} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

fn run_text(command: Command, input: Option<&[u8]>) -> anyhow::Result<String> {
    let output = run(command, input)?;
    Ok(String::from_utf8(output)
        .context("git printed something that is not UTF-8")?
        .trim()
        .to_string())
}

/// Creates a bare repository whose HEAD points at `default_branch`, configured so that any commit can
/// be fetched by its SHA and partial clones work, as on GitHub.
pub(crate) fn init_bare(git_dir: &Path, default_branch: &str) -> anyhow::Result<()> {
    let mut init = git(None);
    init.arg("init")
        .arg("--bare")
        .arg("--quiet")
        .arg(format!("--initial-branch={default_branch}"))
        .arg(git_dir);
    run(init, None)?;
    for (key, value) in [
        ("uploadpack.allowReachableSHA1InWant", "true"),
        ("uploadpack.allowAnySHA1InWant", "true"),
        ("uploadpack.allowFilter", "true"),
        ("http.receivepack", "true"),
    ] {
        let mut config = git(Some(git_dir));
        config.arg("config").arg(key).arg(value);
        run(config, None)?;
    }
    Ok(())
}

/// Points HEAD (the default branch) at `branch`.
pub(crate) fn set_head(git_dir: &Path, branch: &str) -> anyhow::Result<()> {
    let mut command = git(Some(git_dir));
    command
        .arg("symbolic-ref")
        .arg("HEAD")
        .arg(format!("refs/heads/{branch}"));
    run(command, None)?;
    Ok(())
}

/// Whether `branch` is a valid branch name for git.
fn check_branch_name(branch: &str) -> anyhow::Result<()> {
    let mut command = git(None);
    command
        .arg("check-ref-format")
        .arg(format!("refs/heads/{branch}"));
    if branch.starts_with('-') || run(command, None).is_err() {
        bail!("{branch:?} is not a valid branch name");
    }
    Ok(())
}

/// Checks that a file path is a plain relative path that git can store.
fn check_file_path(path: &str) -> anyhow::Result<()> {
    let valid = !path.is_empty()
        && !path.contains('\0')
        && path.split('/').all(|component| {
            !component.is_empty()
                && component != "."
                && component != ".."
                && !component.eq_ignore_ascii_case(".git")
        });
    if !valid {
        bail!("{path:?} is not a relative file path without '.', '..' or '.git' components");
    }
    Ok(())
}

/// Makes one commit on top of `branch` (or a root commit when the branch does not exist yet) that
/// adds or replaces `files`, each with its git mode (`100644`, `100755`, or `120000` for a
/// symbolic link whose contents are its target), and moves the branch to it. Returns the SHA.
pub(crate) fn commit_entries(
    git_dir: &Path,
    branch: &str,
    files: &[(&str, &str, &[u8])],
    message: &str,
) -> anyhow::Result<String> {
    check_branch_name(branch)?;
    for (path, _, _) in files {
        check_file_path(path)?;
    }
    let reference = format!("refs/heads/{branch}");
    let tip = resolve_exact(git_dir, &reference)?;

    let index_directory = tempfile::tempdir().context("creating a temporary index directory")?;
    let index_file = index_directory.path().join("index");
    let with_index = |command: &mut Command| {
        command.env("GIT_INDEX_FILE", &index_file);
    };

    if let Some(tip) = &tip {
        let mut read_tree = git(Some(git_dir));
        with_index(&mut read_tree);
        read_tree.arg("read-tree").arg(tip);
        run(read_tree, None)?;
    }

    let mut index_info = Vec::new();
    for (path, mode, contents) in files {
        let mut hash_object = git(Some(git_dir));
        hash_object.arg("hash-object").arg("-w").arg("--stdin");
        let blob = run_text(hash_object, Some(contents))?;
        index_info.extend_from_slice(format!("{mode} {blob}\t{path}").as_bytes());
        index_info.push(0);
    }
    let mut update_index = git(Some(git_dir));
    with_index(&mut update_index);
    update_index
        .arg("update-index")
        .arg("--add")
        .arg("--replace")
        .arg("-z")
        .arg("--index-info");
    run(update_index, Some(&index_info))?;

    let mut write_tree = git(Some(git_dir));
    with_index(&mut write_tree);
    write_tree.arg("write-tree");
    let tree = run_text(write_tree, None)?;

    let mut commit_tree = git(Some(git_dir));
    commit_tree
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL)
        .arg("commit-tree")
        .arg(&tree);
    if let Some(tip) = &tip {
        commit_tree.arg("-p").arg(tip);
    }
    let commit = run_text(commit_tree, Some(message.as_bytes()))?;

    let mut update_ref = git(Some(git_dir));
    update_ref
        .arg("update-ref")
        .arg(&reference)
        .arg(&commit)
        .arg(tip.as_deref().unwrap_or(ZERO_OID));
    run(update_ref, None)?;
    Ok(commit)
}

/// Resolves a full ref name such as `refs/heads/main` to a commit SHA, or None when it does not exist.
fn resolve_exact(git_dir: &Path, reference: &str) -> anyhow::Result<Option<String>> {
    let mut command = git(Some(git_dir));
    command
        .arg("rev-parse")
        .arg("--verify")
        .arg("--quiet")
        .arg("--end-of-options")
        .arg(format!("{reference}^{{commit}}"));
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("running git rev-parse")?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    ))
}

/// Resolves what GitHub accepts as a commit reference (a branch, a tag, a full or abbreviated SHA, or
/// a full ref name) to a commit SHA, or None when nothing matches. Revision syntax GitHub does not
/// accept (`main~1`, `a..b`, `HEAD@{1}`, ...) matches nothing.
pub(crate) fn resolve_commit(git_dir: &Path, reference: &str) -> anyhow::Result<Option<String>> {
    let plain = !reference.is_empty()
        && !reference.starts_with('-')
        && !reference.contains("..")
        && !reference.contains("@{")
        && reference.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '/' | '_' | '-' | '.' | '+')
        });
    if !plain {
        return Ok(None);
    }
    resolve_exact(git_dir, reference)
}

/// What the REST API reports about a commit.
#[derive(Debug, Clone)]
pub(crate) struct CommitDetails {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    pub author_date: String,
    pub committer_name: String,
    pub committer_email: String,
    pub committer_date: String,
    pub message: String,
}

/// Reads a commit's tree, parents, author, committer and message.
pub(crate) fn commit_details(git_dir: &Path, sha: &str) -> anyhow::Result<CommitDetails> {
    let mut command = git(Some(git_dir));
    command
        .arg("log")
        .arg("-1")
        .arg("--format=%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B")
        .arg("--end-of-options")
        .arg(sha);
    let output = run(command, None)?;
    let text = String::from_utf8_lossy(&output);
    let fields: Vec<&str> = text.splitn(10, '\0').collect();
    let [
        sha,
        tree,
        parents,
        author_name,
        author_email,
        author_date,
        committer_name,
        committer_email,
        committer_date,
        message,
    ] = fields.as_slice()
    else {
        bail!("unexpected output from git log for {sha}");
    };
    Ok(CommitDetails {
        sha: sha.to_string(),
        tree: tree.to_string(),
        parents: parents.split_whitespace().map(str::to_string).collect(),
        author_name: author_name.to_string(),
        author_email: author_email.to_string(),
        author_date: utc_date(author_date),
        committer_name: committer_name.to_string(),
        committer_email: committer_email.to_string(),
        committer_date: utc_date(committer_date),
        message: message.trim_end_matches('\n').to_string(),
    })
}

/// Rewrites git's strict ISO 8601 date (with an offset) in GitHub's UTC `Z` form.
fn utc_date(date: &str) -> String {
    match time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339) {
        Ok(moment) => crate::state::github_time(moment),
        Err(_) => date.to_string(),
    }
}

/// One request for `git http-backend`, as CGI meta-variables and a body.
#[derive(Debug, Clone)]
pub(crate) struct CgiRequest {
    pub method: String,
    /// `/{owner}/{repo}.git/...`, relative to the project root.
    pub path_info: String,
    pub query: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub git_protocol: Option<String>,
    pub remote_user: String,
    pub body: Vec<u8>,
}

/// What `git http-backend` answered.
#[derive(Debug, Clone)]
pub(crate) struct CgiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Runs `git http-backend` for one request and parses its CGI output.
pub(crate) async fn http_backend(
    project_root: &Path,
    request: CgiRequest,
) -> anyhow::Result<CgiResponse> {
    let mut command = tokio::process::Command::new("git");
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(isolated_environment());
    command
        .arg("http-backend")
        .env("HOME", project_root)
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", &request.remote_user)
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path_info)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_LENGTH", request.body.len().to_string());
    if let Some(content_type) = &request.content_type {
        command.env("CONTENT_TYPE", content_type);
    }
    if let Some(content_encoding) = &request.content_encoding {
        command.env("HTTP_CONTENT_ENCODING", content_encoding);
    }
    if let Some(git_protocol) = &request.git_protocol {
        command.env("GIT_PROTOCOL", git_protocol);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting git http-backend")?;
    let mut stdin = child
        .stdin
        .take()
        .context("git http-backend has no stdin")?;
    let body = request.body;
    // The body is written concurrently with reading the output, because http-backend may start
    // answering before it has read everything.
    let writer = tokio::spawn(async move {
        let result = stdin.write_all(&body).await;
        drop(stdin);
        result
    });
    let output = child
        .wait_with_output()
        .await
        .context("waiting for git http-backend")?;
    match writer.await {
        Ok(Ok(())) => {}
        // A backend that refuses a request may exit without reading its body; its answer still counts.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Ok(Err(error)) => return Err(error).context("writing the body to git http-backend"),
        Err(error) => return Err(error).context("the body writer for git http-backend failed"),
    }
    if !output.stderr.is_empty() {
        tracing::debug!(
            stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            "git http-backend wrote to stderr"
        );
    }
    parse_cgi_output(&output.stdout)
}

/// Splits CGI output into a status, headers and body. The status comes from a `Status:` header and is
/// 200 without one.
pub(crate) fn parse_cgi_output(output: &[u8]) -> anyhow::Result<CgiResponse> {
    let (header_end, separator_length) =
        find_header_end(output).context("git http-backend printed no header block")?;
    let header_text = String::from_utf8_lossy(&output[..header_end]);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in header_text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!("git http-backend printed a malformed header line {line:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .with_context(|| {
                    format!("git http-backend printed a malformed status {value:?}")
                })?;
        } else {
            headers.push((name.trim().to_string(), value.to_string()));
        }
    }
    Ok(CgiResponse {
        status,
        headers,
        body: output[header_end + separator_length..].to_vec(),
    })
}

fn find_header_end(output: &[u8]) -> Option<(usize, usize)> {
    let crlf = output.windows(4).position(|window| window == b"\r\n\r\n");
    let lf = output.windows(2).position(|window| window == b"\n\n");
    match (crlf, lf) {
        (Some(crlf), Some(lf)) if lf < crlf => Some((lf, 2)),
        (Some(crlf), _) => Some((crlf, 4)),
        (None, Some(lf)) => Some((lf, 2)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_is_split_into_status_headers_and_body() {
        let parsed = parse_cgi_output(
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nRepository not found.",
        )
        .unwrap();
        assert_eq!(parsed.status, 404);
        assert_eq!(
            parsed.headers,
            vec![("Content-Type".to_string(), "text/plain".to_string())]
        );
        assert_eq!(parsed.body, b"Repository not found.");

        let parsed = parse_cgi_output(b"Expires: never\nContent-Type: x\n\n\x00\x01").unwrap();
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.headers.len(), 2);
        assert_eq!(parsed.body, b"\x00\x01");
        assert!(parse_cgi_output(b"no header end").is_err());
    }

    #[test]
    fn file_paths_must_stay_inside_the_tree() {
        assert!(check_file_path("src/main.rs").is_ok());
        assert!(check_file_path("deploy.sh").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "./a", ".git/config", "a//b"] {
            assert!(check_file_path(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn commits_stack_on_the_branch_and_resolve() {
        let root = tempfile::tempdir().unwrap();
        let git_dir = root.path().join("repo.git");
        init_bare(&git_dir, "main").unwrap();
        let first =
            commit_entries(&git_dir, "main", &[("a/b.txt", "100644", b"one")], "first").unwrap();
        let second = commit_entries(
            &git_dir,
            "main",
            &[
                ("run.sh", "100755", b"#!/bin/sh\n"),
                ("link", "120000", b"a/b.txt"),
            ],
            "second",
        )
        .unwrap();
        assert_eq!(first.len(), 40);
        assert_ne!(first, second);
        assert_eq!(
            resolve_commit(&git_dir, "main").unwrap(),
            Some(second.clone())
        );
        assert_eq!(
            resolve_commit(&git_dir, &first).unwrap(),
            Some(first.clone())
        );
        assert_eq!(resolve_commit(&git_dir, "main~1").unwrap(), None);
        assert_eq!(resolve_commit(&git_dir, "nope").unwrap(), None);
        let details = commit_details(&git_dir, &second).unwrap();
        assert_eq!(details.parents, vec![first.clone()]);
        assert_eq!(details.message, "second");
        assert!(
            details.author_date.ends_with('Z'),
            "{}",
            details.author_date
        );

        let mut list = git(Some(&git_dir));
        list.arg("ls-tree").arg("-r").arg(&second);
        let listing = run_text(list, None).unwrap();
        assert!(listing.contains("100644 blob"), "{listing}");
        assert!(listing.contains("\ta/b.txt"), "{listing}");
        assert!(listing.contains("100755 blob"), "{listing}");
        assert!(listing.contains("\trun.sh"), "{listing}");
        assert!(listing.contains("120000 blob"), "{listing}");
        assert!(commit_entries(&git_dir, "bad..name", &[("x", "100644", b"y")], "m").is_err());
    }
}
