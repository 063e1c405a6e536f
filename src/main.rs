//! The `iac` command: parse the command line, run one command (`command`), report errors for
//! people. The command layer lives in this binary, not in the library: nothing in `iac::*`
//! can see clap or print.

mod command;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 success, 1 failure or drift, 2 invalid inventory, 3 a deploy rolled back;
/// `query` uses 3 (server unreachable, timeout, TLS), 4 (authentication), 5 (database or
/// table missing).
fn main() -> ExitCode {
    iac::cluster::install_crypto_provider();
    let cli = command::Cli::parse();
    match command::run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

#[allow(clippy::print_stderr, reason = "main reports the error that ends the command")]
fn report(e: &command::Error) {
    eprintln!("error: {e}");
}
