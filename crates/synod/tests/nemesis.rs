//! A short `synod nemesis` run: real server processes under kill, pause and partition
//! faults, the history checked in-process.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run (25 s of workload, start-up, final reads and the check) must end by then.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The number after `name=` on the report's `- faults:` line.
fn fault_count(report: &str, name: &str) -> Option<u64> {
    let line = report.lines().find(|line| line.starts_with("- faults:"))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{name}=")))
        .and_then(|count| count.parse().ok())
}

#[test]
fn nemesis_run_with_every_fault_kind_is_valid() {
    // Checks that a 25-second run injects at least one kill, pause and partition, that the
    // history checks valid with no lost writes, and that the harness exits 0 by itself.
    let dir = std::env::temp_dir().join(format!("synod-nemesis-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let report_path = dir.join("report.md");
    let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args([
            "nemesis",
            "--seconds",
            "25",
            "--faults",
            "kill,pause,partition",
        ])
        .args(["--seed", "42", "--report"])
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synod nemesis");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll synod nemesis") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let status = status
        .unwrap_or_else(|| panic!("synod nemesis did not stop within {RUN_TIMEOUT:?}\n{stderr}"));
    assert!(
        status.success(),
        "synod nemesis failed ({status}):\n{stderr}\n{report}"
    );
    for kind in ["kill", "pause", "partition"] {
        let count = fault_count(&report, kind);
        assert!(
            count.is_some_and(|count| count >= 1),
            "no {kind} fault in the report:\n{report}"
        );
    }
    assert!(report.contains("- verdict: valid"), "{report}");
    assert!(report.contains("- lost acknowledged writes: 0"), "{report}");
}
