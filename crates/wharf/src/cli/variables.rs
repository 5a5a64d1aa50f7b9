//! `wharf env`: set, list and unset a service's variables.

use anyhow::Context;
use wharf_client::ApiClient;
use wharf_wire::{ListEnv, SecretText, SetEnv, UnsetEnv};

use super::args::EnvCommand;
use super::render::{emit, env_table, print_list, print_one};

/// Runs one `wharf env` verb.
pub(super) async fn run(client: &ApiClient, command: EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Set {
            service,
            assignment,
            secret,
            build,
            json,
        } => {
            let (name, value) = assignment.split_once('=').context("expected NAME=VALUE")?;
            let variable = client
                .send(&SetEnv {
                    service: service.clone(),
                    name: name.to_owned(),
                    value: SecretText::new(value),
                    secret,
                    build,
                })
                .await?;
            print_one(&variable, json, |variable| {
                format!(
                    "Set {} on {service}{}\n",
                    variable.name,
                    if variable.secret { " (secret)" } else { "" }
                )
            })
        }
        EnvCommand::List { service, json } => {
            let variables = client.send(&ListEnv { service }).await?;
            print_list(&variables, json, env_table)
        }
        EnvCommand::Unset { service, name } => {
            client
                .send(&UnsetEnv {
                    service: service.clone(),
                    name: name.clone(),
                })
                .await?;
            emit(&format!("Removed {name} from {service}\n"))
        }
    }
}
