//! `iac secrets`: create, set, show, rekey and check the estate's encrypted secrets
//! (`iac::secrets`; docs/secrets.md). Values are read from stdin (`set`) and written to
//! stdout (`show`) only, never taken from or put on a command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use iac::load_site;
use iac::reporter::Reporter;
use iac::secrets::{self, Identity, Store};

use super::Error;
use super::common::{DEFAULT_INVENTORY, IdentityArg};
use super::terminal::{TERMINAL, out_bytes};

#[derive(Debug, clap::Args)]
pub struct SecretsArgs {
    /// The inventory file.
    #[arg(long, default_value = DEFAULT_INVENTORY, env = "IAC_INVENTORY", global = true)]
    pub inventory: PathBuf,
    /// The directory of the encrypted secrets (secrets/NAME.age); `--secrets-dir` as in apply,
    /// query, drift and pipeline status.
    #[arg(long, visible_alias = "secrets-dir", default_value = secrets::DEFAULT_DIR, global = true)]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: SecretsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Generate every missing secret (random, of its kind); existing files stay as they are.
    Init,
    /// Encrypt the value read from stdin (to its end, bytes as they are) as secret NAME.
    Set { name: String },
    /// Decrypt secret NAME to stdout.
    Show {
        name: String,
        #[command(flatten)]
        identity: IdentityArg,
    },
    /// Re-encrypt the secrets whose recipients changed (a host key or an admin added or removed).
    Rekey {
        /// Re-encrypt every secret, also those already encrypted to their recipients.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        identity: IdentityArg,
    },
    /// Say which files are missing or encrypted to other recipients than the inventory gives
    /// them (exit 1 then). Needs no identity.
    Check,
}

pub fn run(args: &SecretsArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory)?;
    let store = Store::new(&site, &args.dir);
    match &args.command {
        SecretsCommand::Init => {
            let pending = store.init(&TERMINAL)?;
            Ok(if pending.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        SecretsCommand::Set { name } => {
            let mut value = Vec::new();
            std::io::stdin().read_to_end(&mut value).map_err(Error::Stdin)?;
            let path = store.write(name, &value)?;
            TERMINAL.result(&format!("wrote {} ({} bytes, encrypted)", path.display(), value.len()));
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Show { name, identity } => {
            let identity = Identity::load(identity.identity.as_deref())?;
            let value = store.value(name, &identity)?;
            out_bytes(&value).map_err(Error::Stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Rekey { all, identity } => {
            let identity = Identity::load(identity.identity.as_deref())?;
            let n = store.rekey(&identity, *all, &TERMINAL)?;
            TERMINAL.result(&format!("{n} file(s) rewritten"));
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Check => {
            let statuses = store.check();
            for s in &statuses {
                TERMINAL.result(&s.line());
            }
            let bad = statuses.iter().filter(|s| !s.ok()).count();
            TERMINAL.result(&format!("{} secrets: {} ok, {bad} not", statuses.len(), statuses.len() - bad));
            Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
