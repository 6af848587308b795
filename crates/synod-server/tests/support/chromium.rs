//! Loads a page in headless Chromium and returns the DOM after its scripts ran, for tests
//! of synod's dashboard. Include it from any crate's tests with
//! `#[path = "../../synod-server/tests/support/chromium.rs"] mod chromium;`.
//!
//! It runs Debian's `chromium` (installed by `scripts/setup`) with a profile directory of
//! its own, bounded by a timeout, and kills the browser's process group if it overruns.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The Chromium executable the tests run.
pub const CHROMIUM: &str = "chromium";

/// Time Chromium gets beyond the page's virtual-time budget to start, load and exit.
const STARTUP_ALLOWANCE: Duration = Duration::from_secs(60);

/// How often the run is checked for having finished.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Loads `url` in headless Chromium, lets its scripts run for `wait_ms` of virtual time
/// (timers fire without waiting in real time; network fetches still take real time), and
/// returns the serialised DOM. Fails, naming `scripts/setup`, when Chromium is missing.
pub fn dump_dom(url: &str, wait_ms: u64) -> anyhow::Result<String> {
    let profile = ProfileDirectory::create()?;
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.path.display()))
        .arg(format!("--virtual-time-budget={wait_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that an overrun kills the renderer and helper processes too.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{CHROMIUM}` was not found on PATH; the dashboard tests need it: run scripts/setup \
             (it installs the Debian package chromium)"
        ),
        Err(error) => return Err(error).context(format!("starting `{CHROMIUM}`")),
    };
    // Drain both pipes on threads so a chatty browser never blocks on a full pipe.
    let stdout = child.stdout.take().context("chromium stdout")?;
    let stderr = child.stderr.take().context("chromium stderr")?;
    let stdout_reader = std::thread::spawn(move || read_all(stdout));
    let stderr_reader = std::thread::spawn(move || read_all(stderr));

    let timeout = Duration::from_millis(wait_ms) + STARTUP_ALLOWANCE;
    let deadline = Instant::now() + timeout;
    let exit = loop {
        if let Some(exit) = child.try_wait().context("waiting for chromium")? {
            break Some(exit);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let Some(exit) = exit else {
        kill_group(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let stderr = stderr_reader.join().unwrap_or_default();
        bail!(
            "chromium did not finish loading {url} within {timeout:?}; killed it. stderr:\n{}",
            tail(&stderr)
        );
    };
    // The browser has exited; its helpers may linger a moment holding the pipes open.
    kill_group(child.id());
    let dom = stdout_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    if !exit.success() || dom.trim().is_empty() {
        bail!(
            "chromium failed on {url} ({exit}), stdout {} bytes. stderr:\n{}",
            dom.len(),
            tail(&stderr)
        );
    }
    Ok(dom)
}

fn read_all(mut pipe: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last lines of Chromium's stderr, enough to see why it failed.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Kills the process group this module started for one Chromium run (its id is the
/// browser's pid, from `process_group(0)`).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A fresh Chromium profile directory, removed when dropped.
struct ProfileDirectory {
    path: PathBuf,
}

impl ProfileDirectory {
    fn create() -> anyhow::Result<ProfileDirectory> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "synod-chromium-{}-{}-{nanos}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating chromium profile {}", path.display()))?;
        Ok(ProfileDirectory { path })
    }
}

impl Drop for ProfileDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
