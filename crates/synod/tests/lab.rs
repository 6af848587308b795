//! `synod lab partition` end to end: real server processes, the leader partitioned into a
//! minority through the nemesis harness's proxies on loopback, every history checked.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// The whole run (9 s of phases, start-up, the checks) must end by then.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long an interrupted run may take to clean up and exit.
const INTERRUPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for `child` until `timeout`; None when it had to be stopped.
fn wait_bounded(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline.
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll synod lab partition") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM first, so that the lab stops the servers it started, then SIGKILL.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + INTERRUPT_TIMEOUT;
    while Instant::now() < deadline {
        if child
            .try_wait()
            .expect("poll synod lab partition")
            .is_some()
        {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The success fraction of one row of the JSON summary.
fn success_fraction(summary: &Json, operation: &str, side: &str, phase: &str) -> f64 {
    let rows = summary["rows"].as_array().expect("rows");
    let row = rows
        .iter()
        .find(|row| row["operation"] == operation && row["side"] == side && row["phase"] == phase);
    let row = row.unwrap_or_else(|| panic!("no row {operation} {side} {phase}: {summary}"));
    row["success_fraction"]
        .as_f64()
        .unwrap_or_else(|| panic!("no requests in row {operation} {side} {phase}: {row}"))
}

#[test]
fn lab_partition_keeps_stale_reads_available_and_linearizable_reads_on_the_majority() {
    // Checks `synod lab partition` on a 3-node cluster it starts (proxies, 3 s per phase):
    // it exits 0 (every model a level promises holds), writes the Markdown, HTML and JSON
    // reports, and during the partition the minority's stale reads keep succeeding while
    // its linearizable reads succeed less often than the majority's.
    let report =
        std::env::temp_dir().join(format!("synod-lab-partition-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report);
    std::fs::create_dir_all(&report).expect("create the report directory");
    let stderr = std::fs::File::create(report.join("stderr.txt")).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args(["lab", "partition", "--nodes", "3", "--net", "proxy"])
        .args(["--baseline-seconds", "3", "--partition-seconds", "3"])
        .args(["--healed-seconds", "3", "--seed", "7", "--report"])
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start synod lab partition");
    let status = wait_bounded(&mut child, RUN_TIMEOUT);
    let log = std::fs::read_to_string(report.join("stderr.txt")).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the lab did not end in time:\n{log}"));
    let markdown = std::fs::read_to_string(report.join("lab-partition.md")).unwrap_or_default();
    assert!(status.success(), "{status}\n{log}\n{markdown}");
    assert!(markdown.contains("CAP"), "{markdown}");
    let html = std::fs::read_to_string(report.join("lab-partition.html")).expect("html");
    assert!(
        html.contains("<svg") && html.contains("Minority side"),
        "{html}"
    );
    let text = std::fs::read_to_string(report.join("lab-partition.json")).expect("json");
    let summary: Json = serde_json::from_str(&text).expect("the summary is JSON");
    assert_eq!(summary["outcome"], "pass", "{summary}");
    let stale = success_fraction(&summary, "stale", "minority", "partition");
    assert!(stale > 0.0, "minority stale reads: {stale}\n{markdown}");
    let minority = success_fraction(&summary, "linearizable", "minority", "partition");
    let majority = success_fraction(&summary, "linearizable", "majority", "partition");
    assert!(
        minority < majority,
        "linearizable reads: minority {minority}, majority {majority}\n{markdown}"
    );
    for level in ["linearizable", "lease", "follower", "stale"] {
        let history = report.join(format!("lab-partition-{level}.jsonl"));
        assert!(history.exists(), "{} is missing", history.display());
    }
    let _ = std::fs::remove_dir_all(&report);
}
