//! `wharf env`: set, list and unset a service's variables, and its previews'.

use wharf_client::ApiClient;
use wharf_wire::{ListEnv, SecretText, SetEnv, UnsetEnv, UnsetPreviewEnv, VariableMembers};

use super::args::EnvCommand;
use super::input;
use super::render::{self, emit};

/// Runs one `wharf env` verb.
pub(super) async fn run(client: &ApiClient, command: EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Set {
            service,
            assignment,
            secret,
            build,
            members,
            preview,
            json,
        } => {
            // `NAME` alone takes its value from standard input, so a secret need not appear on
            // the command line.
            let (name, value) = match assignment.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (assignment.clone(), input::all("the value")?),
            };
            let members = VariableMembers::from_flags(&members).map_err(anyhow::Error::msg)?;
            let variable = client
                .send(&SetEnv {
                    service: service.clone(),
                    name,
                    value: SecretText::new(value),
                    secret,
                    build,
                    members,
                    preview,
                })
                .await?;
            emit(&render::one(&variable, json, |variable| {
                render::variable_set(&service, variable)
            })?)
        }
        EnvCommand::List { service, json } => {
            let variables = client.send(&ListEnv { service }).await?;
            emit(&render::list(&variables, json, render::VARIABLES)?)
        }
        EnvCommand::Unset {
            service,
            name,
            preview,
        } => {
            let (service_name, variable) = (service.clone(), name.clone());
            if preview {
                client.send(&UnsetPreviewEnv { service, name }).await?;
            } else {
                client.send(&UnsetEnv { service, name }).await?;
            }
            emit(&render::variable_removed(&service_name, &variable, preview))
        }
    }
}
