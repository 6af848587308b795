//! The tasks behind `cargo xtask test`, `cargo xtask ci`, `cargo xtask tidy` and
//! `cargo xtask fuzz`.
//!
//! `test` and `ci` share one definition of the test suite (`Stages::test_suite`), so what a
//! developer runs locally is exactly what CI runs after its format and lint stages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::tidy;

/// Which nextest profile (`.config/nextest.toml`) the test suite runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestProfile {
    /// A developer's machine: `cargo xtask test`.
    Local,
    /// The CI machine: `cargo xtask ci`.
    Ci,
}

impl TestProfile {
    fn nextest_profile_name(self) -> &'static str {
        match self {
            TestProfile::Local => "default",
            TestProfile::Ci => "ci",
        }
    }
}

/// `cargo xtask test`: the whole test suite, tidy checks included (they are a test).
pub fn test(root: &Path) -> anyhow::Result<()> {
    let mut stages = Stages::new(root);
    // The suite runs real Redis clients, a headless browser and the like: install whatever
    // is missing first, so this one command works on a fresh machine (cheap when nothing is).
    let setup = root.join("scripts").join("setup");
    stages.run_program("setup", setup, &[]);
    stages.test_suite(TestProfile::Local);
    stages.finish()
}

/// `cargo xtask lint`: the format check and clippy with warnings as errors.
pub fn lint(root: &Path) -> anyhow::Result<()> {
    let mut stages = Stages::new(root);
    stages.lint();
    stages.finish()
}

/// `cargo xtask ci`: the lints, then the same test suite as `cargo xtask test`.
///
/// Every stage runs even when an earlier one failed, so one CI run reports all problems.
pub fn ci(root: &Path) -> anyhow::Result<()> {
    let mut stages = Stages::new(root);
    stages.lint();
    stages.test_suite(TestProfile::Ci);
    stages.finish()
}

/// How long `cargo xtask fuzz` runs when not told.
pub const FUZZ_SECONDS_DEFAULT: u64 = 60;
/// The longest run `cargo xtask fuzz` accepts: a day.
pub const FUZZ_SECONDS_MAX: u64 = 24 * 60 * 60;

/// Reads the options of `cargo xtask fuzz TARGET`: `--seconds N` or nothing.
pub fn fuzz_seconds(options: &[&str]) -> anyhow::Result<u64> {
    match options {
        [] => Ok(FUZZ_SECONDS_DEFAULT),
        ["--seconds", value] => {
            let seconds: u64 = value
                .parse()
                .with_context(|| format!("fuzz: --seconds {value:?} is not a whole number"))?;
            if !(1..=FUZZ_SECONDS_MAX).contains(&seconds) {
                bail!("fuzz: --seconds ({seconds}) must be in 1..={FUZZ_SECONDS_MAX}");
            }
            Ok(seconds)
        }
        other => bail!("fuzz: unknown options {other:?} (expected --seconds N)"),
    }
}

/// `cargo xtask fuzz TARGET --seconds N`: runs a cargo-fuzz target of `fuzz/` for at most
/// N seconds, without a sanitizer (`-s none`), which works on stable Rust (the default
/// address sanitizer needs nightly). libFuzzer's summary (runs executed, crashes) ends the
/// output; a crash leaves its input in `fuzz/artifacts/TARGET/` and fails the task.
pub fn fuzz(root: &Path, target: &str, seconds: u64) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let installed = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        bail!("fuzz: cargo-fuzz is not installed; run `scripts/setup --fuzz` to install it");
    }
    let targets = root.join("fuzz").join("fuzz_targets");
    if !targets.join(format!("{target}.rs")).is_file() {
        bail!(
            "fuzz: no target {target:?}: the targets are the files of {}",
            targets.display()
        );
    }
    let max_total_time = format!("-max_total_time={seconds}");
    let arguments = ["fuzz", "run", target, "-s", "none", "--", &max_total_time];
    println!("xtask: ==> cargo {}", arguments.join(" "));
    let status = Command::new(&cargo)
        .args(arguments)
        .current_dir(root)
        .status()
        .context("fuzz: cannot start cargo fuzz")?;
    if !status.success() {
        bail!("fuzz: {target} failed ({status}); a crashing input is in fuzz/artifacts/{target}/");
    }
    Ok(())
}

/// `cargo xtask tidy`: prints every tidy violation as `path:line: problem`.
pub fn tidy(root: &Path) -> anyhow::Result<()> {
    let violations = tidy::check_workspace(root)
        .with_context(|| format!("tidy: cannot read the workspace at {}", root.display()))?;
    for violation in &violations {
        println!("{violation}");
    }
    if !violations.is_empty() {
        let count = violations.len();
        bail!("tidy: {count} violation(s); the tidy test fails until they are fixed");
    }
    println!("tidy: no violations");
    Ok(())
}

/// The outcome of one stage, kept for the summary at the end.
#[derive(Debug)]
struct StageOutcome {
    name: String,
    passed: bool,
    duration: Duration,
}

/// Runs commands one after another in the workspace root, records how each went, and
/// reports all of them at the end.
#[derive(Debug)]
struct Stages {
    root: PathBuf,
    cargo: OsString,
    outcomes: Vec<StageOutcome>,
}

impl Stages {
    fn new(root: &Path) -> Stages {
        // `cargo run` sets CARGO to the cargo that runs us, so the nested commands use the
        // same toolchain; outside cargo, fall back to the one on PATH.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Stages {
            root: root.to_path_buf(),
            cargo,
            outcomes: Vec::new(),
        }
    }

    /// The test suite shared by `test` and `ci`.
    fn lint(&mut self) {
        self.run_cargo("format", "fmt --all -- --check");
        self.run_cargo(
            "clippy",
            "clippy --workspace --all-targets --locked -- -D warnings",
        );
    }

    fn test_suite(&mut self, profile: TestProfile) {
        if self.nextest_is_available() {
            let profile_name = profile.nextest_profile_name();
            let nextest =
                format!("nextest run --workspace --no-fail-fast --profile {profile_name}");
            self.run_cargo("tests (nextest)", &nextest);
            // nextest does not run doctests; cargo test does.
            self.run_cargo("doctests", "test --workspace --doc");
        } else {
            println!("xtask: cargo-nextest is not installed; running the suite with cargo test");
            self.run_cargo("tests", "test --workspace --no-fail-fast");
        }
    }

    fn nextest_is_available(&self) -> bool {
        let status = Command::new(&self.cargo)
            .args(["nextest", "--version"])
            .current_dir(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        status.is_ok_and(|status| status.success())
    }

    /// Runs `cargo` with `arguments`, written as on a command line (split at whitespace).
    fn run_cargo(&mut self, name: &str, arguments: &str) {
        let cargo = self.cargo.clone();
        let arguments: Vec<&str> = arguments.split_whitespace().collect();
        self.run_program(name, &cargo, &arguments);
    }

    /// Runs `program` (a path, or a command on PATH) with `arguments`, in the repository
    /// root, as one stage.
    fn run_program(
        &mut self,
        name: &str,
        program: impl AsRef<std::ffi::OsStr>,
        arguments: &[&str],
    ) {
        let program = program.as_ref();
        println!(
            "\nxtask: ==> {name}: {} {}",
            program.to_string_lossy(),
            arguments.join(" ")
        );
        let start = Instant::now();
        let status = Command::new(program)
            .args(arguments)
            .current_dir(&self.root)
            .status();
        let duration = start.elapsed();
        let passed = match status {
            Ok(status) => status.success(),
            Err(error) => {
                eprintln!("xtask: cannot start {}: {error}", program.to_string_lossy());
                false
            }
        };
        let verdict = if passed { "ok" } else { "FAILED" };
        println!(
            "xtask: <== {name}: {verdict} in {:.1}s",
            duration.as_secs_f64()
        );
        self.outcomes.push(StageOutcome {
            name: name.to_string(),
            passed,
            duration,
        });
    }

    fn finish(self) -> anyhow::Result<()> {
        println!("\nxtask: summary");
        for outcome in &self.outcomes {
            let verdict = if outcome.passed { "ok" } else { "FAILED" };
            let seconds = outcome.duration.as_secs_f64();
            println!("  {verdict:<6} {:>7.1}s  {}", seconds, outcome.name);
        }
        let failed: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|outcome| !outcome.passed)
            .map(|outcome| outcome.name.as_str())
            .collect();
        if !failed.is_empty() {
            bail!("failed stages: {}", failed.join(", "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_options_take_seconds_within_bounds() {
        // Checks the options of `cargo xtask fuzz`: the default, a valid --seconds, and
        // each refusal naming what was wrong.
        assert_eq!(fuzz_seconds(&[]).unwrap(), FUZZ_SECONDS_DEFAULT);
        assert_eq!(fuzz_seconds(&["--seconds", "300"]).unwrap(), 300);
        let refused: [(&[&str], &str); 4] = [
            (&["--seconds", "soon"], "not a whole number"),
            (&["--seconds", "0"], "must be in 1..="),
            (&["--seconds", "90000"], "must be in 1..="),
            (&["--runs", "5"], "unknown options"),
        ];
        for (options, expected) in refused {
            let error = fuzz_seconds(options).unwrap_err().to_string();
            assert!(error.contains(expected), "{options:?}: {error}");
        }
    }
}
