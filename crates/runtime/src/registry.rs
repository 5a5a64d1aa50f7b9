//! A registry on this machine: Debian's `docker-registry` (Distribution 2.8), listening on
//! 127.0.0.1 with its data in a directory of ours. `wharf up` runs one when no registry is
//! configured; the tests run one each.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// A running local registry; dropping it stops the registry.
pub struct LocalRegistry {
    /// `127.0.0.1:PORT`: push to `{address}/{project}/{service}:{tag}` over plain HTTP.
    pub address: String,
    child: tokio::process::Child,
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("docker-registry is not installed (Debian package docker-registry)")]
    NotInstalled,
    #[error("docker-registry did not start: {0}")]
    Failed(String),
}

impl LocalRegistry {
    /// Starts `docker-registry serve` with its storage in `data_dir` on `listen`
    /// (`127.0.0.1:0` picks a free port) and waits until it listens.
    pub async fn start(data_dir: &Path, listen: &str) -> Result<LocalRegistry, RegistryError> {
        LocalRegistry::start_with_auth(data_dir, listen, None).await
    }

    /// Like [`LocalRegistry::start`], asking for the users in an htpasswd file (bcrypt) when given.
    pub async fn start_with_auth(
        data_dir: &Path,
        listen: &str,
        htpasswd: Option<&Path>,
    ) -> Result<LocalRegistry, RegistryError> {
        LocalRegistry::start_configured(data_dir, listen, htpasswd, true).await
    }

    /// Like [`LocalRegistry::start`], with deletes disabled (Distribution's own default): the
    /// registry answers a `DELETE` of a manifest 405 `UNSUPPORTED`, as a registry that keeps
    /// every image does.
    pub async fn start_without_deletes(
        data_dir: &Path,
        listen: &str,
    ) -> Result<LocalRegistry, RegistryError> {
        LocalRegistry::start_configured(data_dir, listen, None, false).await
    }

    async fn start_configured(
        data_dir: &Path,
        listen: &str,
        htpasswd: Option<&Path>,
        delete_enabled: bool,
    ) -> Result<LocalRegistry, RegistryError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| RegistryError::Failed(error.to_string()))?;
        let config = data_dir.join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {delete_enabled}\nhttp:\n  addr: {listen}\n",
            data_dir.join("data").display()
        );
        if let Some(htpasswd) = htpasswd {
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wharf\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).map_err(|error| RegistryError::Failed(error.to_string()))?;
        let mut child = tokio::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => RegistryError::NotInstalled,
                _ => RegistryError::Failed(error.to_string()),
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| RegistryError::Failed("no stderr".to_owned()))?;
        let mut lines = BufReader::new(stderr).lines();
        let address = tokio::time::timeout(Duration::from_secs(20), async {
            let mut last = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return Ok(rest.split(['"', ' ']).next().unwrap_or_default().to_owned());
                }
                last = line;
            }
            Err(RegistryError::Failed(last))
        })
        .await
        .map_err(|_| RegistryError::Failed("it did not listen within 20 s".to_owned()))??;
        // Keep reading its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(LocalRegistry { address, child })
    }

    /// Waits until the registry exits (it does not, unless it fails).
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
}
