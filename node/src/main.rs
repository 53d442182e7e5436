//! `cairn`: the node's command line. The daemon and the client commands arrive with the node
//! issue; today it validates and shows configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "A hardened peer-to-peer content-addressed storage node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        Command::Config { action } => match action {
            ConfigAction::Validate { file } => {
                let config = cairn_config::Config::load(file.as_deref())?;
                config.validate()?;
                eprintln!("config is valid");
            }
            ConfigAction::Show { file } => {
                let config = cairn_config::Config::load(file.as_deref())?;
                let text = config.to_toml().context("rendering the config")?;
                #[allow(clippy::print_stdout)] // printing the config is the command's output
                {
                    print!("{text}");
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
