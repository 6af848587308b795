//! Runs the tidy checks as part of the test suite, so `cargo xtask test` and CI enforce them.

#[test]
fn workspace_is_tidy() {
    // Checks the whole workspace against the tidy rules (see xtask/src/tidy.rs); the failure
    // lists every violation as path:line: problem, the same as `cargo xtask tidy`.
    let root = xtask::workspace_root();
    let violations = match xtask::tidy::check_workspace(&root) {
        Ok(violations) => violations,
        Err(error) => panic!(
            "tidy: cannot read the workspace at {}: {error}",
            root.display()
        ),
    };
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "tidy found {} violations (run `cargo xtask tidy` to list them again):\n{}",
        violations.len(),
        report.join("\n")
    );
}
