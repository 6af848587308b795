//! What the harnesses that run their own cluster in-process (`synod lab partition`,
//! `synod lab skew`, `synod nemesis`) share: the run's temporary directory, a runtime that
//! a stop signal interrupts, and the in-process check of a recorded history.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use synod_check::{CheckOptions, History, Models, ParseError, ParseOptions, Report};

/// The most memory the checker's searches of one recorded history may hold together.
const CHECK_MEMORY_BYTES_MAX: usize = 2 << 30;

/// A run's temporary directory, removed when dropped unless kept.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    keep: bool,
    /// The harness's name, that begins its messages.
    label: &'static str,
}

impl TempDir {
    /// Creates `name` in the system's temporary directory.
    pub(crate) fn create(label: &'static str, name: &str, keep: bool) -> anyhow::Result<TempDir> {
        let dir = TempDir {
            path: std::env::temp_dir().join(name),
            keep,
            label,
        };
        std::fs::create_dir_all(&dir.path)
            .with_context(|| format!("cannot create {}", dir.path.display()))?;
        Ok(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("{}: kept {}", self.label, self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs `work` on a two-worker runtime until it ends or a stop signal arrives (`None`).
/// Dropping the interrupted future kills the cluster it started; the runtime's remaining
/// tasks (clients, proxies) end with the runtime.
pub(crate) fn block_on_interruptible<T>(
    label: &str,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    let runtime = crate::server::tokio_runtime(2)?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = work => result.map(Some),
            () = crate::server::stop_signal() => {
                eprintln!("{label}: interrupted; stopping every process it started");
                Ok(None)
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
}

/// Parses a history a harness recorded itself, so whole: a truncated last line is an
/// error.
pub(crate) fn parse_recorded(text: &str) -> Result<History, ParseError> {
    let options = ParseOptions {
        allow_truncated: false,
    };
    synod_check::parse_history(text, options)
}

/// Checks `history` for `models` with synod-check in-process, on every core; each key's
/// search and the whole-history sequential search give up after `timeout`.
pub(crate) fn check_recorded(history: &History, models: Models, timeout: Duration) -> Report {
    let started = Instant::now();
    let clock = move || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let timeout_nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = CheckOptions {
        models,
        key_timeout_nanos: Some(timeout_nanos),
        clock_nanos: &clock,
        memory_bytes_max: CHECK_MEMORY_BYTES_MAX,
        threads,
        sequential_timeout_nanos: Some(timeout_nanos),
        sequential_nodes_max: synod_check::SEQUENTIAL_NODES_MAX_DEFAULT,
        session_steps_max: synod_check::session::STEPS_MAX_DEFAULT,
        key_sequential_nodes_max: u64::MAX,
    };
    synod_check::check(history, &options)
}
