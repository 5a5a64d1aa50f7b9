//! `wharf-bench`: Wharf's benchmarks on loopback.
//!
//! - `intake`: webhook intake throughput and latency of Wharf next to adnanh/webhook, plus a
//!   durability check (SIGKILL under load, restart, every accepted delivery must be stored).
//! - `claim`: push accepted to build claimed, with an idle agent long-polling.
//! - `build`: build claimed to image pushed, against the same steps as a plain script, and a
//!   second build of an unchanged service against its first (the layer cache).
//! - `deploy`: failed requests through the edge while versions change (Wharf's blue-green
//!   against a stop-then-start script), the way back from an unhealthy version, and push to
//!   live against the raw shell pipeline.
//! - `notify`: an event's message reaching a webhook sink, and a burst of events to a sink that
//!   fails half the time, none lost.
//! - `footprint`: resident memory of the server idle with many services and under a steady
//!   intake, and of an idle agent.
//! - `dashboard`: the dashboard's pages with 1,000 services and 100,000 builds in the store, and
//!   100 viewers of a live log by server-sent events against polling every 2 s.
//! - `settings`: what a setting (`WHARF_SQLITE_SYNCHRONOUS=full`, say) or another build of Wharf
//!   costs intake, in interleaved rounds against a baseline.
//!
//! All start the real `wharf server` binary as a child process on a temporary SQLite data
//! directory and write a Markdown report. See bench/README.md.

// The GitHub payload is one large `json!` literal.
#![recursion_limit = "256"]

mod build;
mod claim;
mod dashboard;
mod deploy;
mod edge_load;
mod footprint;
mod github_scene;
mod intake;
mod load;
mod notify;
mod payload;
mod procs;
mod report;
mod settings;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wharf-bench", about = "Wharf's benchmarks on loopback")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Webhook intake: Wharf and adnanh/webhook side by side, and Wharf's durability.
    Intake(intake::Args),
    /// Push accepted to claimed latency with an idle agent.
    Claim(claim::Args),
    /// Claimed to pushed, against the same steps as a plain script; the layer cache.
    Build(build::Args),
    /// Failed requests during deploys, rollback, push to live, against plain scripts.
    Deploy(deploy::Args),
    /// What a setting, or another build of Wharf, costs intake: interleaved rounds.
    Settings(settings::Args),
    /// Event to message at a webhook sink; a burst to a sink that fails half the time.
    Notify(notify::Args),
    /// Resident memory: the server idle with many services and under intake, an idle agent.
    Footprint(footprint::Args),
    /// Dashboard pages with a full store; a live log's viewers by SSE against polling.
    Dashboard(dashboard::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Intake(args) => intake::run(args).await,
        Command::Claim(args) => claim::run(args).await,
        Command::Build(args) => build::run(args).await,
        Command::Deploy(args) => deploy::run(args).await,
        Command::Settings(args) => settings::run(args).await,
        Command::Notify(args) => notify::run(args).await,
        Command::Footprint(args) => footprint::run(args).await,
        Command::Dashboard(args) => dashboard::run(args).await,
    }
}
