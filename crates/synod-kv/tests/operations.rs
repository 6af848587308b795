//! Exact replies for every operation applied to a store in a known state.

mod common;

use common::{Harness, b, cas, delete, get, incr, put, put_if, txn_put, versioned};
use synod_kv::{
    CommandError, Compare, KvConfig, Operation, PutCondition, RangeEntry, Response, TxnOp,
    TxnResult, parse_integer,
};

#[test]
fn put_then_get_returns_the_value_with_its_revisions() {
    // Checks the replies of a first put, an overwrite, and gets of both states.
    let mut harness = Harness::new();
    assert_eq!(
        harness.run(put("a", "1")),
        Response::Put {
            revision: 1,
            written: true,
            previous: None
        }
    );
    assert_eq!(
        harness.run(get("a")),
        Response::Value {
            revision: 1,
            value: Some(versioned("1", 1, 1, 1))
        }
    );
    assert_eq!(
        harness.run(put_if("a", "2", PutCondition::Always, true)),
        Response::Put {
            revision: 2,
            written: true,
            previous: Some(versioned("1", 1, 1, 1))
        }
    );
    assert_eq!(
        harness.run(get("a")),
        Response::Value {
            revision: 2,
            value: Some(versioned("2", 1, 2, 2))
        }
    );
    assert_eq!(
        harness.run(get("missing")),
        Response::Value {
            revision: 2,
            value: None
        }
    );
    assert_eq!(harness.store.len(), 1);
    assert_eq!(harness.store.applied_index().get(), 5);
}

#[test]
fn put_conditions_cover_nx_xx_and_get() {
    // Checks SET NX and SET XX on absent and present keys, with and without GET.
    let mut harness = Harness::new();
    let put_xx = put_if("k", "x", PutCondition::IfPresent, true);
    assert_eq!(
        harness.run(put_xx),
        Response::Put {
            revision: 0,
            written: false,
            previous: None
        }
    );
    let put_nx = put_if("k", "n", PutCondition::IfAbsent, false);
    assert_eq!(
        harness.run(put_nx),
        Response::Put {
            revision: 1,
            written: true,
            previous: None
        }
    );
    let put_nx_get = put_if("k", "again", PutCondition::IfAbsent, true);
    assert_eq!(
        harness.run(put_nx_get),
        Response::Put {
            revision: 1,
            written: false,
            previous: Some(versioned("n", 1, 1, 1))
        }
    );
    let put_xx = put_if("k", "x", PutCondition::IfPresent, false);
    assert_eq!(
        harness.run(put_xx),
        Response::Put {
            revision: 2,
            written: true,
            previous: None
        }
    );
    assert_eq!(
        harness.store.get(b"k", None).unwrap(),
        Some(versioned("x", 1, 2, 2))
    );
}

#[test]
fn delete_counts_existing_keys_once_and_a_recreated_key_starts_a_new_generation() {
    // Checks the delete count (duplicates and absent keys not counted), that a delete of
    // nothing takes no revision, and create_revision/version after re-creation.
    let mut harness = Harness::new();
    harness.run(put("a", "1"));
    harness.run(put("b", "2"));
    assert_eq!(
        harness.run(delete(&["a", "a", "b", "c"])),
        Response::Deleted {
            revision: 3,
            count: 2
        }
    );
    assert_eq!(
        harness.run(delete(&["a"])),
        Response::Deleted {
            revision: 3,
            count: 0
        }
    );
    assert!(harness.store.is_empty());
    harness.run(put("a", "new"));
    assert_eq!(
        harness.store.get(b"a", None).unwrap(),
        Some(versioned("new", 4, 4, 1))
    );
}

#[test]
fn cas_writes_only_when_the_compare_holds_and_returns_the_current_value() {
    // Checks a failed and a successful compare-and-set and their replies.
    let mut harness = Harness::new();
    harness.run(put("k", "old"));
    assert_eq!(
        harness.run(cas("k", Compare::ValueEquals(Some(b("other"))), "new")),
        Response::Cas {
            revision: 1,
            succeeded: false,
            current: Some(versioned("old", 1, 1, 1))
        }
    );
    assert_eq!(
        harness.run(cas("k", Compare::ValueEquals(Some(b("old"))), "new")),
        Response::Cas {
            revision: 2,
            succeeded: true,
            current: Some(versioned("new", 1, 2, 2))
        }
    );
    assert_eq!(
        harness.run(cas("fresh", Compare::VersionEquals(0), "v")),
        Response::Cas {
            revision: 3,
            succeeded: true,
            current: Some(versioned("v", 3, 3, 1))
        }
    );
}

#[test]
fn compares_table() {
    // Checks every compare kind against an absent key and a key at version 2, revision 3.
    let mut harness = Harness::new();
    harness.run(put("other", "x"));
    harness.run(put("k", "a"));
    harness.run(put("k", "b"));
    let table = [
        ("k", Compare::ValueEquals(Some(b("b"))), true),
        ("k", Compare::ValueEquals(Some(b("a"))), false),
        ("k", Compare::ValueEquals(Some(b(""))), false),
        ("k", Compare::ValueEquals(None), false),
        ("absent", Compare::ValueEquals(None), true),
        ("absent", Compare::ValueEquals(Some(b(""))), false),
        ("k", Compare::VersionEquals(2), true),
        ("k", Compare::VersionEquals(1), false),
        ("k", Compare::VersionEquals(0), false),
        ("absent", Compare::VersionEquals(0), true),
        ("k", Compare::ModRevisionEquals(3), true),
        ("k", Compare::ModRevisionEquals(2), false),
        ("absent", Compare::ModRevisionEquals(0), true),
        ("absent", Compare::ModRevisionEquals(1), false),
    ];
    for (key, compare, expected) in table {
        let txn = Operation::Txn {
            compares: vec![(b(key), compare.clone())],
            success: vec![],
            failure: vec![],
        };
        let Response::Txn { succeeded, .. } = harness.run(txn) else {
            panic!("txn reply");
        };
        assert_eq!(succeeded, expected, "{key} {compare:?}");
    }
}

#[test]
fn incr_table() {
    // Checks Redis INCRBY semantics: absent is 0, strict integer parsing, overflow and
    // non-integers are errors that change nothing.
    let table: [(Option<&str>, i64, Result<i64, CommandError>); 14] = [
        (None, 1, Ok(1)),
        (None, -5, Ok(-5)),
        (Some("10"), 5, Ok(15)),
        (Some("0"), 0, Ok(0)),
        (Some("-3"), 3, Ok(0)),
        (Some("9223372036854775807"), 0, Ok(i64::MAX)),
        (
            Some("9223372036854775807"),
            1,
            Err(CommandError::IncrementOverflow),
        ),
        (
            Some("-9223372036854775808"),
            -1,
            Err(CommandError::IncrementOverflow),
        ),
        (Some("-9223372036854775808"), 1, Ok(i64::MIN + 1)),
        (
            Some("9223372036854775808"),
            1,
            Err(CommandError::NotAnInteger),
        ),
        (Some("abc"), 1, Err(CommandError::NotAnInteger)),
        (Some("01"), 1, Err(CommandError::NotAnInteger)),
        (Some(" 1"), 1, Err(CommandError::NotAnInteger)),
        (Some(""), 1, Err(CommandError::NotAnInteger)),
    ];
    for (initial, delta, expected) in table {
        let mut harness = Harness::new();
        if let Some(initial) = initial {
            harness.run(put("n", initial));
        }
        let revision_before = harness.store.revision();
        let response = harness.run(incr("n", delta));
        match expected {
            Ok(value) => {
                let revision = revision_before + 1;
                assert_eq!(
                    response,
                    Response::Integer { revision, value },
                    "{initial:?}"
                );
                let stored = harness.store.get(b"n", None).unwrap().unwrap().value;
                assert_eq!(stored, value.to_string(), "{initial:?}");
            }
            Err(error) => {
                assert_eq!(response, Response::Error(error), "{initial:?} {delta}");
                assert_eq!(harness.store.revision(), revision_before);
            }
        }
    }
}

#[test]
fn integers_parse_like_redis() {
    // Checks the strict parser on the forms Redis accepts and refuses.
    assert_eq!(parse_integer(b"123"), Some(123));
    assert_eq!(parse_integer(b"-123"), Some(-123));
    assert_eq!(parse_integer(b"0"), Some(0));
    for refused in [
        &b"-0"[..],
        b"+1",
        b"1 ",
        b"1.0",
        b"-",
        b"00",
        b"123456789012345678901",
    ] {
        assert_eq!(parse_integer(refused), None, "{refused:?}");
    }
}

#[test]
fn append_returns_the_new_length_and_refuses_oversized_values() {
    // Checks APPEND on an absent and a present key, and the value_size_max limit.
    let config = KvConfig {
        value_size_max: 64,
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config);
    let append = |suffix: &str| Operation::Append {
        key: b("s"),
        suffix: b(suffix),
    };
    assert_eq!(
        harness.run(append("hello")),
        Response::Length {
            revision: 1,
            length: 5
        }
    );
    assert_eq!(
        harness.run(append(" world")),
        Response::Length {
            revision: 2,
            length: 11
        }
    );
    assert_eq!(
        harness.store.get(b"s", None).unwrap(),
        Some(versioned("hello world", 1, 2, 2))
    );
    assert_eq!(
        harness.run(append(&"x".repeat(60))),
        Response::Error(CommandError::ValueTooLarge { size: 71, max: 64 })
    );
    assert_eq!(harness.store.revision(), 2);
}

#[test]
fn txn_runs_one_branch_whole_at_one_revision() {
    // Checks that a transaction's writes share one revision, that reads inside it see its
    // earlier writes, and that the failure branch runs when a compare fails.
    let mut harness = Harness::new();
    harness.run(put("x", "1"));
    let txn = |expected: &str| Operation::Txn {
        compares: vec![(b("x"), Compare::ValueEquals(Some(b(expected))))],
        success: vec![
            txn_put("a", "A"),
            TxnOp::Delete { key: b("x") },
            TxnOp::Get { key: b("a") },
        ],
        failure: vec![TxnOp::Get { key: b("x") }],
    };
    assert_eq!(
        harness.run(txn("1")),
        Response::Txn {
            revision: 2,
            succeeded: true,
            results: vec![
                TxnResult::Put,
                TxnResult::Deleted { count: 1 },
                TxnResult::Value(Some(versioned("A", 2, 2, 1))),
            ]
        }
    );
    assert_eq!(
        harness.run(txn("1")),
        Response::Txn {
            revision: 2,
            succeeded: false,
            results: vec![TxnResult::Value(None)]
        }
    );
}

#[test]
fn txn_refusals_leave_the_store_unchanged() {
    // Checks all-or-nothing: a branch with an oversized value, a key written twice or too
    // many ops is refused before any of its writes happen.
    let config = KvConfig {
        txn_ops_max: 3,
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config);
    harness.run(put("keep", "v"));
    let before = harness.store.range(b"", None, 0, None).unwrap();
    let oversized = "v".repeat(KvConfig::default().value_size_max + 1);
    let refusals = [
        (
            vec![txn_put("a", "1"), txn_put("b", &oversized)],
            CommandError::ValueTooLarge {
                size: oversized.len() as u64,
                max: KvConfig::default().value_size_max as u64,
            },
        ),
        (
            vec![txn_put("a", "1"), TxnOp::Delete { key: b("a") }],
            CommandError::TxnDuplicateKey { key: b("a") },
        ),
        (
            vec![
                txn_put("a", "1"),
                txn_put("b", "1"),
                txn_put("c", "1"),
                txn_put("d", "1"),
            ],
            CommandError::TooManyOperations { count: 4, max: 3 },
        ),
    ];
    for (success, error) in refusals {
        let mset = Operation::Txn {
            compares: vec![],
            success,
            failure: vec![],
        };
        assert_eq!(harness.run(mset), Response::Error(error));
    }
    assert_eq!(harness.store.revision(), 1);
    assert_eq!(harness.store.len(), 1);
    assert_eq!(harness.store.range(b"", None, 0, None).unwrap(), before);
}

#[test]
fn mset_is_a_txn_without_compares() {
    // Checks that an MSET-shaped txn writes every key at the same revision.
    let mut harness = Harness::new();
    let mset = Operation::Txn {
        compares: vec![],
        success: vec![txn_put("a", "1"), txn_put("b", "2")],
        failure: vec![],
    };
    assert_eq!(
        harness.run(mset),
        Response::Txn {
            revision: 1,
            succeeded: true,
            results: vec![TxnResult::Put, TxnResult::Put]
        }
    );
    let page = harness.store.range(b"a", None, 0, None).unwrap();
    assert_eq!(
        page.entries,
        vec![
            RangeEntry {
                key: b("a"),
                value: versioned("1", 1, 1, 1)
            },
            RangeEntry {
                key: b("b"),
                value: versioned("2", 1, 1, 1)
            },
        ]
    );
}

#[test]
fn oversized_keys_and_limits_are_refused_with_the_limit_named() {
    // Checks the validation errors for key size, delete count and range limit.
    let config = KvConfig {
        key_size_max: 4,
        txn_ops_max: 2,
        range_limit_max: 10,
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config);
    let error = harness.run(put("toolong", "v"));
    assert_eq!(
        error,
        Response::Error(CommandError::KeyTooLarge { size: 7, max: 4 })
    );
    let Response::Error(error) = error else {
        unreachable!()
    };
    assert_eq!(
        error.to_string(),
        "key is 7 bytes, more than key_size_max (4)"
    );
    assert_eq!(
        harness.run(delete(&["a", "b", "c"])),
        Response::Error(CommandError::TooManyOperations { count: 3, max: 2 })
    );
    let range = Operation::Range {
        start: b(""),
        end: None,
        limit: 11,
        revision: None,
    };
    assert_eq!(
        harness.run(range),
        Response::Error(CommandError::RangeLimitTooLarge { limit: 11, max: 10 })
    );
    assert_eq!(harness.store.revision(), 0);
}

#[test]
fn malformed_payloads_get_an_error_reply_and_advance_the_applied_index() {
    // Checks that garbage is answered with a Malformed error naming the problem, identically
    // on every replica, and that the entry still counts as applied.
    let mut harness = Harness::new();
    let response = harness.apply_bytes(&[1, 0, 200]);
    assert_eq!(
        response,
        Response::Error(CommandError::Malformed {
            reason: "cannot decode operation.tag at byte 2: tag 200 is not one of the known \
                     values"
                .to_string()
        })
    );
    assert_eq!(harness.store.applied_index().get(), 1);
    let mut other = Harness::new();
    assert_eq!(other.apply_bytes(&[1, 0, 200]), response);
    assert_eq!(other.store.digest(), harness.store.digest());
}

#[test]
#[should_panic(expected = "is not above the applied index")]
fn applying_an_index_twice_is_a_bug() {
    // Checks that applying out of log order trips the assertion.
    let mut harness = Harness::new();
    harness.run(put("a", "1"));
    harness.index -= 1;
    harness.run(put("a", "2"));
}

#[test]
fn noop_entries_advance_the_index_and_log_time_only() {
    // Checks apply_noop and that log time never goes backwards.
    let mut harness = Harness::new();
    harness.time_ns = 50;
    let ctx = harness.context();
    harness.store.apply_noop(ctx);
    assert_eq!(harness.store.applied_index().get(), 1);
    assert_eq!(harness.store.log_time(), 50);
    harness.index = 1;
    harness.time_ns = 20;
    harness.run(put("a", "1"));
    assert_eq!(harness.store.log_time(), 50);
    assert_eq!(harness.store.revision(), 1);
}
