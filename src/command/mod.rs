//! The command layer: the command line (clap), one file per subcommand, and the one place
//! that prints and turns errors into messages and exit codes (with `main.rs`).
//!
//! Each `<name>.rs` owns its clap arguments, turns them into the library's options, calls the
//! library and prints what it returns; the library (`iac::*`) knows nothing of the command
//! line and prints nothing: it reports progress through a `Reporter`, which
//! [`terminal::Terminal`] implements. To add a subcommand: write `src/command/<name>.rs`
//! with its `Args` and `run(&Args) -> Result<ExitCode, Error>`, declare it below, and add one
//! variant to [`Command`] and one arm to [`run`].

mod apply;
mod common;
mod deploy;
mod error;
mod flows;
mod pipeline;
mod query;
mod render;
mod simulate;
mod terminal;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::Error;

#[derive(Debug, Parser)]
#[command(name = "iac", version, about = "One host inventory → every configuration a NixOS + k3s estate needs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the inventory and write every generated file (atomically).
    Render(render::RenderArgs),
    /// Print every flow the estate admits: host, chain, source, destination, ports and why.
    Flows(flows::FlowsArgs),
    /// Build and switch NixOS hosts, in parallel, with a rollback guard against lock-out.
    Deploy(deploy::DeployArgs),
    /// Prove the rendered firewalls in Linux network namespaces: real traffic for every
    /// declared flow (must pass) and from an untrusted host (must be refused), then a reload.
    Simulate(simulate::SimulateArgs),
    /// Check the cluster's health: nodes, system pods, DNS and API from pods, pod-to-pod.
    Verify(verify::VerifyArgs),
    /// Server-side apply generated/k8s in dependency order, register the connector, run the producer.
    Apply(apply::ApplyArgs),
    /// The data pipeline on the cluster.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Read the pipeline's table in PostgreSQL: messages, count, schema.
    Query(query::QueryArgs),
}

/// Run one command: its exit code, or the error `main` reports.
pub fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Render(args) => render::run(&args),
        Command::Flows(args) => flows::run(&args),
        Command::Deploy(args) => deploy::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Pipeline(command) => pipeline::run(&command),
        Command::Query(args) => query::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks (unique ids, valid defaults, groups that name real args).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
