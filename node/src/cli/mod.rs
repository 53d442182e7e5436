//! The `cairn` command line: the daemon and its client. `args` is its shape, `endpoint` how a
//! client command reaches the daemon, `output` the `--json` contract, `transfer` file uploads and
//! downloads; the rest hold one command family each.

pub(crate) mod args;
mod block;
mod car;
mod endpoint;
mod files;
mod operator;
pub(crate) mod output;
mod peers;
mod pin;
mod repo;
mod setup;
mod transfer;

use args::{Cli, Command};

/// Runs one command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init {
            data_dir,
            force,
            if_missing,
        } => setup::init(json, data_dir, force, if_missing),
        Command::InitCluster {
            hosts,
            out,
            p2p_port,
            admin_listen,
            replication,
            if_missing,
            owner,
        } => setup::init_cluster(
            json,
            cairn_node::cluster_init::ClusterLayout {
                hosts,
                p2p_port,
                admin_listen,
                replication_factor: replication,
                owner,
            },
            &out,
            if_missing,
        ),
        Command::EncryptKey {
            passphrase_file,
            data_dir,
            config,
        } => setup::encrypt_key(json, &passphrase_file, data_dir, config),
        Command::Id { data_dir, config } => setup::id(json, data_dir, config),
        Command::RotateToken { readonly, api } => setup::rotate_token(json, readonly, &api).await,
        Command::Health { api } => setup::health(json, &api).await,
        Command::Config { action } => setup::config(json, action),
        Command::Daemon {
            data_dir,
            config,
            init,
        } => crate::daemon::run(data_dir, config, init).await,
        Command::Add {
            paths,
            cid_version,
            encrypt,
            replicas,
            api,
        } => files::add(json, paths, cid_version, encrypt, replicas, &api).await,
        Command::Cat { cid, output, api } => files::cat(cid, output, &api).await,
        Command::Get { cid, output, api } => files::get(json, cid, output, &api).await,
        Command::Status { api } => repo::status(json, &api).await,
        Command::Pin { action } => pin::run(json, action).await,
        Command::Block { action } => block::run(json, action).await,
        Command::Repo { action } => repo::run(json, action).await,
        Command::Car { action } => car::run(json, action).await,
        Command::Peers { action } => peers::run(json, action).await,
        Command::OperatorKey { action } => operator::run(json, action),
    }
}
