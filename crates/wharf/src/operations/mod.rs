//! What an operator runs on a host beside the server and the agent: `backup` and `restore` of
//! the SQLite database, `doctor`, which checks that this host can run Wharf, and `completions`
//! for shells. Unlike the CLI verbs these work on the host itself, not through the REST API.
//!
//! As in the CLI, what a verb prints is made by pure functions in its module, unit-tested
//! without a host; the verbs around them only gather what those functions read.

mod backup;
mod completions;
mod doctor;

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::StateArgs;

/// The operator's verbs.
#[derive(Subcommand)]
pub enum OperationsCommand {
    /// Write a consistent copy of the SQLite database to FILE, while the server runs. The secret
    /// key is not in it: keep the key apart.
    Backup {
        /// The file to write; it must not exist.
        file: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Restore a backup made by `wharf backup` into an empty data directory.
    Restore {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check that this host can run Wharf: one line per check, saying what to fix.
    Doctor(Box<doctor::DoctorArgs>),
    /// Print the completion script of a shell on standard output.
    Completions {
        /// bash, zsh or fish (also elvish and powershell).
        shell: clap_complete::Shell,
    },
}

/// Runs one operator verb; `command_line` is the whole command line, for completions.
pub async fn run(command: OperationsCommand, command_line: clap::Command) -> anyhow::Result<()> {
    match command {
        OperationsCommand::Backup { file, state } => backup::backup(&file, &state).await,
        OperationsCommand::Restore { file, state } => backup::restore(&file, &state).await,
        OperationsCommand::Doctor(args) => doctor::run(&args).await,
        OperationsCommand::Completions { shell } => {
            completions::print(shell, command_line);
            Ok(())
        }
    }
}
