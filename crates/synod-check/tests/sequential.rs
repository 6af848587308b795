//! Sequential consistency of the whole history: hand-written histories with known verdicts,
//! the budget, and generated histories against a brute-force reference.

mod common;

use common::{history as parse_lines, op_on};
use proptest::prelude::*;
use synod_check::generate::{Shape, generate, generate_with_order};
use synod_check::sequential::{SequentialMethod, SequentialScope};
use synod_check::{
    Call, CheckOptions, History, Models, Outcome, ParseOptions, Report, Value, Verdict, check,
    parse_history,
};

const SEQUENTIAL_ONLY: Models = Models {
    linearizable: false,
    sequential: true,
    session: false,
    lost_writes: false,
};

fn run(history: &History) -> Report {
    common::check_models(history, SEQUENTIAL_ONLY)
}

fn verdict(history: &History) -> Verdict {
    run(history).sequential.unwrap().verdict
}

/// The classic history: p0 writes x=1 then reads y as absent, p1 writes y=1 then reads x
/// as absent. Each key alone has an order; together they do not.
fn classic() -> Vec<String> {
    [
        op_on(0, "write", "x", "1", "ok", 0, 10),
        op_on(1, "write", "y", "1", "ok", 0, 10),
        op_on(0, "read", "y", "null", "ok", 20, 30),
        op_on(1, "read", "x", "null", "ok", 20, 30),
    ]
    .concat()
}

#[test]
fn classic_two_key_history_is_not_sequentially_consistent() {
    // Checks the classic store-buffering history fails as a whole, though each key passes,
    // and that the explanation names both processes, both keys and the cycle.
    let history = parse_lines(&classic());
    let report = run(&history);
    let model = report.sequential.as_ref().unwrap();
    assert_eq!(model.verdict, Verdict::Violation);
    assert_eq!(
        model.keys_valid, 2,
        "each key alone is sequentially consistent"
    );
    assert_eq!(model.method, SequentialMethod::Search);
    let violation = &model.violations[0];
    assert_eq!(violation.scope, SequentialScope::History);
    assert_eq!(violation.processes, vec![0, 1]);
    assert_eq!(violation.keys, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(violation.operations.len(), 4);
    let text = &violation.explanation;
    assert!(text.contains("processes 0, 1 conflict"), "{text}");
    assert!(
        text.contains("initial null, which no operation writes back"),
        "{text}"
    );
    assert!(text.contains("a cycle"), "{text}");
    assert!(common::reference_sequential(&history), "per key it passes");
    assert!(!common::reference_sequential_history(&history));
}

struct Case {
    name: &'static str,
    lines: Vec<String>,
    valid: bool,
}

fn cases() -> Vec<Case> {
    let extra = |more: Vec<Vec<String>>| [classic(), more.concat()].concat();
    vec![
        Case {
            name: "classic",
            lines: classic(),
            valid: false,
        },
        Case {
            name: "one read sees the other write",
            lines: [
                op_on(0, "write", "x", "1", "ok", 0, 10),
                op_on(1, "write", "y", "1", "ok", 0, 10),
                op_on(0, "read", "y", "null", "ok", 20, 30),
                op_on(1, "read", "x", "1", "ok", 20, 30),
            ]
            .concat(),
            valid: true,
        },
        Case {
            name: "stale read across processes: sequential but not linearizable",
            lines: [
                op_on(0, "write", "x", "1", "ok", 0, 10),
                op_on(1, "read", "x", "null", "ok", 20, 30),
                op_on(1, "read", "x", "1", "ok", 40, 50),
            ]
            .concat(),
            valid: true,
        },
        Case {
            name: "three processes in a ring",
            lines: [
                op_on(0, "write", "x", "1", "ok", 0, 10),
                op_on(1, "write", "y", "1", "ok", 0, 10),
                op_on(2, "write", "z", "1", "ok", 0, 10),
                op_on(0, "read", "y", "null", "ok", 20, 30),
                op_on(1, "read", "z", "null", "ok", 20, 30),
                op_on(2, "read", "x", "null", "ok", 20, 30),
            ]
            .concat(),
            valid: false,
        },
        Case {
            name: "a ring broken by a delete that may come first",
            lines: extra(vec![op_on(2, "delete", "y", "null", "ok", 0, 100)]),
            valid: true,
        },
        Case {
            name: "an info write that must have happened does not help",
            lines: [
                op_on(0, "write", "x", "1", "ok", 0, 10),
                op_on(0, "read", "y", "null", "ok", 20, 30),
                op_on(1, "write", "y", "1", "info", 0, 10),
                op_on(2, "read", "y", "1", "ok", 40, 50),
                op_on(2, "read", "x", "null", "ok", 60, 70),
            ]
            .concat(),
            valid: false,
        },
        Case {
            name: "an info write that may have happened late",
            lines: [
                op_on(0, "write", "x", "1", "ok", 0, 10),
                op_on(0, "read", "x", "2", "ok", 20, 30),
                op_on(1, "write", "x", "2", "info", 0, 5),
                op_on(2, "read", "x", "2", "ok", 40, 50),
                op_on(2, "read", "y", "null", "ok", 60, 70),
            ]
            .concat(),
            valid: true,
        },
        Case {
            name: "cas chains across keys",
            lines: [
                op_on(0, "write", "x", "1", "ok", 0, 10),
                op_on(0, "cas", "y", "[null,1]", "ok", 20, 30),
                op_on(1, "cas", "y", "[1,2]", "ok", 0, 5),
                op_on(1, "read", "x", "null", "ok", 40, 50),
            ]
            .concat(),
            valid: false,
        },
        Case {
            name: "failed operations do not count",
            lines: extra(vec![op_on(3, "write", "x", "null", "fail", 0, 5)]),
            valid: false,
        },
    ]
}

#[test]
fn hand_written_histories_have_their_verdicts() {
    // Checks a table of small multi-key histories against their known verdicts and the
    // brute-force reference.
    for case in cases() {
        let history = parse_lines(&case.lines);
        let expected = if case.valid {
            Verdict::Valid
        } else {
            Verdict::Violation
        };
        assert_eq!(verdict(&history), expected, "{}", case.name);
        let reference = common::reference_sequential_history(&history);
        assert_eq!(
            reference, case.valid,
            "reference disagrees on {}",
            case.name
        );
    }
}

#[test]
fn a_key_that_fails_alone_fails_the_history_without_a_search() {
    // Checks the fast path: a key whose own operations cannot be ordered is a violation of
    // the whole history, reported with scope "key".
    let history = parse_lines(
        &[
            op_on(0, "write", "x", "1", "ok", 0, 10),
            op_on(0, "write", "x", "2", "ok", 20, 30),
            op_on(1, "read", "x", "2", "ok", 40, 50),
            op_on(1, "read", "x", "1", "ok", 60, 70),
        ]
        .concat(),
    );
    let report = run(&history);
    let model = report.sequential.as_ref().unwrap();
    assert_eq!(model.verdict, Verdict::Violation);
    assert_eq!(model.method, SequentialMethod::KeyViolation);
    assert_eq!(model.search_nodes, 0);
    assert_eq!(model.violations[0].scope, SequentialScope::Key);
    assert_eq!(model.violations[0].keys, vec!["x".to_string()]);
}

#[test]
fn an_overwritten_value_read_again_is_explained_as_a_cycle() {
    // Checks the derived "overwrites" step: process 1 writes 1 then 2, process 0 reads 2
    // then 1; the explanation is a cycle through the write of 1 and both reads.
    let history = parse_lines(
        &[
            op_on(1, "write", "x", "1", "ok", 0, 10),
            op_on(1, "write", "x", "2", "ok", 20, 30),
            op_on(0, "read", "x", "2", "ok", 40, 50),
            op_on(0, "read", "x", "1", "ok", 60, 70),
        ]
        .concat(),
    );
    let model = run(&history).sequential.unwrap();
    let violation = &model.violations[0];
    assert_eq!(violation.scope, SequentialScope::Key);
    assert_eq!(violation.operations, vec![0, 1, 2, 3]);
    let text = &violation.explanation;
    assert!(text.contains("a cycle"), "{text}");
    let derived = text.contains("writes the key after that") || text.contains("before that write");
    assert!(derived, "{text}");
}

#[test]
fn linearizable_keys_need_no_search() {
    // Checks the other fast path: when every key is linearizable the history is valid and
    // no configuration is expanded.
    let shape = Shape {
        operations: 200,
        keys: 5,
        processes: 4,
        values: 3,
        info_rate: 0.05,
        process_lag_ns_max: 0,
        seed: 3,
    };
    let history = parse_history(&generate(&shape), ParseOptions::default()).unwrap();
    let report = run(&history);
    let model = report.sequential.as_ref().unwrap();
    assert_eq!(model.verdict, Verdict::Valid);
    assert_eq!(model.method, SequentialMethod::EveryKeyLinearizable);
    assert_eq!(model.search_nodes, 0);
}

#[test]
fn an_exhausted_budget_is_unknown_never_valid() {
    // Checks that a whole-history search stopped by its configuration budget says unknown:
    // on lagged histories (valid) whose unbounded search needs more configurations than
    // the budget allows, the budgeted verdict is unknown, never valid.
    let nodes_max = 5;
    let bounded = CheckOptions {
        models: SEQUENTIAL_ONLY,
        sequential_nodes_max: nodes_max,
        ..CheckOptions::default()
    };
    let mut exercised_count = 0;
    for seed in 0..40 {
        let history = lagged(seed, 80, 3, 4);
        let unbounded = run(&history).sequential.unwrap();
        assert_eq!(unbounded.verdict, Verdict::Valid, "seed {seed}");
        if unbounded.method != SequentialMethod::Search || unbounded.search_nodes < nodes_max {
            continue;
        }
        exercised_count += 1;
        let model = check(&history, &bounded).sequential.unwrap();
        assert_eq!(model.verdict, Verdict::Unknown, "seed {seed}");
        let reason = model.unknown_reason.unwrap();
        assert!(reason.contains("budget of 5 configurations"), "{reason}");
    }
    assert!(exercised_count > 0, "no seed needed the search");
}

#[test]
fn a_reported_order_decides_without_a_search() {
    // Checks the reported-order path: on lagged histories (valid, not linearizable) whose
    // check without `index` fields needs the whole-history search, the same histories with
    // the model's order as `index` are decided valid from that order (directly, or from the
    // keys' own orders, which the reported order gives each key), with no configuration
    // expanded.
    let mut exercised_count = 0;
    for seed in 0..40 {
        let shape = Shape {
            operations: 80,
            keys: 3,
            processes: 4,
            values: 3,
            info_rate: 0.05,
            process_lag_ns_max: 3_000,
            seed,
        };
        let plain = parse_history(&generate(&shape), ParseOptions::default()).unwrap();
        let without = run(&plain).sequential.unwrap();
        if without.method != SequentialMethod::Search {
            continue;
        }
        exercised_count += 1;
        let text = generate_with_order(&shape);
        let reported = parse_history(&text, ParseOptions::default()).unwrap();
        let model = run(&reported).sequential.unwrap();
        assert_eq!(model.verdict, Verdict::Valid, "seed {seed}");
        let from_order = [
            SequentialMethod::ReportedOrder,
            SequentialMethod::MergedKeyOrders,
        ];
        assert!(from_order.contains(&model.method), "seed {seed}");
        assert_eq!(model.search_nodes, 0, "seed {seed}");
    }
    assert!(exercised_count > 0, "no seed needed the search");
}

#[test]
fn a_reported_order_never_changes_a_verdict() {
    // Checks that `index` fields are a hint, verified step by step: the classic history
    // whose indexes claim an order (x written, y written, then both reads) stays a
    // violation, found by the search.
    let indexes = [1, 2, 3, 4];
    let lines: Vec<String> = classic()
        .into_iter()
        .enumerate()
        .map(|(position, line)| {
            if position % 2 == 0 {
                return line;
            }
            let index = indexes[position / 2];
            let body = line.trim_end().trim_end_matches('}');
            format!("{body},\"index\":{index}}}\n")
        })
        .collect();
    let history = parse_lines(&lines);
    assert!(
        history
            .operations
            .iter()
            .all(|operation| operation.index.is_some())
    );
    let model = run(&history).sequential.unwrap();
    assert_eq!(model.verdict, Verdict::Violation);
    assert_eq!(model.method, SequentialMethod::Search);
}

#[test]
fn the_sequential_shape_is_decided_valid() {
    // Checks that the benchmark's `sequential` shape (lagged processes, not linearizable)
    // is decided valid by the whole-history search, seed 1.
    let shape = Shape::named("sequential", 1).unwrap();
    let history = parse_history(&generate(&shape), ParseOptions::default()).unwrap();
    let report = check(&history, &CheckOptions::default());
    assert_eq!(
        report.linearizable.as_ref().unwrap().verdict,
        Verdict::Violation
    );
    let model = report.sequential.as_ref().unwrap();
    assert_eq!(model.verdict, Verdict::Valid, "{:?}", model.unknown_reason);
    assert_eq!(report.session.as_ref().unwrap().verdict, Verdict::Valid);
}

/// A generated history whose processes lag by up to 3 µs: sequentially consistent by
/// construction, usually not linearizable.
fn lagged(seed: u64, operations: usize, keys: usize, processes: usize) -> History {
    let shape = Shape {
        operations,
        keys,
        processes,
        values: 3,
        info_rate: 0.05,
        process_lag_ns_max: 3_000,
        seed,
    };
    parse_history(&generate(&shape), ParseOptions::default()).expect("generated histories parse")
}

fn ok_reads(history: &History) -> Vec<usize> {
    (0..history.operations.len())
        .filter(|&index| {
            let operation = &history.operations[index];
            operation.outcome == Outcome::Ok && matches!(operation.call, Call::Read(_))
        })
        .collect()
}

/// Cases per property (`SYNOD_CHECK_CASES` for a longer sweep).
fn cases_count() -> u32 {
    common::cases_count(1000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases_count(),
        max_global_rejects: cases_count(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn lagged_histories_are_sequentially_consistent(
        seed in any::<u64>(),
        operations in 1usize..80,
        keys in 1usize..4,
        processes in 1usize..6,
    ) {
        // Checks that a history sequentially consistent by construction passes, however
        // its processes lag.
        let history = lagged(seed, operations, keys, processes);
        prop_assert_eq!(verdict(&history), Verdict::Valid, "seed {}", seed);
    }

    #[test]
    fn mutated_multi_key_histories_agree_with_the_reference(
        seed in any::<u64>(),
        operations in 2usize..16,
        keys in 2usize..4,
        processes in 2usize..5,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), 0u64..4), 0..3),
    ) {
        // Checks the whole-history verdict against brute force after changing up to two
        // reads of a lagged multi-key history to arbitrary values.
        let mut history = lagged(seed, operations, keys, processes);
        let reads = ok_reads(&history);
        for (pick, choice) in &mutations {
            if reads.is_empty() {
                break;
            }
            let value = if *choice == 3 { Value::Null } else { Value::Int(*choice as i64) };
            history.operations[reads[pick.index(reads.len())]].call = Call::Read(value);
        }
        let expected = common::reference_sequential_history(&history);
        let got = verdict(&history);
        prop_assert_ne!(got, Verdict::Unknown, "seed {}", seed);
        prop_assert_eq!(got == Verdict::Valid, expected, "seed {}", seed);
    }
}
