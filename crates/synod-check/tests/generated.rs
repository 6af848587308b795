//! Generated histories: valid by construction, then mutated. The fast searches are compared
//! with brute-force reference checkers on thousands of small cases.

mod common;

use proptest::prelude::*;
use synod_check::generate::{Shape, generate};
use synod_check::parse_history;
use synod_check::{Call, CheckOptions, History, Outcome, ParseOptions, Value, Verdict, check};

fn generated(seed: u64, operations: usize, keys: usize, processes: usize, values: u64) -> History {
    let shape = Shape {
        operations,
        keys,
        processes,
        values,
        info_rate: 0.1,
        process_lag_ns_max: 0,
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

fn value_of(choice: u64, values: u64) -> Value {
    if choice == values {
        Value::Null
    } else {
        Value::Int(choice as i64)
    }
}

/// Cases per property (`SYNOD_CHECK_CASES` for a longer sweep).
fn cases() -> u32 {
    common::cases_count(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_global_rejects: cases(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_histories_pass_every_model(
        seed in any::<u64>(),
        operations in 1usize..60,
        keys in 1usize..4,
        processes in 1usize..8,
        values in 1u64..5,
    ) {
        // Checks that a history valid by construction is valid under every model.
        let history = generated(seed, operations, keys, processes, values);
        let report = check(&history, &CheckOptions::default());
        prop_assert_eq!(report.verdict, Verdict::Valid, "seed {}: {}", seed, report.text(&history));
    }

    #[test]
    fn a_read_of_a_value_never_written_fails(
        seed in any::<u64>(),
        operations in 2usize..60,
        processes in 1usize..8,
        pick in any::<prop::sample::Index>(),
    ) {
        // Checks that mutating one read to a value nobody wrote is always a violation that
        // names that read.
        let mut history = generated(seed, operations, 2, processes, 3);
        let reads = ok_reads(&history);
        prop_assume!(!reads.is_empty());
        let read = reads[pick.index(reads.len())];
        history.operations[read].call = Call::Read(Value::Int(1_000));
        let report = check(&history, &CheckOptions::default());
        let linear = report.linearizable.as_ref().unwrap();
        prop_assert_eq!(linear.verdict, Verdict::Violation);
        prop_assert_eq!(linear.violations[0].operation, read);
        prop_assert!(linear.violations[0].window.contains(&read));
    }

    #[test]
    fn mutated_histories_agree_with_the_reference(
        seed in any::<u64>(),
        operations in 2usize..22,
        processes in 1usize..6,
        values in 1u64..4,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), 0u64..4), 1..3),
    ) {
        // Checks linearizability and sequential consistency verdicts against brute force
        // after mutating one or two reads to arbitrary values.
        let mut history = generated(seed, operations, 1, processes, values);
        let reads = ok_reads(&history);
        prop_assume!(!reads.is_empty());
        for (pick, choice) in &mutations {
            let read = reads[pick.index(reads.len())];
            history.operations[read].call = Call::Read(value_of(*choice % (values + 1), values));
        }
        let report = check(&history, &CheckOptions::default());
        let expected_linear = common::reference_linearizable(&history);
        let linear = report.linearizable.as_ref().unwrap().verdict;
        prop_assert_eq!(linear == Verdict::Valid, expected_linear, "linearizable, seed {}", seed);
        prop_assert_ne!(linear, Verdict::Unknown);
        let expected_sequential = common::reference_sequential(&history);
        let sequential = report.sequential.as_ref().unwrap().verdict;
        let sequential_valid = sequential == Verdict::Valid;
        prop_assert_eq!(sequential_valid, expected_sequential, "sequential, seed {}", seed);
    }

    #[test]
    fn concurrent_histories_agree_with_the_reference(
        seed in any::<u64>(),
        operations in 2usize..26,
        processes in 3usize..9,
        pick in any::<prop::sample::Index>(),
        choice in 0u64..3,
    ) {
        // Checks the linearizability verdict against brute force on highly concurrent
        // single-key histories with two values, where absorption and dominance matter most.
        let mut history = generated(seed, operations, 1, processes, 2);
        let reads = ok_reads(&history);
        if !reads.is_empty() {
            let read = reads[pick.index(reads.len())];
            history.operations[read].call = Call::Read(value_of(choice, 2));
        }
        let report = check(&history, &CheckOptions::default());
        let linear = report.linearizable.as_ref().unwrap().verdict;
        prop_assert_eq!(linear == Verdict::Valid, common::reference_linearizable(&history));
    }
}
