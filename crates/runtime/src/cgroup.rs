//! Killing everything a build started, including what escaped its process group.
//!
//! `podman build` runs each `RUN` step in a container of its own, outside the build's process
//! group, so killing the group leaves those steps running. Builds therefore run with
//! `--cgroup-parent /wharf-build-<id>-<random>`, and stopping a build kills every process in that
//! cgroup (in every hierarchy, cgroup v1 or v2) and removes it. The random part keeps builds of
//! different agents (or servers) on one host apart; the agent writes the name into the build's
//! work directory, so a restarted agent finds what its dead self left running.

use std::path::{Path, PathBuf};
use std::time::Duration;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A fresh cgroup name for a build's containers.
pub fn build_cgroup(build_id: i64) -> String {
    let mut random = [0u8; 8];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut random))
        .is_ok();
    let nonce = if filled {
        u64::from_le_bytes(random)
    } else {
        // SystemTime is a fallback only; /dev/urandom is always there on Linux.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id())
    };
    format!("wharf-build-{build_id}-{nonce:016x}")
}

/// True for names [`build_cgroup`] makes: nothing else is ever killed by name.
pub fn is_build_cgroup(name: &str) -> bool {
    name.strip_prefix("wharf-build-").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    })
}

/// The directories of cgroup `name` in every mounted hierarchy that has it.
fn directories(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let direct = root.join(name);
    if direct.is_dir() {
        found.push(direct);
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let candidate = entry.path().join(name);
            if candidate.is_dir() {
                found.push(candidate);
            }
        }
    }
    found
}

/// Every directory at or below `dir`, deepest first.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                all.extend(subtree(&entry.path()));
            }
        }
    }
    all.push(dir.to_path_buf());
    all
}

fn processes(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| {
            text.lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in cgroup `name` and removes the cgroup; waits up to `deadline` for the
/// processes to go. Returns how many processes it killed.
pub async fn kill_and_remove(name: &str, deadline: Duration) -> usize {
    kill_and_remove_under(Path::new(CGROUP_ROOT), name, deadline).await
}

async fn kill_and_remove_under(root: &Path, name: &str, deadline: Duration) -> usize {
    let dirs: Vec<PathBuf> = directories(root, name)
        .iter()
        .flat_map(|dir| subtree(dir))
        .collect();
    if dirs.is_empty() {
        return 0;
    }
    let mut killed = std::collections::BTreeSet::new();
    let started = tokio::time::Instant::now();
    loop {
        let mut alive = 0;
        for dir in &dirs {
            for pid in processes(dir) {
                alive += 1;
                if pid > 1 {
                    // SAFETY: kill only sends a signal to a process in the build's own cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                    killed.insert(pid);
                }
            }
        }
        if alive == 0 || started.elapsed() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for dir in &dirs {
        let _ = std::fs::remove_dir(dir);
    }
    if !killed.is_empty() {
        tracing::info!(
            cgroup = name,
            processes = killed.len(),
            "killed what a build left running"
        );
    }
    killed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_cgroup_names_are_unique_and_recognised() {
        let first = build_cgroup(7);
        let second = build_cgroup(7);
        assert_ne!(first, second);
        assert!(first.starts_with("wharf-build-7-"));
        assert!(is_build_cgroup(&first));
        for other in [
            "",
            "wharf-build-",
            "system.slice",
            "wharf-build-1/../x",
            "user-1000",
        ] {
            assert!(!is_build_cgroup(other), "{other}");
        }
    }

    #[test]
    fn finds_the_cgroup_in_each_hierarchy_and_lists_subtrees_deepest_first() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("pids/wharf-build-7/inner")).unwrap();
        std::fs::create_dir_all(root.path().join("memory/wharf-build-7")).unwrap();
        std::fs::create_dir_all(root.path().join("memory/wharf-build-70")).unwrap();
        let mut found = directories(root.path(), "wharf-build-7");
        found.sort();
        assert_eq!(
            found,
            vec![
                root.path().join("memory/wharf-build-7"),
                root.path().join("pids/wharf-build-7")
            ]
        );
        let tree = subtree(&root.path().join("pids/wharf-build-7"));
        assert_eq!(tree[0], root.path().join("pids/wharf-build-7/inner"));
        assert_eq!(tree[1], root.path().join("pids/wharf-build-7"));
    }
}
