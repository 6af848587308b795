//! Session guarantees with values written more than once: hand-written histories with known
//! verdicts, the undecided case, and generated histories against a brute-force reference.

mod common;

use common::{history as parse_lines, op};
use proptest::prelude::*;
use synod_check::generate::{Shape, generate};
use synod_check::session::Guarantee;
use synod_check::{
    Call, CheckOptions, History, Models, Outcome, ParseOptions, Report, Value, Verdict, check,
    parse_history,
};

const SESSION_ONLY: Models = Models {
    linearizable: false,
    sequential: false,
    session: true,
    lost_writes: false,
};

fn run(history: &History) -> Report {
    common::check_models(history, SESSION_ONLY)
}

/// A read of a value nobody wrote, by a process of its own: the key then has no sequential
/// order, so the session check must decide ambiguous reads itself. It constrains no version.
fn poison() -> Vec<String> {
    op(9, "read", "99", "ok", 1_000, 1_010)
}

struct Case {
    name: &'static str,
    lines: Vec<Vec<String>>,
    /// `None`: every guarantee holds; `Some(g)`: a violation blamed on `g`.
    violated: Option<Guarantee>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "read-your-writes holds through the other write of the value",
            lines: vec![
                op(0, "write", "1", "ok", 0, 10),
                op(0, "write", "2", "ok", 20, 30),
                op(0, "read", "1", "ok", 40, 50),
                op(1, "write", "1", "ok", 0, 100),
            ],
            violated: None,
        },
        Case {
            name: "read-your-writes fails whichever write of the value was read",
            lines: vec![
                op(0, "write", "1", "ok", 0, 10),
                op(0, "write", "2", "ok", 20, 30),
                op(0, "read", "1", "ok", 40, 50),
                op(1, "write", "1", "ok", 0, 10),
                op(1, "read", "2", "ok", 60, 70),
            ],
            violated: Some(Guarantee::ReadYourWrites),
        },
        Case {
            name: "monotonic reads hold when the second read saw a later write",
            lines: vec![
                op(0, "write", "1", "ok", 0, 10),
                op(1, "write", "2", "ok", 20, 30),
                op(2, "write", "1", "ok", 40, 50),
                op(3, "read", "1", "ok", 15, 18),
                op(3, "read", "2", "ok", 35, 38),
                op(3, "read", "1", "ok", 60, 70),
            ],
            violated: None,
        },
        Case {
            name: "monotonic reads fail when every write of the value is older",
            lines: vec![
                op(0, "write", "1", "ok", 0, 10),
                op(0, "write", "2", "ok", 20, 30),
                op(1, "write", "1", "ok", 0, 10),
                op(1, "read", "2", "ok", 40, 50),
                op(3, "read", "2", "ok", 60, 70),
                op(3, "read", "1", "ok", 80, 90),
            ],
            violated: Some(Guarantee::MonotonicReads),
        },
        Case {
            name: "absent again after a delete",
            lines: vec![
                op(0, "write", "1", "ok", 0, 10),
                op(1, "delete", "null", "ok", 20, 30),
                op(2, "read", "null", "ok", 0, 5),
                op(2, "read", "1", "ok", 12, 15),
                op(2, "read", "null", "ok", 40, 50),
            ],
            violated: None,
        },
        Case {
            name: "writes-follow-reads fails when both writes of the value follow",
            lines: vec![
                op(2, "read", "1", "ok", 0, 10),
                op(2, "write", "3", "ok", 20, 30),
                op(0, "read", "3", "ok", 40, 50),
                op(0, "write", "1", "ok", 60, 70),
                op(1, "read", "3", "ok", 40, 50),
                op(1, "write", "1", "ok", 60, 70),
            ],
            violated: Some(Guarantee::WritesFollowReads),
        },
    ]
}

fn check_case(case: &Case, lines: &[String]) {
    let history = parse_lines(lines);
    let report = run(&history);
    let session = report.session.as_ref().unwrap();
    match case.violated {
        None => assert_eq!(session.verdict, Verdict::Valid, "{}", case.name),
        Some(guarantee) => {
            assert_eq!(session.verdict, Verdict::Violation, "{}", case.name);
            let blamed = session
                .guarantees
                .iter()
                .find(|report| !report.violations.is_empty())
                .unwrap();
            assert_eq!(blamed.guarantee, guarantee, "{}", case.name);
        }
    }
    let reference = common::reference_session(&history);
    assert_eq!(
        reference,
        case.violated.is_none(),
        "reference: {}",
        case.name
    );
    assert!(
        session.reads_ambiguous > 0,
        "{}: no ambiguous read",
        case.name
    );
}

#[test]
fn ambiguous_reads_are_decided_by_the_keys_order_or_by_search() {
    // Checks a table of histories whose reads return values written more than once, both
    // as they are and with a poison read that takes the key's sequential order away (so
    // the candidates are searched), against known verdicts and the brute-force reference.
    for case in cases() {
        let lines = case.lines.concat();
        check_case(&case, &lines);
        let poisoned = [lines, poison()].concat();
        check_case(&case, &poisoned);
        let report = run(&parse_lines(&poisoned));
        let session = report.session.unwrap();
        assert_eq!(session.keys_decided_by_order, 0, "{}", case.name);
        assert_eq!(session.reads_unwritten, 1, "{}", case.name);
    }
}

#[test]
fn a_violation_through_every_candidate_is_explained_per_candidate() {
    // Checks the words of a read-your-writes violation where the value read was written
    // twice: each candidate write gets its own cycle.
    let case = &cases()[1];
    let history = parse_lines(&[case.lines.concat(), poison()].concat());
    let report = run(&history);
    let guarantee = &report.session.as_ref().unwrap().guarantees[0];
    let text = &guarantee.violations[0].explanation;
    assert!(text.contains("could have seen any of 2 versions"), "{text}");
    assert!(text.contains("if it saw 1 (written by process 0"), "{text}");
    assert!(text.contains("if it saw 1 (written by process 1"), "{text}");
}

#[test]
fn a_search_out_of_budget_is_undecided_never_valid() {
    // Checks that when the candidate search runs out of steps the guarantees involved are
    // reported undecided (unknown), naming the key, instead of valid or skipped.
    let lines = [cases()[0].lines.concat(), poison()].concat();
    let history = parse_lines(&lines);
    let options = CheckOptions {
        models: SESSION_ONLY,
        session_steps_max: 1,
        ..CheckOptions::default()
    };
    let report = check(&history, &options);
    let session = report.session.as_ref().unwrap();
    assert_eq!(session.verdict, Verdict::Unknown);
    assert_eq!(session.keys_undecided, 1);
    let undecided: Vec<_> = session
        .guarantees
        .iter()
        .filter(|guarantee| guarantee.verdict == Verdict::Unknown)
        .collect();
    assert!(!undecided.is_empty());
    assert_eq!(undecided[0].undecided[0].key, "x");
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(report.text(&history).contains("undecided on key \"x\""));
}

fn generated(seed: u64, operations: usize, processes: usize) -> History {
    let shape = Shape {
        operations,
        keys: 1,
        processes,
        values: 2,
        info_rate: 0.1,
        process_lag_ns_max: 0,
        seed,
    };
    parse_history(&generate(&shape), ParseOptions::default()).expect("generated histories parse")
}

fn versions_count(history: &History) -> usize {
    history
        .operations
        .iter()
        .filter(|operation| {
            operation.outcome != Outcome::Fail && operation.call.written_value().is_some()
        })
        .count()
}

/// Cases per property (`SYNOD_CHECK_CASES` for a longer sweep).
fn cases_count() -> u32 {
    common::cases_count(1000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases_count(),
        max_global_rejects: 4 * cases_count(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_histories_agree_with_the_reference(
        seed in any::<u64>(),
        operations in 2usize..16,
        processes in 1usize..5,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), 0u64..3), 1..3),
        poisoned in any::<bool>(),
    ) {
        // Checks the session verdict against brute force on histories with two values (so
        // most reads are ambiguous) after changing one or two reads, with or without a
        // poison read that forces the candidate search.
        let mut history = generated(seed, operations, processes);
        prop_assume!(versions_count(&history) <= 7);
        let reads: Vec<usize> = (0..history.operations.len())
            .filter(|&index| {
                let operation = &history.operations[index];
                operation.outcome == Outcome::Ok && matches!(operation.call, Call::Read(_))
            })
            .collect();
        prop_assume!(!reads.is_empty());
        for (pick, choice) in &mutations {
            let value = if *choice == 2 { Value::Null } else { Value::Int(*choice as i64) };
            history.operations[reads[pick.index(reads.len())]].call = Call::Read(value);
        }
        if poisoned {
            history.operations[reads[0]].call = Call::Read(Value::Int(99));
        }
        let report = run(&history);
        let verdict = report.session.as_ref().unwrap().verdict;
        prop_assert_ne!(verdict, Verdict::Unknown, "seed {}", seed);
        let expected = common::reference_session(&history);
        prop_assert_eq!(verdict == Verdict::Valid, expected, "seed {}: {}", seed,
            report.text(&history));
    }
}
