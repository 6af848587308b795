//! Hand-written histories with known verdicts, for every model.

mod common;

use common::{history as parse_lines, line, op};
use synod_check::parse_history;
use synod_check::session::Guarantee;
use synod_check::{CheckOptions, History, ParseError, ParseOptions, Report, Verdict, check, html};

fn run(history: &History) -> Report {
    check(history, &CheckOptions::default())
}

fn linearizable(report: &Report) -> Verdict {
    report.linearizable.as_ref().unwrap().verdict
}

fn sequential(report: &Report) -> Verdict {
    report.sequential.as_ref().unwrap().verdict
}

#[test]
fn stale_read_violates_linearizability_but_not_sequential_consistency() {
    // Checks a read that returns an overwritten value after the overwrite completed.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(0, "write", "2", "ok", 20, 30),
            op(1, "read", "1", "ok", 40, 50),
        ]
        .concat(),
    );
    let report = run(&history);
    assert_eq!(linearizable(&report), Verdict::Violation);
    assert_eq!(sequential(&report), Verdict::Valid);
    let violation = &report.linearizable.as_ref().unwrap().violations[0];
    assert_eq!(violation.key, "x");
    assert_eq!(violation.operation, 2);
    assert!(
        violation.explanation.contains("read 1"),
        "{}",
        violation.explanation
    );
    assert!(
        violation.explanation.contains("held 2"),
        "{}",
        violation.explanation
    );
    // The smallest window needs only the second write and the read.
    assert_eq!(violation.window, vec![1, 2]);
    assert!(common::reference_sequential(&history));
}

#[test]
fn lost_write_is_reported_by_the_final_read() {
    // Checks that an acknowledged write missing from the final read is reported lost.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(1, "write", "2", "ok", 20, 30),
            op(2, "read", "1", "ok", 40, 50),
        ]
        .concat(),
    );
    let report = run(&history);
    let lost = report.lost_writes.as_ref().unwrap();
    assert_eq!(lost.verdict, Verdict::Violation);
    assert_eq!(lost.lost.len(), 1);
    assert_eq!(lost.lost[0].operation, 1);
    assert_eq!(report.verdict, Verdict::Violation);
}

#[test]
fn concurrent_final_write_is_not_lost() {
    // Checks that a write concurrent with the source of the final value is accounted for.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 30),
            op(1, "write", "2", "ok", 10, 20),
            op(2, "read", "1", "ok", 40, 50),
        ]
        .concat(),
    );
    let report = run(&history);
    assert_eq!(report.lost_writes.as_ref().unwrap().verdict, Verdict::Valid);
    assert_eq!(linearizable(&report), Verdict::Valid);
}

#[test]
fn read_of_a_value_never_written_is_explained() {
    // Checks the explanation names a value that no operation wrote.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(1, "read", "7", "ok", 20, 30),
        ]
        .concat(),
    );
    let report = run(&history);
    assert_eq!(linearizable(&report), Verdict::Violation);
    assert_eq!(sequential(&report), Verdict::Violation);
    let violation = &report.linearizable.as_ref().unwrap().violations[0];
    assert!(
        violation.explanation.contains("no operation ever wrote 7"),
        "{}",
        violation.explanation
    );
    assert_eq!(violation.window, vec![1]);
}

#[test]
fn non_monotonic_reads_across_sessions_violate_monotonic_reads() {
    // Checks a session that reads 2 then 1 after another session wrote 1 then 2.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(0, "write", "2", "ok", 20, 30),
            op(1, "read", "2", "ok", 40, 50),
            op(1, "read", "1", "ok", 60, 70),
        ]
        .concat(),
    );
    let report = run(&history);
    let session = report.session.as_ref().unwrap();
    assert_eq!(session.verdict, Verdict::Violation);
    let monotonic_reads = &session.guarantees[1];
    assert_eq!(monotonic_reads.guarantee, Guarantee::MonotonicReads);
    assert_eq!(monotonic_reads.verdict, Verdict::Violation);
    assert_eq!(monotonic_reads.violations[0].process, 1);
    assert_eq!(sequential(&report), Verdict::Violation);
}

#[test]
fn read_of_the_initial_value_after_own_write_violates_read_your_writes() {
    // Checks a session that writes and then reads the key as absent.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(0, "read", "null", "ok", 20, 30),
        ]
        .concat(),
    );
    let report = run(&history);
    let session = report.session.as_ref().unwrap();
    assert_eq!(session.guarantees[0].guarantee, Guarantee::ReadYourWrites);
    assert_eq!(session.guarantees[0].verdict, Verdict::Violation);
}

#[test]
fn concurrent_writes_are_valid_in_exactly_one_order() {
    // Checks two overlapping writes that reads force into one order, then a read that
    // would need the other order too.
    let mut lines = [
        op(0, "write", "1", "ok", 0, 100),
        op(1, "write", "2", "ok", 0, 100),
        op(2, "read", "1", "ok", 10, 20),
        op(3, "read", "2", "ok", 110, 120),
    ]
    .concat();
    let valid = parse_lines(&lines);
    assert_eq!(linearizable(&run(&valid)), Verdict::Valid);
    assert!(common::reference_linearizable(&valid));
    lines.extend(op(4, "read", "1", "ok", 130, 140));
    let invalid = parse_lines(&lines);
    assert_eq!(linearizable(&run(&invalid)), Verdict::Violation);
    assert!(!common::reference_linearizable(&invalid));
}

#[test]
fn info_write_that_must_have_happened() {
    // Checks that a read may observe an info write (its outcome is unknown).
    let history = parse_lines(
        &[
            op(0, "write", "5", "info", 0, 10),
            op(1, "read", "5", "ok", 20, 30),
        ]
        .concat(),
    );
    assert_eq!(linearizable(&run(&history)), Verdict::Valid);
}

#[test]
fn info_write_observed_long_after_its_info_line() {
    // Checks that an info write may take effect after its info completion was recorded.
    let history = parse_lines(
        &[
            op(0, "write", "5", "info", 0, 10),
            op(1, "write", "1", "ok", 20, 30),
            op(2, "read", "1", "ok", 40, 50),
            op(2, "read", "5", "ok", 60, 70),
        ]
        .concat(),
    );
    assert_eq!(linearizable(&run(&history)), Verdict::Valid);
}

#[test]
fn info_write_that_must_not_have_happened() {
    // Checks that an info write may be assumed never to have taken effect, and that an
    // info write cannot be used twice.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(1, "write", "2", "info", 20, 30),
            op(2, "read", "1", "ok", 40, 50),
        ]
        .concat(),
    );
    assert_eq!(linearizable(&run(&history)), Verdict::Valid);
    let twice = parse_lines(
        &[
            op(1, "write", "2", "info", 0, 5),
            op(2, "read", "2", "ok", 10, 20),
            op(0, "write", "1", "ok", 30, 40),
            op(2, "read", "2", "ok", 50, 60),
        ]
        .concat(),
    );
    assert_eq!(linearizable(&run(&twice)), Verdict::Violation);
}

#[test]
fn failed_operations_did_not_happen() {
    // Checks that a failed write is never observed and a failed cas has no effect.
    let history = parse_lines(
        &[
            op(0, "write", "1", "fail", 0, 10),
            op(1, "cas", "[null,3]", "fail", 15, 18),
            op(2, "read", "null", "ok", 20, 30),
        ]
        .concat(),
    );
    assert_eq!(linearizable(&run(&history)), Verdict::Valid);
    let observed = parse_lines(
        &[
            op(0, "write", "1", "fail", 0, 10),
            op(2, "read", "1", "ok", 20, 30),
        ]
        .concat(),
    );
    assert_eq!(linearizable(&run(&observed)), Verdict::Violation);
}

#[test]
fn cas_and_delete_follow_the_register_model() {
    // Checks a successful cas chain and a delete that makes the key read as null.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(1, "cas", "[1,2]", "ok", 20, 30),
            op(2, "read", "2", "ok", 40, 50),
            op(3, "delete", "null", "ok", 60, 70),
            op(2, "read", "null", "ok", 80, 90),
        ]
        .concat(),
    );
    assert_eq!(run(&history).verdict, Verdict::Valid);
    let wrong = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 10),
            op(1, "cas", "[2,3]", "ok", 20, 30),
        ]
        .concat(),
    );
    let report = run(&wrong);
    assert_eq!(linearizable(&report), Verdict::Violation);
    let violation = &report.linearizable.as_ref().unwrap().violations[0];
    assert!(
        violation.explanation.contains("cas 2 -> 3"),
        "{}",
        violation.explanation
    );
}

#[test]
fn keys_are_independent() {
    // Checks that each key is judged on its own and a violation names its key.
    let lines = [
        line(0, "invoke", "write", "a", "1", 0),
        line(0, "ok", "write", "a", "1", 10),
        line(1, "invoke", "read", "b", "null", 20),
        line(1, "ok", "read", "b", "1", 30),
        line(2, "invoke", "read", "a", "null", 40),
        line(2, "ok", "read", "a", "1", 50),
    ];
    let report = run(&parse_lines(&lines));
    let linear = report.linearizable.as_ref().unwrap();
    assert_eq!(linear.keys_valid, 1);
    assert_eq!(linear.violations.len(), 1);
    assert_eq!(linear.violations[0].key, "b");
}

#[test]
fn timeout_reports_unknown_never_valid() {
    // Checks that a search that runs out of time says unknown, even for a valid history.
    let history = parse_lines(
        &[
            op(0, "write", "1", "ok", 0, 100),
            op(1, "write", "2", "ok", 0, 100),
            op(2, "read", "1", "ok", 10, 120),
        ]
        .concat(),
    );
    let ticks = std::sync::atomic::AtomicU64::new(0);
    let clock = || ticks.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed);
    let options = CheckOptions {
        key_timeout_nanos: Some(1),
        clock_nanos: &clock,
        ..CheckOptions::default()
    };
    let report = check(&history, &options);
    assert_eq!(linearizable(&report), Verdict::Unknown);
    assert_eq!(report.verdict, Verdict::Unknown);
}

#[test]
fn report_renders_as_text_json_and_html() {
    // Checks the three outputs of a violation: text names the key, JSON parses, HTML is a
    // page with the timeline.
    let lines = [
        op(0, "write", "1", "ok", 0, 10),
        op(1, "read", "\"<7>\"", "ok", 20, 30),
    ];
    let history = parse_lines(&lines.concat());
    let report = run(&history);
    let text = report.text(&history);
    assert!(text.contains("linearizable   VIOLATION"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(json["linearizable"]["verdict"], "violation");
    let violation = &report.linearizable.as_ref().unwrap().violations[0];
    let page = html::timeline(&history, violation);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"));
    assert!(page.contains("&lt;7&gt;"));
    assert!(
        page.contains("the operation no order can complete"),
        "legend"
    );
    assert!(page.contains("time (ns)"), "axis");
}

#[test]
fn a_sequential_violation_renders_as_a_timeline_of_its_keys() {
    // Checks the page drawn for a whole-history sequential violation: both keys' operations,
    // labelled with their key, outlined, with the legend and the explanation.
    let lines = [
        common::op_on(0, "write", "x", "1", "ok", 0, 10),
        common::op_on(1, "write", "y", "1", "ok", 0, 10),
        common::op_on(0, "read", "y", "null", "ok", 20, 30),
        common::op_on(1, "read", "x", "null", "ok", 20, 30),
    ];
    let history = parse_lines(&lines.concat());
    let report = run(&history);
    let violation = &report.sequential.as_ref().unwrap().violations[0];
    let page = html::sequential_timeline(&history, violation);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        page.contains("x: write 1") && page.contains("y: read -&gt; null"),
        "{page}"
    );
    assert!(page.contains("in the conflict"), "legend");
    assert!(
        page.contains("Each key&#39;s") || page.contains("Each key's"),
        "explanation"
    );
    assert_eq!(
        page.matches("stroke=\"#202020\"").count(),
        4 + 1,
        "four outlined + legend"
    );
}

fn parse_error(text: &str) -> ParseError {
    parse_history(text, ParseOptions::default()).unwrap_err()
}

#[test]
fn bad_input_names_the_line() {
    // Checks each kind of unusable input is refused with its line number.
    let write = line(0, "invoke", "write", "x", "1", 0);
    let malformed = format!("{write}{{\"process\":0,\"type\":\n");
    assert!(matches!(
        parse_error(&malformed),
        ParseError::Malformed { line: 2, .. }
    ));
    let orphan = line(3, "ok", "write", "x", "1", 0);
    assert!(matches!(
        parse_error(&orphan),
        ParseError::CompletionWithoutInvoke { line: 1, .. }
    ));
    let second = format!("{write}{write}");
    assert!(matches!(
        parse_error(&second),
        ParseError::SecondInvoke { line: 2, .. }
    ));
    let unknown = line(0, "invoke", "increment", "x", "1", 0);
    let error = parse_error(&unknown);
    assert!(matches!(error, ParseError::UnknownFunction { line: 1, .. }));
    assert!(error.to_string().starts_with("line 1:"), "{error}");
    let info = line(0, "info", "write", "x", "1", 5);
    let reused = format!("{write}{info}{write}");
    assert!(matches!(
        parse_error(&reused),
        ParseError::ProcessReused { line: 3, .. }
    ));
}

#[test]
fn truncated_last_line_is_reported_and_may_be_skipped() {
    // Checks a history still being written: refused by default, checked up to the
    // truncated line with allow_truncated.
    let text = format!(
        "{}{}{{\"process\":1,\"type\":\"inv",
        line(0, "invoke", "write", "x", "1", 0),
        line(0, "ok", "write", "x", "1", 10)
    );
    assert!(matches!(
        parse_error(&text),
        ParseError::Truncated { line: 3, .. }
    ));
    let options = ParseOptions {
        allow_truncated: true,
    };
    let history = parse_history(&text, options).unwrap();
    assert_eq!(history.truncated_line, Some(3));
    assert_eq!(history.operations.len(), 1);
}
