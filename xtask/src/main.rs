//! `cargo xtask <command>`: the project's development commands (alias in `.cargo/config.toml`).

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test    run the whole test suite (nextest when installed, then doctests; else cargo test)
  lint    cargo fmt --check and cargo clippy -D warnings (CI runs it, then `test`)
  tidy    run the tidy checks and print each violation as path:line: problem
  ci      lint, then the test suite, in one command
  fuzz TARGET [--seconds N]
          run a cargo-fuzz target of fuzz/ for N seconds (default 60) on stable Rust
          (no sanitizer); needs cargo-fuzz: scripts/setup --fuzz installs it";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let root = xtask::workspace_root();
    let result = match arguments.as_slice() {
        ["test"] => xtask::tasks::test(&root),
        ["lint"] => xtask::tasks::lint(&root),
        ["tidy"] => xtask::tasks::tidy(&root),
        ["ci"] => xtask::tasks::ci(&root),
        ["fuzz", target, options @ ..] => match xtask::tasks::fuzz_seconds(options) {
            Ok(seconds) => xtask::tasks::fuzz(&root, target, seconds),
            Err(error) => {
                eprintln!("xtask: {error:#}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("xtask: unknown arguments {arguments:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
