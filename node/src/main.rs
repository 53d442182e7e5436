//! `cairn`: the node's command line. Today: `init`, `id` and `config`; the daemon and the client
//! commands arrive with the rest of the node issue.

// The CLI's output is stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_node::init::{init, load_config, load_identity};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "A hardened peer-to-peer content-addressed storage node"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a data directory: config, identity key, admin and read-only tokens (mode 0600).
    Init {
        /// The node's data directory [default: CAIRN_DATA_DIR, else /var/lib/cairn]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Replace existing files (a new identity means a new peer ID).
        #[arg(long)]
        force: bool,
    },
    /// Print the node's peer ID and configured listen addresses (no daemon needed).
    Id {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Check a config file (with CAIRN_… overrides applied); exit non-zero naming the bad key.
    Validate { file: Option<PathBuf> },
    /// Print the effective configuration, every key included.
    Show { file: Option<PathBuf> },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { data_dir, force } => {
            let dir = match data_dir {
                Some(d) => d,
                None => load_config(None, None)?.data_dir().to_owned(),
            };
            let done = init(&dir, force)?;
            if cli.json {
                let out = json!({
                    "peer_id": done.peer_id.to_string(),
                    "data_dir": done.data_dir,
                    "config": done.config_file,
                });
                println!("{out}");
            } else {
                println!("{}", done.peer_id);
                eprintln!(
                    "initialised {} (config: {})",
                    done.data_dir.display(),
                    done.config_file.display()
                );
            }
        }
        Command::Id { data_dir, config } => {
            let config = load_config(data_dir.as_deref(), config.as_deref())?;
            let identity = load_identity(&config)?;
            let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
            if cli.json {
                let out = json!({ "peer_id": identity.peer_id().to_string(), "addrs": listen });
                println!("{out}");
            } else {
                println!("{}", identity.peer_id());
                for addr in listen {
                    println!("{addr}");
                }
            }
        }
        Command::Config { action } => match action {
            ConfigAction::Validate { file } => {
                let config = cairn_config::Config::load(file.as_deref())?;
                config.validate()?;
                if cli.json {
                    println!("{}", json!({ "valid": true }));
                } else {
                    eprintln!("config is valid");
                }
            }
            ConfigAction::Show { file } => {
                let config = cairn_config::Config::load(file.as_deref())?;
                if cli.json {
                    let out = serde_json::to_string(&config).context("rendering the config")?;
                    println!("{out}");
                } else {
                    print!("{}", config.to_toml().context("rendering the config")?);
                }
            }
        },
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
