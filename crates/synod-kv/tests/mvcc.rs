//! Multi-version reads: gets at a revision, ranges in key order and paging, compaction.

mod common;

use common::{Harness, b, delete, get_at, put, versioned};
use synod_kv::{CommandError, KvConfig, KvStore, Operation, RangeEntry, ReadError, Response};

/// Revisions 1..=5: a=1, b=1, a=2, delete a, a=3.
fn history() -> Harness {
    let mut harness = Harness::new();
    harness.run(put("a", "1"));
    harness.run(put("b", "1"));
    harness.run(put("a", "2"));
    harness.run(delete(&["a"]));
    harness.run(put("a", "3"));
    harness
}

#[test]
fn get_at_a_revision_sees_the_value_then() {
    // Checks a key's value at every revision of its history, across a delete.
    let harness = history();
    let store = &harness.store;
    assert_eq!(store.get(b"a", Some(0)).unwrap(), None);
    assert_eq!(
        store.get(b"a", Some(1)).unwrap(),
        Some(versioned("1", 1, 1, 1))
    );
    assert_eq!(
        store.get(b"a", Some(2)).unwrap(),
        Some(versioned("1", 1, 1, 1))
    );
    assert_eq!(
        store.get(b"a", Some(3)).unwrap(),
        Some(versioned("2", 1, 3, 2))
    );
    assert_eq!(store.get(b"a", Some(4)).unwrap(), None);
    assert_eq!(
        store.get(b"a", Some(5)).unwrap(),
        Some(versioned("3", 5, 5, 1))
    );
    assert_eq!(
        store.get(b"a", None).unwrap(),
        Some(versioned("3", 5, 5, 1))
    );
    assert_eq!(
        store.get(b"a", Some(6)),
        Err(ReadError::FutureRevision {
            revision: 6,
            current: 5
        })
    );
}

#[test]
fn range_returns_live_keys_in_order_within_bounds() {
    // Checks key order, the exclusive end, reads at an old revision, and that deleted keys
    // are skipped.
    let mut harness = Harness::new();
    for key in ["d", "b", "a", "c", "e"] {
        harness.run(put(key, key));
    }
    harness.run(delete(&["c"]));
    let keys = |entries: &[RangeEntry]| -> Vec<String> {
        entries
            .iter()
            .map(|entry| String::from_utf8(entry.key.to_vec()).unwrap())
            .collect()
    };
    let page = harness.store.range(b"b", Some(b"e"), 0, None).unwrap();
    assert_eq!(keys(&page.entries), ["b", "d"]);
    assert!(!page.more);
    assert_eq!(page.revision, 6);
    let page = harness.store.range(b"b", Some(b"e"), 0, Some(5)).unwrap();
    assert_eq!(keys(&page.entries), ["b", "c", "d"]);
    let page = harness.store.range(b"", None, 0, Some(2)).unwrap();
    assert_eq!(keys(&page.entries), ["b", "d"]);
    let page = harness.store.range(b"e", Some(b"a"), 0, None).unwrap();
    assert!(page.entries.is_empty());
}

#[test]
fn range_pages_by_limit_and_by_size() {
    // Checks that a limit and range_size_max each end a page with `more`, and that paging
    // from just after the last key visits every key once.
    let config = KvConfig {
        key_size_max: 8,
        value_size_max: 100,
        // Room for four entries of a 2-byte key and a 100-byte value.
        range_size_max: 4 * (2 + 100 + 64),
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config);
    let value = "v".repeat(100);
    for index in 0..10 {
        harness.run(put(&format!("k{index}"), &value));
    }
    let page = harness.store.range(b"k", None, 3, None).unwrap();
    assert_eq!(page.entries.len(), 3);
    assert!(page.more);
    let page = harness.store.range(b"k", None, 0, None).unwrap();
    assert_eq!(page.entries.len(), 4);
    assert!(page.more);
    let mut start = b"".to_vec();
    let mut seen = Vec::new();
    loop {
        let page = harness.store.range(&start, None, 3, Some(10)).unwrap();
        seen.extend(page.entries.iter().map(|entry| entry.key.clone()));
        let Some(last) = page.entries.last() else {
            break;
        };
        start = [&last.key[..], &[0]].concat();
        if !page.more {
            break;
        }
    }
    let expected: Vec<_> = (0..10).map(|index| b(&format!("k{index}"))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn compaction_refuses_older_reads_and_keeps_newer_ones() {
    // Checks that after Compact(3) reads at 3 and later are unchanged, reads below 3 fail
    // with Compacted, and compacting again at or below 3 or beyond the revision is refused.
    let mut harness = history();
    assert_eq!(
        harness.run(Operation::Compact { revision: 3 }),
        Response::Done { revision: 5 }
    );
    let store = &harness.store;
    assert_eq!(store.compacted_revision(), 3);
    assert_eq!(
        store.get(b"a", Some(3)).unwrap(),
        Some(versioned("2", 1, 3, 2))
    );
    assert_eq!(
        store.get(b"b", Some(3)).unwrap(),
        Some(versioned("1", 2, 2, 1))
    );
    assert_eq!(store.get(b"a", Some(4)).unwrap(), None);
    let compacted = ReadError::Compacted {
        revision: 2,
        compacted: 3,
    };
    assert_eq!(store.get(b"a", Some(2)), Err(compacted.clone()));
    assert_eq!(
        compacted.to_string(),
        "revision 2 has been compacted (compacted up to 3): read at 3 or later"
    );
    assert_eq!(
        harness.run(get_at("a", 1)),
        Response::Error(CommandError::Compacted {
            revision: 1,
            compacted: 3
        })
    );
    assert_eq!(
        harness.run(Operation::Compact { revision: 3 }),
        Response::Error(CommandError::Compacted {
            revision: 3,
            compacted: 3
        })
    );
    assert_eq!(
        harness.run(Operation::Compact { revision: 9 }),
        Response::Error(CommandError::FutureRevision {
            revision: 9,
            current: 5
        })
    );
}

#[test]
fn compaction_prunes_memory_gradually_and_removes_deleted_keys() {
    // Checks that pruning visits compaction_keys_per_apply_max keys per entry, that keys
    // deleted at or before the compaction point disappear, and that reads and the digest
    // do not depend on how far pruning has got.
    let config = KvConfig {
        compaction_keys_per_apply_max: 2,
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config.clone());
    for index in 0..6 {
        harness.run(put(&format!("k{index}"), "1"));
        harness.run(put(&format!("k{index}"), "2"));
    }
    harness.run(delete(&["k0", "k1", "k2", "k3"]));
    let revision = harness.store.revision();
    assert_eq!(harness.store.keys_held_count(), 6);
    harness.run(Operation::Compact { revision });
    let restored = KvStore::restore(config, &harness.store.snapshot()).unwrap();
    assert_eq!(restored.keys_held_count(), 2);
    assert_eq!(restored.digest(), harness.store.digest());
    assert_eq!(harness.store.keys_held_count(), 6);
    let mut held = Vec::new();
    for _ in 0..4 {
        harness.run(put("z", "1"));
        held.push(harness.store.keys_held_count());
    }
    assert_eq!(held, [5, 3, 3, 3]);
    assert_eq!(
        harness.store.get(b"k4", None).unwrap(),
        Some(versioned("2", 9, 10, 2))
    );
    assert_eq!(harness.store.len(), 3);
}
