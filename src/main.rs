//! The `iac` command: parse the command line, run one command, report errors for people.

use std::process::ExitCode;

use clap::Parser;

use iac::cli::{Cli, Command, FlowsArgs, RenderArgs, SimulateArgs};
use iac::{Error, load_site, output, render};

/// Exit codes: 0 success, 1 failure or drift, 2 invalid inventory, 3 a deploy rolled back;
/// `query` uses 3 (server unreachable, timeout, TLS), 4 (authentication), 5 (database or
/// table missing).
fn main() -> ExitCode {
    iac::cluster::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => render_command(&args),
        Command::Flows(args) => flows_command(&args),
        Command::Deploy(args) => iac::deploy::run(&args),
        Command::Simulate(args) => simulate_command(&args),
        Command::Verify(args) => iac::cluster::command::verify(&args),
        Command::Apply(args) => iac::cluster::command::apply(&args),
        Command::Pipeline(iac::cli::PipelineCommand::Status(args)) => iac::cluster::command::pipeline_status(&args),
        Command::Query(args) => iac::query::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Inventory(_) | Error::UnknownHost { .. } => ExitCode::from(2),
                Error::Query(q) => ExitCode::from(q.exit_code()),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn render_command(args: &RenderArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let tree = render::render(&site)?;
    if args.check {
        return Ok(match output::diff_tree(&args.out, &tree)? {
            None => {
                println!("{} is up to date ({} files)", args.out.display(), tree.len());
                ExitCode::SUCCESS
            }
            Some(diff) => {
                print!("{diff}");
                eprintln!("{} is stale: run `iac render`", args.out.display());
                ExitCode::FAILURE
            }
        });
    }
    let outcome = output::write_tree(&args.out, &tree, args.force)?;
    if outcome.stale_removed > 0 {
        eprintln!("removed {} staging directories left by an interrupted render", outcome.stale_removed);
    }
    if outcome.written {
        let kept = outcome.files - outcome.new_files;
        println!("wrote {} of {} files to {} ({kept} unchanged, kept as they were)", outcome.new_files, outcome.files, args.out.display());
    } else {
        println!("{} is up to date ({} files), nothing written", args.out.display(), outcome.files);
    }
    Ok(ExitCode::SUCCESS)
}

fn flows_command(args: &FlowsArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    if let Some(name) = args.host.as_deref().filter(|h| site.host(h).is_none()) {
        let known = site.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Error::UnknownHost { name: name.to_string(), known });
    }
    let flows = render::flows(&site);
    print!("{}", iac::policy::table(&flows, args.host.as_deref()));
    Ok(ExitCode::SUCCESS)
}

fn simulate_command(args: &SimulateArgs) -> Result<ExitCode, Error> {
    iac::simulate::run(&iac::simulate::Options {
        inventory: args.inventory.inventory.clone(),
        out: args.out.clone(),
        rulesets: args.ruleset.clone(),
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        nix_eval: !args.skip_nix_eval,
    })
}
