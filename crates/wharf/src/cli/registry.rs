//! `wharf registry-login`: the registry login that one GitHub App installation's builds push
//! with.

use anyhow::Context;
use wharf_client::ApiClient;
use wharf_wire::{SecretText, SetRegistryLogin};

use super::render::{self, emit};

/// Sets the login of `installation`; the password comes from standard input, so it never
/// shows in the process list.
pub(super) async fn login(
    client: &ApiClient,
    installation: i64,
    username: String,
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let set = client
        .send(&SetRegistryLogin {
            installation_id: installation,
            username,
            password: SecretText::new(password),
        })
        .await?;
    emit(&render::registry_login_set(&set))
}
