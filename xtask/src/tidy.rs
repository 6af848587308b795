//! Tidy checks: project rules that rustfmt and clippy do not enforce, checked on the text of
//! the workspace. `cargo xtask tidy` prints the violations; `xtask/tests/tidy.rs` fails the
//! test suite on any of them.
//!
//! The checks read lines, not a syntax tree. The heuristics are stated where they are used;
//! where one misjudges a piece of code, change the check, not the code.
//!
//! Rules:
//! - no `todo`, `unimplemented` or `dbg` macro calls outside test code;
//! - no ignore attribute on tests, anywhere;
//! - no line of Rust longer than `LINE_LENGTH_MAX` characters;
//! - every crate under `crates/` is named in ARCHITECTURE.md;
//! - every crate's Cargo.toml has `[lints]` with `workspace = true`;
//! - every test function starts with a comment that says what it checks;
//! - no hashed collections in deterministic crates (belt and braces for clippy's ban).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The longest line of Rust allowed, in characters (rustfmt.toml has the same `max_width`).
pub const LINE_LENGTH_MAX: usize = 100;

/// How many lines may separate a test attribute from its `fn` line (other attributes).
const TEST_ATTRIBUTE_TO_FN_LINES_MAX: usize = 8;

/// Crates under `crates/` that do real IO and may use hashed collections. Every other crate
/// is deterministic protocol, actor or simulator code.
const IO_CRATES: [&str; 4] = ["synod", "synod-client", "synod-runtime", "synod-server"];

/// Macro calls not allowed outside test code. Built with `concat!` so that this file does not
/// contain the text it forbids.
const FORBIDDEN_MACROS: [&str; 3] = [
    concat!("todo", "!("),
    concat!("unimplemented", "!("),
    concat!("dbg", "!("),
];

/// The start of the attribute that skips a test, built like `FORBIDDEN_MACROS`.
const IGNORE_ATTRIBUTE: &str = concat!("#[", "ignore");

/// Hashed collection types banned in deterministic crates: their iteration order varies.
const HASHED_COLLECTIONS: [&str; 2] = ["HashMap", "HashSet"];

/// One broken rule at one place, printed as `path:line: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path relative to the workspace root, with `/` separators.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}: {}", self.path, self.line, self.problem)
    }
}

impl Violation {
    fn new(path: &str, line: usize, problem: impl Into<String>) -> Violation {
        Violation {
            path: path.to_string(),
            line,
            problem: problem.into(),
        }
    }
}

/// What the rules need to know about a source file, decided from its workspace path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceKind {
    /// The whole file is test code: it lies under a `tests/` or `benches/` directory.
    pub is_test_file: bool,
    /// The file belongs to a crate under `crates/` that must be deterministic.
    pub is_deterministic: bool,
}

impl SourceKind {
    /// Classifies a path relative to the workspace root, with `/` separators.
    pub fn from_path(path: &str) -> SourceKind {
        let components: Vec<&str> = path.split('/').collect();
        let is_test_file = components
            .iter()
            .any(|&part| part == "tests" || part == "benches");
        let is_deterministic = match components.as_slice() {
            ["crates", crate_name, ..] => !IO_CRATES.contains(crate_name),
            _ => false,
        };
        SourceKind {
            is_test_file,
            is_deterministic,
        }
    }
}

/// Runs every tidy check on the workspace at `root`. Violations come in a stable order.
pub fn check_workspace(root: &Path) -> io::Result<Vec<Violation>> {
    let mut violations = Vec::new();
    let crate_directories = crate_directories(&root.join("crates"))?;

    let crate_names: Vec<String> = crate_directories
        .iter()
        .map(|directory| file_name(directory))
        .collect();
    let architecture = read_if_present(&root.join("ARCHITECTURE.md"))?;
    violations.extend(check_architecture(&crate_names, architecture.as_deref()));

    let manifest_directories = crate_directories
        .iter()
        .cloned()
        .chain([root.join("xtask")]);
    for directory in manifest_directories {
        let manifest = directory.join("Cargo.toml");
        let path = relative_path(root, &manifest);
        match read_if_present(&manifest)? {
            Some(text) => violations.extend(check_manifest(&path, &text)),
            None => violations.push(Violation::new(
                &path,
                1,
                "crate directory has no Cargo.toml",
            )),
        }
    }

    let mut sources = Vec::new();
    collect_rust_files(&root.join("crates"), &mut sources)?;
    collect_rust_files(&root.join("xtask"), &mut sources)?;
    sources.sort();
    for source in &sources {
        let text = fs::read_to_string(source)?;
        violations.extend(check_source(&relative_path(root, source), &text));
    }
    Ok(violations)
}

/// Checks one Rust source file: forbidden macros, ignored tests, line length, hashed
/// collections, and the opening comment of each test.
///
/// Test code is a file under `tests/` or `benches/`, or every line from the first
/// `#[cfg(test)]` on (a heuristic: test modules sit at the end of the file). Comment lines
/// are not checked for forbidden text, so documentation may name it.
pub fn check_source(path: &str, text: &str) -> Vec<Violation> {
    let kind = SourceKind::from_path(path);
    let lines: Vec<&str> = text.lines().collect();
    let mut violations = Vec::new();
    let mut in_test_code = kind.is_test_file;
    for (index, line) in lines.iter().enumerate() {
        let line_number = index + 1;
        let trimmed = line.trim_start();
        if is_cfg_test(trimmed) {
            in_test_code = true;
        }
        let length = line.chars().count();
        if length > LINE_LENGTH_MAX && !is_rustfmt_list_overflow(line, length) {
            let problem = format!("line is {length} characters, more than {LINE_LENGTH_MAX}");
            violations.push(Violation::new(path, line_number, problem));
        }
        if trimmed.starts_with("//") {
            continue;
        }
        if line.contains(IGNORE_ATTRIBUTE) {
            let problem = "ignored test: fix the test or delete it (no ignore attributes)";
            violations.push(Violation::new(path, line_number, problem));
        }
        if !in_test_code {
            for pattern in FORBIDDEN_MACROS
                .iter()
                .filter(|pattern| contains_word(line, pattern))
            {
                let problem = format!("`{pattern}` outside test code");
                violations.push(Violation::new(path, line_number, problem));
            }
        }
        if kind.is_deterministic {
            for name in HASHED_COLLECTIONS
                .iter()
                .filter(|name| contains_word(line, name))
            {
                let problem = format!(
                    "{name} in a deterministic crate: its iteration order varies, \
                     use BTreeMap/BTreeSet or a sorted Vec"
                );
                violations.push(Violation::new(path, line_number, problem));
            }
        }
    }
    violations.extend(check_test_comments(path, &lines));
    violations
}

/// Checks that ARCHITECTURE.md (`None` when the file is missing) names every crate, either
/// in backticks (`` `synod-core` ``) or as a word of a heading.
pub fn check_architecture(crate_names: &[String], architecture: Option<&str>) -> Vec<Violation> {
    let Some(text) = architecture else {
        let problem = "ARCHITECTURE.md does not exist: write it, with a paragraph per crate \
                       under crates/ that names the crate as `crate-name` or in a heading";
        return vec![Violation::new("ARCHITECTURE.md", 1, problem)];
    };
    crate_names
        .iter()
        .filter(|name| !architecture_names_crate(text, name))
        .map(|name| {
            let problem = format!(
                "crate {name} (crates/{name}) is not described: name it as `{name}` \
                 or in a heading"
            );
            Violation::new("ARCHITECTURE.md", 1, problem)
        })
        .collect()
}

/// Checks that a Cargo.toml has a `[lints]` section with `workspace = true`.
pub fn check_manifest(path: &str, text: &str) -> Vec<Violation> {
    let mut lints_line_number = None;
    let mut in_lints_section = false;
    for (index, line) in text.lines().enumerate() {
        // TOML comments start with `#`; no key or header this check reads contains one.
        let content: String = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if content.starts_with('[') {
            in_lints_section = content == "[lints]";
            if in_lints_section {
                lints_line_number = Some(index + 1);
            }
        } else if in_lints_section && content == "workspace=true" {
            return Vec::new();
        }
    }
    let violation = match lints_line_number {
        None => Violation::new(
            path,
            1,
            "no [lints] section: add `[lints]` with `workspace = true`",
        ),
        Some(line) => Violation::new(path, line, "[lints] does not set `workspace = true`"),
    };
    vec![violation]
}

/// Checks that the first line of every test function body is a `//` comment.
fn check_test_comments(path: &str, lines: &[&str]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if !is_test_attribute(line.trim()) {
            continue;
        }
        let Some((fn_index, name)) = find_test_fn(lines, index) else {
            continue;
        };
        if !test_body_starts_with_comment(lines, fn_index) {
            let problem =
                format!("test fn {name} does not start with a comment saying what it checks");
            violations.push(Violation::new(path, fn_index + 1, problem));
        }
    }
    violations
}

/// Whether a long line is one rustfmt itself writes and accepts: a list (a `derive`, a `use`
/// group) whose trailing comma ends one character past the limit, because rustfmt leaves the
/// separator out of the width it measures (rust-lang/rustfmt#5796). Rejecting these would
/// fail code that `cargo fmt` keeps putting back.
fn is_rustfmt_list_overflow(line: &str, length: usize) -> bool {
    length == LINE_LENGTH_MAX + 1 && line.ends_with(',')
}

fn is_test_attribute(trimmed: &str) -> bool {
    trimmed == "#[test]" || trimmed.starts_with("#[tokio::test")
}

fn is_cfg_test(trimmed: &str) -> bool {
    trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(all(test")
}

/// Finds the `fn` line that follows the test attribute at `attribute_index`, past any other
/// attributes, and returns its index and the function's name.
fn find_test_fn<'a>(lines: &[&'a str], attribute_index: usize) -> Option<(usize, &'a str)> {
    let candidates = lines.iter().enumerate().skip(attribute_index + 1);
    candidates
        .take(TEST_ATTRIBUTE_TO_FN_LINES_MAX)
        .find_map(|(index, line)| fn_name(line).map(|name| (index, name)))
}

/// The name of the function declared on `line`, if the line declares one.
fn fn_name(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|&word| word == "fn")?;
    let name_and_rest = words.next()?;
    let name_end = name_and_rest
        .find(['(', '<'])
        .unwrap_or(name_and_rest.len());
    Some(&name_and_rest[..name_end])
}

/// Whether the body of the function declared at `fn_index` starts with a `//` comment.
fn test_body_starts_with_comment(lines: &[&str], fn_index: usize) -> bool {
    let Some(brace_index) = (fn_index..lines.len()).find(|&index| lines[index].contains('{'))
    else {
        return false;
    };
    let after_brace = lines[brace_index]
        .split_once('{')
        .map_or("", |(_, rest)| rest)
        .trim();
    let first_body_line = if after_brace.is_empty() {
        lines[brace_index + 1..]
            .iter()
            .map(|line| line.trim())
            .find(|line| !line.is_empty())
    } else {
        Some(after_brace)
    };
    first_body_line.is_some_and(|line| line.starts_with("//"))
}

/// Whether ARCHITECTURE.md names the crate: `` `name` `` anywhere, or `name` as a whole word
/// of a Markdown heading (so `synod` is not found inside `synod-core`).
fn architecture_names_crate(text: &str, name: &str) -> bool {
    if text.contains(&format!("`{name}`")) {
        return true;
    }
    text.lines()
        .filter(|line| line.trim_start().starts_with('#'))
        .any(|heading| {
            heading
                .split(|c: char| !(is_identifier_char(c) || c == '-'))
                .any(|word| word == name)
        })
}

/// Whether `pattern` occurs in `line` not preceded or followed by an identifier character
/// (so `dbg!(` does not match `my_dbg!(` and `HashMap` does not match `FxHashMapLike`).
fn contains_word(line: &str, pattern: &str) -> bool {
    let pattern_ends_in_identifier = pattern.chars().next_back().is_some_and(is_identifier_char);
    line.match_indices(pattern).any(|(start, _)| {
        let before = line[..start].chars().next_back();
        let after = line[start + pattern.len()..].chars().next();
        let starts_word = !before.is_some_and(is_identifier_char);
        let ends_word = !pattern_ends_in_identifier || !after.is_some_and(is_identifier_char);
        starts_word && ends_word
    })
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The directories directly under `crates`, sorted; hidden directories are skipped.
fn crate_directories(crates: &Path) -> io::Result<Vec<PathBuf>> {
    let mut directories = Vec::new();
    if !crates.is_dir() {
        return Ok(directories);
    }
    for entry in fs::read_dir(crates)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && !file_name(&entry.path()).starts_with('.') {
            directories.push(entry.path());
        }
    }
    directories.sort();
    Ok(directories)
}

/// Appends every `.rs` file under `directory`, skipping `target` and hidden directories.
/// Symbolic links are not followed.
fn collect_rust_files(directory: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    if !directory.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(directory)? {
        let entry = entry?;
        let path = entry.path();
        let name = file_name(&path);
        let file_type = entry.file_type()?;
        if file_type.is_dir() && name != "target" && !name.starts_with('.') {
            collect_rust_files(&path, files)?;
        } else if file_type.is_file() && name.ends_with(".rs") {
            files.push(path);
        }
    }
    Ok(())
}

fn read_if_present(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `path` relative to `root`, with `/` separators on every platform.
fn relative_path(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = relative
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test inputs are built from one-line string literals joined with newlines, so that the
    // lines of this file never look like the code the checks look for.
    fn source(lines: &[&str]) -> String {
        lines.join("\n")
    }

    fn problems(violations: &[Violation]) -> Vec<String> {
        violations.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn violation_prints_as_path_line_problem() {
        // Checks the output format editors and CI logs link from: path:line: problem.
        let violation = Violation::new("crates/synod-core/src/lib.rs", 7, "line is long");
        assert_eq!(
            violation.to_string(),
            "crates/synod-core/src/lib.rs:7: line is long"
        );
    }

    #[test]
    fn source_kind_follows_the_path() {
        // Checks which files count as test files and which crates as deterministic.
        let table = [
            ("crates/synod-core/src/lib.rs", false, true),
            ("crates/synod-core/tests/queue.rs", true, true),
            ("crates/synod-sim/benches/run.rs", true, true),
            ("crates/synod-runtime/src/lib.rs", false, false),
            ("crates/synod/src/main.rs", false, false),
            ("crates/synod-server/src/resp.rs", false, false),
            ("crates/synod-client/src/lib.rs", false, false),
            ("xtask/src/tidy.rs", false, false),
            ("xtask/tests/tidy.rs", true, false),
        ];
        for (path, is_test_file, is_deterministic) in table {
            let expected = SourceKind {
                is_test_file,
                is_deterministic,
            };
            assert_eq!(SourceKind::from_path(path), expected, "{path}");
        }
    }

    #[test]
    fn forbidden_macros_are_reported_only_outside_test_code() {
        // Checks that the three macros are caught in library code, with the right line,
        // but allowed in comments, after #[cfg(test)] and in files under tests/.
        let text = source(&[
            "fn a() { todo!() }",
            "fn b() { unimplemented!(\"later\") }",
            "fn c(x: u8) -> u8 { dbg!(x) }",
            "// A comment may say dbg!(x) when it explains why not to.",
            "fn d() { my_dbg!(1) }",
            "#[cfg(test)]",
            "fn e() { todo!() }",
        ]);
        let violations = check_source("crates/synod-core/src/lib.rs", &text);
        assert_eq!(
            problems(&violations),
            [
                "crates/synod-core/src/lib.rs:1: `todo!(` outside test code",
                "crates/synod-core/src/lib.rs:2: `unimplemented!(` outside test code",
                "crates/synod-core/src/lib.rs:3: `dbg!(` outside test code",
            ]
        );
        let in_tests_directory = check_source("crates/synod-core/tests/a.rs", "fn a() { todo!() }");
        assert!(in_tests_directory.is_empty(), "{in_tests_directory:?}");
    }

    #[test]
    fn ignore_attribute_is_reported_even_in_test_code() {
        // Checks that a skipped test is a violation wherever it is, plain or with a reason.
        let text = format!("#[cfg(test)]\n{IGNORE_ATTRIBUTE}]\n{IGNORE_ATTRIBUTE} = \"slow\"]");
        let violations = check_source("crates/synod-sim/tests/sweep.rs", &text);
        let lines: Vec<usize> = violations.iter().map(|violation| violation.line).collect();
        assert_eq!(lines, [2, 3]);
        assert!(violations[0].problem.starts_with("ignored test"));
    }

    #[test]
    fn lines_longer_than_the_limit_are_reported() {
        // Checks the limit is inclusive: 100 characters pass, 101 fail, counted in characters
        // rather than bytes; only rustfmt's one-character list overflow (a trailing comma as
        // the 101st character) passes.
        let at_limit = "x".repeat(LINE_LENGTH_MAX);
        let over_limit = "y".repeat(LINE_LENGTH_MAX + 1);
        let multibyte_at_limit = "é".repeat(LINE_LENGTH_MAX);
        let rustfmt_list_overflow = format!("{at_limit},");
        let two_over_with_comma = format!("{over_limit},");
        let text = source(&[
            &at_limit,
            &over_limit,
            &multibyte_at_limit,
            &rustfmt_list_overflow,
            &two_over_with_comma,
        ]);
        let violations = check_source("xtask/src/lib.rs", &text);
        assert_eq!(
            problems(&violations),
            [
                "xtask/src/lib.rs:2: line is 101 characters, more than 100",
                "xtask/src/lib.rs:5: line is 102 characters, more than 100",
            ]
        );
    }

    #[test]
    fn hashed_collections_are_reported_only_in_deterministic_crates() {
        // Checks HashMap and HashSet are caught in protocol crates as whole words only, and
        // allowed in the IO crates and in xtask.
        let text = source(&[
            "use std::collections::{HashMap, HashSet};",
            "use std::collections::BTreeMap;",
            "struct FxHashMapLike;",
            "// A HashMap would make iteration order vary.",
        ]);
        let violations = check_source("crates/synod-detector/src/lib.rs", &text);
        let lines: Vec<usize> = violations.iter().map(|violation| violation.line).collect();
        assert_eq!(lines, [1, 1]);
        assert!(
            violations[0]
                .problem
                .starts_with("HashMap in a deterministic crate")
        );
        assert!(check_source("crates/synod-runtime/src/net.rs", &text).is_empty());
        assert!(check_source("xtask/src/tasks.rs", &text).is_empty());
    }

    #[test]
    fn test_functions_must_start_with_a_comment() {
        // Checks the opening-comment rule through other attributes, a body on the fn line,
        // a multi-line signature and an async tokio test.
        let text = source(&[
            "#[test]",
            "fn commented() {",
            "",
            "    // Checks something.",
            "}",
            "#[test]",
            "fn silent() {",
            "    assert!(true);",
            "}",
            "#[test]",
            "#[should_panic(expected = \"overflow\")]",
            "fn commented_after_attributes() {",
            "    // Checks the panic.",
            "}",
            "#[test]",
            "fn one_line() { assert!(true) }",
            "#[test]",
            "fn one_line_commented() { // Checks in one line.",
            "}",
            "#[test]",
            "fn long_signature(",
            ") -> Result<(), String> {",
            "    Ok(())",
            "}",
            "#[tokio::test(flavor = \"current_thread\")]",
            "async fn asynchronous() {",
            "    assert!(true);",
            "}",
        ]);
        let violations = check_source("crates/synod-sim/tests/scenarios.rs", &text);
        let expected = ["silent", "one_line", "long_signature", "asynchronous"].map(|name| {
            format!("test fn {name} does not start with a comment saying what it checks")
        });
        let found: Vec<&str> = violations.iter().map(|v| v.problem.as_str()).collect();
        assert_eq!(found, expected);
        let lines: Vec<usize> = violations.iter().map(|violation| violation.line).collect();
        assert_eq!(lines, [7, 16, 21, 26]);
    }

    #[test]
    fn architecture_must_exist_and_name_every_crate() {
        // Checks a missing file is one violation, and a crate counts as named in backticks or
        // as a whole word of a heading, but not as part of a longer crate name.
        let crates: Vec<String> = ["synod", "synod-core", "synod-sim", "synod-wal"]
            .map(String::from)
            .to_vec();
        let missing = check_architecture(&crates, None);
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0]
                .problem
                .starts_with("ARCHITECTURE.md does not exist")
        );

        let text = source(&[
            "# Architecture",
            "`synod-core` holds identifiers.",
            "## synod-sim: the simulator",
            "The synod-wal crate is mentioned only in passing.",
        ]);
        let violations = check_architecture(&crates, Some(&text));
        let named: Vec<&str> = violations
            .iter()
            .map(|v| v.problem.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(named, ["synod", "synod-wal"]);
    }

    #[test]
    fn manifest_must_opt_into_workspace_lints() {
        // Checks [lints] with workspace = true passes, and both ways of missing it are caught
        // at the right line.
        let good = source(&[
            "[package]",
            "name = \"a\"",
            "",
            "[lints]",
            "workspace = true",
        ]);
        assert!(check_manifest("crates/a/Cargo.toml", &good).is_empty());

        let commented = source(&["[lints] # shared", "workspace=true # see root"]);
        assert!(check_manifest("crates/a/Cargo.toml", &commented).is_empty());

        let absent = source(&["[package]", "name = \"b\"", "[dependencies]"]);
        assert_eq!(
            problems(&check_manifest("crates/b/Cargo.toml", &absent)),
            ["crates/b/Cargo.toml:1: no [lints] section: add `[lints]` with `workspace = true`"]
        );

        let elsewhere = source(&[
            "[package]",
            "workspace = true",
            "[lints]",
            "[lints.clippy]",
            "todo = 1",
        ]);
        assert_eq!(
            problems(&check_manifest("crates/c/Cargo.toml", &elsewhere)),
            ["crates/c/Cargo.toml:3: [lints] does not set `workspace = true`"]
        );
    }

    #[test]
    fn relative_paths_use_forward_slashes() {
        // Checks violation paths are relative to the root and /-separated.
        let root = Path::new("/work/main");
        let path = root
            .join("crates")
            .join("synod-core")
            .join("src")
            .join("lib.rs");
        assert_eq!(relative_path(root, &path), "crates/synod-core/src/lib.rs");
    }
}
