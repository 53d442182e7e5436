//! Supervision: the node owns every task it starts (the mini-redis and Forest shape).
//!
//! Tasks run in three stages, stopped in this order by [`Supervisor::stop`]: the admin API (its
//! calls in flight finish, within a deadline), the workers (long-lived services, the jobs they
//! start, and every blocking store call), then the swarm. Each stage has a [`TaskTracker`] and a
//! child of one root [`CancellationToken`], so a start that fails half-way cancels the root and
//! waits for everything it had started before it returns: no task outlives its node, and none
//! keeps RocksDB open.
//!
//! A *service* is meant to run until its stage stops. One that ends before that (it returned,
//! failed or panicked) is reported once through [`Supervisor::failure`], naming it: the daemon
//! then stops with a non-zero exit, and systemd restarts it. A *job* (a replica being fetched, a
//! repair, an audit answered) may end whenever it likes; it is cancelled when the workers stop.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};

/// Why a service ended before it was asked to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    pub task: &'static str,
    pub reason: String,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} task stopped unexpectedly: {}",
            self.task, self.reason
        )
    }
}

/// One stage's tasks and the token that stops them.
#[derive(Clone, Debug)]
struct Stage {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Stage {
    fn new(root: &CancellationToken) -> Self {
        Self {
            stop: root.child_token(),
            tracker: TaskTracker::new(),
        }
    }

    /// Cancels the stage and waits for its tasks, at most `deadline`; false when some were still
    /// running then (they are left to the runtime's shutdown).
    async fn stop(&self, deadline: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// The node's tasks, in their three stages.
#[derive(Debug)]
pub struct Supervisor {
    root: CancellationToken,
    /// Cancelled when the API's drain deadline passes: streaming calls still running (an upload
    /// that never ends, a download nobody reads) end there, unacknowledged.
    cut_off: CancellationToken,
    api: Stage,
    workers: Stage,
    swarm: Stage,
    failure: watch::Sender<Option<TaskFailure>>,
}

/// The stages a task can belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageName {
    Api,
    Workers,
    Swarm,
}

/// How long the API's calls in flight may take to finish once the node stops; a client still
/// uploading then is cut off (nothing it sent is pinned, since nothing was acknowledged).
pub const API_DRAIN: Duration = Duration::from_secs(10);
/// How long cut-off calls get to unwind.
const CUT_OFF_GRACE: Duration = Duration::from_secs(5);
/// How long the workers' jobs may take to wind down after cancellation: only blocking store
/// calls already running (a batch write, a page of a scrub) go on past it.
pub const WORKERS_DRAIN: Duration = Duration::from_secs(30);
const SWARM_DRAIN: Duration = Duration::from_secs(10);

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        let root = CancellationToken::new();
        Self {
            cut_off: root.child_token(),
            api: Stage::new(&root),
            workers: Stage::new(&root),
            swarm: Stage::new(&root),
            root,
            failure: watch::channel(None).0,
        }
    }

    fn stage(&self, name: StageName) -> &Stage {
        match name {
            StageName::Api => &self.api,
            StageName::Workers => &self.workers,
            StageName::Swarm => &self.swarm,
        }
    }

    /// The token that cuts off the API's streaming calls still running at the drain deadline.
    pub fn cut_off_token(&self) -> CancellationToken {
        self.cut_off.clone()
    }

    /// The token that stops `stage`.
    pub fn stop_token(&self, stage: StageName) -> CancellationToken {
        self.stage(stage).stop.clone()
    }

    /// A handle for the workers' jobs and blocking calls.
    pub fn jobs(&self) -> Jobs {
        Jobs {
            stop: self.workers.stop.clone(),
            tracker: self.workers.tracker.clone(),
        }
    }

    /// Starts a service of `stage` that should run until the stage stops. Ending earlier, with
    /// an error or a panic, or even with `Ok`, is a failure reported through [`Self::failure`].
    pub fn spawn_service<F>(&self, stage: StageName, name: &'static str, service: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let stage = self.stage(stage);
        let stop = stage.stop.clone();
        let failure = self.failure.clone();
        stage.tracker.spawn(async move {
            let ended = AssertUnwindSafe(service).catch_unwind().await;
            if stop.is_cancelled() {
                if let Ok(Err(e)) = &ended {
                    tracing::warn!(task = name, error = %e, "task failed while stopping");
                }
                return;
            }
            let reason = match ended {
                Ok(Ok(())) => "it returned".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("it panicked: {}", panic_message(&panic)),
            };
            tracing::error!(task = name, %reason, "a task stopped unexpectedly");
            // The first failure is the one reported; later ones are usually its consequences.
            failure.send_if_modified(|slot| {
                if slot.is_none() {
                    *slot = Some(TaskFailure { task: name, reason });
                    true
                } else {
                    false
                }
            });
        });
    }

    /// Waits until a service ends unexpectedly, and says which and why.
    pub async fn failure(&self) -> TaskFailure {
        let mut seen = self.failure.subscribe();
        loop {
            if let Some(failure) = seen.borrow_and_update().clone() {
                return failure;
            }
            // The sender lives in `self`: `changed` cannot fail while we borrow it.
            if seen.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Asks the API to stop taking calls; [`Self::stop`] does the rest.
    pub fn stop_api(&self) {
        self.api.stop.cancel();
    }

    /// Stops every stage in order — API, workers, swarm — waiting for each (within its
    /// deadline) before the next, and logging each step.
    pub async fn stop(&self) {
        if !self.api.stop(API_DRAIN).await {
            tracing::warn!(
                after_s = API_DRAIN.as_secs(),
                "admin API calls still running; cutting them off"
            );
            self.cut_off.cancel();
            if !self.api.stop(CUT_OFF_GRACE).await {
                tracing::warn!("admin API calls still running after the cut-off; going on");
            }
        }
        tracing::info!("admin API stopped");
        if !self.workers.stop(WORKERS_DRAIN).await {
            tracing::warn!(
                after_s = WORKERS_DRAIN.as_secs(),
                "workers still running; going on"
            );
        }
        tracing::info!("workers stopped");
        if !self.swarm.stop(SWARM_DRAIN).await {
            tracing::warn!("the swarm task did not stop in time");
        }
        tracing::info!("swarm stopped");
    }

    /// Unwinds a start that failed half-way: everything started so far is cancelled and waited
    /// for, so the caller may reopen the same data directory at once.
    pub async fn abort(&self) {
        self.root.cancel();
        self.stop().await;
    }
}

/// The workers' handle for short-lived jobs and blocking calls: every one is tracked, so the
/// node's `join` waits for it before the store is flushed. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Jobs {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Jobs {
    /// Jobs of their own, for unit tests and embedding programs that run parts of a node.
    pub fn standalone() -> Self {
        Self {
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Runs `job` in the background until it ends or the workers stop; a panic is logged with
    /// the job's name and goes no further.
    pub fn spawn<F>(&self, name: &'static str, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                ended = AssertUnwindSafe(job).catch_unwind() => if let Err(panic) = ended {
                    tracing::error!(job = name, panic = %panic_message(&panic), "a job panicked");
                }
            }
        });
    }

    /// Runs `f` on a blocking thread, tracked. A panic inside it is an internal error, never
    /// the caller's fault.
    pub async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.tracker
            .spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal {
                what,
                reason: if e.is_panic() {
                    format!("panicked: {}", panic_message(&e.into_panic()))
                } else {
                    "cancelled".into()
                },
            })?
    }

    /// Starts `f` on a blocking thread, tracked, without waiting for it (a reader feeding a
    /// stream through a channel).
    pub fn spawn_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.tracker.spawn_blocking(f)
    }

    /// The token cancelled when the workers stop.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_service_that_returns_early_is_reported_by_name() {
        let supervisor = Supervisor::new();
        let stop = supervisor.stop_token(StageName::Workers);
        supervisor.spawn_service(StageName::Workers, "long", async move {
            stop.cancelled().await;
            Ok(())
        });
        supervisor.spawn_service(StageName::Workers, "scrub", async {
            Err(Error::Internal {
                what: "scrub",
                reason: "the disk went away".into(),
            })
        });
        let failure = tokio::time::timeout(Duration::from_secs(5), supervisor.failure())
            .await
            .expect("reported");
        assert_eq!(failure.task, "scrub");
        assert!(failure.reason.contains("the disk went away"), "{failure}");
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn a_panicking_service_is_reported_and_a_stopped_one_is_not() {
        let supervisor = Supervisor::new();
        let stop = supervisor.stop_token(StageName::Swarm);
        supervisor.spawn_service(StageName::Swarm, "swarm", async move {
            stop.cancelled().await;
            Ok(())
        });
        supervisor.stop().await;
        // Ended because it was stopped: no failure.
        let quiet = tokio::time::timeout(Duration::from_millis(100), supervisor.failure()).await;
        assert!(quiet.is_err(), "a stopped service was reported: {quiet:?}");

        let supervisor = Supervisor::new();
        supervisor.spawn_service(StageName::Api, "admin API", async {
            #[allow(clippy::panic)]
            if std::hint::black_box(true) {
                panic!("boom");
            }
            Ok(())
        });
        let failure = tokio::time::timeout(Duration::from_secs(5), supervisor.failure())
            .await
            .expect("reported");
        assert_eq!(failure.task, "admin API");
        assert!(failure.reason.contains("boom"), "{failure}");
    }

    #[tokio::test]
    async fn stop_waits_for_blocking_calls_and_cancels_jobs() {
        let supervisor = Supervisor::new();
        let jobs = supervisor.jobs();
        let (go, wait) = std::sync::mpsc::sync_channel::<()>(1);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<&str>(4);
        let tx = done_tx.clone();
        // A blocking call already running (a batch write, say) is waited for.
        let running = jobs.spawn_blocking(move || {
            let _ = wait.recv();
            let _ = tx.blocking_send("blocking");
        });
        // A job that would run forever is cancelled.
        jobs.spawn("forever", async move {
            std::future::pending::<()>().await;
            let _ = done_tx.send("never").await;
        });
        let stopping = supervisor.abort();
        tokio::pin!(stopping);
        let early = tokio::time::timeout(Duration::from_millis(200), &mut stopping).await;
        assert!(
            early.is_err(),
            "stop returned while a blocking call still ran"
        );
        go.send(()).expect("the blocking call waits");
        let started = std::time::Instant::now();
        stopping.await;
        assert!(
            started.elapsed() < WORKERS_DRAIN / 2,
            "stop waited out its deadline"
        );
        // The blocking call had ended (and sent) before stop returned.
        assert_eq!(done_rx.try_recv(), Ok("blocking"));
        running.await.expect("the blocking call ran");
        assert_eq!(
            done_rx.recv().await,
            None,
            "the endless job was not cancelled"
        );
        assert!(jobs.stopping().is_cancelled());
    }

    #[tokio::test]
    async fn a_panic_in_a_blocking_call_is_an_internal_error() {
        let jobs = Jobs::standalone();
        let failed = jobs
            .blocking("reading pins", || -> Result<()> {
                #[allow(clippy::panic)]
                if std::hint::black_box(true) {
                    panic!("bad page");
                }
                Ok(())
            })
            .await;
        match failed {
            Err(Error::Internal { what, reason }) => {
                assert_eq!(what, "reading pins");
                assert!(reason.contains("bad page"), "{reason}");
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
    }
}
