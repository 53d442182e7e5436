//! `cairn daemon`: the node in the foreground until SIGTERM or Ctrl-C, then stopped in order. A
//! task of the node that dies on its own stops the daemon with a non-zero exit and a log line
//! naming it, so systemd (Restart=on-failure) starts it afresh.

use std::path::PathBuf;

use anyhow::Context;
use cairn_config::{LogFormat, ValidConfig};
use cairn_node::Node;
use cairn_node::init::{CONFIG_FILE, init, load_config};
use tokio::signal::unix::{SignalKind, signal};

/// `cairn daemon [--data-dir DIR] [--config FILE] [--init]`.
pub(crate) async fn run(
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    init_first: bool,
) -> anyhow::Result<()> {
    if let Some(dir) = data_dir.as_deref().filter(|_| init_first)
        && !dir.join(CONFIG_FILE).exists()
    {
        let done = init(dir, false)?;
        eprintln!(
            "initialised {} as peer {}",
            done.data_dir.display(),
            done.peer_id
        );
    }
    let config = load_config(data_dir.as_deref(), config.as_deref())?;
    init_logging(&config);
    serve(config).await
}

fn init_logging(config: &ValidConfig) {
    let filter = tracing_subscriber::EnvFilter::new(&config.raw().log.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests running several daemons in one process) keeps the first; fine.
    let _ = match config.raw().log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the node until a signal, or until one of its tasks dies; then stops it in order.
async fn serve(config: ValidConfig) -> anyhow::Result<()> {
    // The handlers go in before the node starts, and so before READY=1: a SIGTERM sent the
    // moment systemd (or a test) sees the node ready would otherwise meet the default action and
    // kill the process without an orderly stop.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let node = Node::spawn(config).await?;
    // Under systemd (Type=notify) this is when the unit becomes active; elsewhere a no-op.
    tell_systemd(&[sd_notify::NotifyState::Ready]);
    let failure = loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                break None;
            }
            _ = interrupt.recv() => {
                tracing::info!("interrupt: stopping");
                break None;
            }
            // SIGHUP: token files replaced by hand take effect (a bad file keeps the old ones).
            _ = hangup.recv() => {
                if let Err(e) = node.reload_tokens() {
                    tracing::error!(error = %e, "SIGHUP: tokens not reloaded; the old ones stay");
                }
            }
            failure = node.failed() => {
                tracing::error!(task = failure.task, reason = %failure.reason, "stopping: a task of the node died");
                break Some(failure);
            }
        }
    };
    tell_systemd(&[sd_notify::NotifyState::Stopping]);
    node.shutdown();
    node.join().await?;
    match failure {
        None => Ok(()),
        Some(failure) => Err(anyhow::anyhow!(failure)),
    }
}

fn tell_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
