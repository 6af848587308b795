//! Property tests of the encodings: round trips, canonical form, and arbitrary or damaged
//! bytes never panicking a decoder, the store's apply or a restore.

use bytes::Bytes;
use proptest::prelude::*;
use synod_core::{ClientId, LogIndex, Term};
use synod_kv::{
    ApplyContext, Command, CommandError, Compare, KvConfig, KvStore, Operation, PutCondition,
    RangeEntry, Response, SessionRef, TxnOp, TxnResult, VersionedValue,
};

fn small_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn compare() -> impl Strategy<Value = Compare> {
    prop_oneof![
        proptest::option::of(small_bytes()).prop_map(Compare::ValueEquals),
        any::<u64>().prop_map(Compare::VersionEquals),
        any::<u64>().prop_map(Compare::ModRevisionEquals),
    ]
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (small_bytes(), small_bytes()).prop_map(|(key, value)| TxnOp::Put { key, value }),
        small_bytes().prop_map(|key| TxnOp::Delete { key }),
        small_bytes().prop_map(|key| TxnOp::Get { key }),
    ]
}

fn put_condition() -> impl Strategy<Value = PutCondition> {
    prop_oneof![
        Just(PutCondition::Always),
        Just(PutCondition::IfAbsent),
        Just(PutCondition::IfPresent),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    let ops = || proptest::collection::vec(txn_op(), 0..4);
    prop_oneof![
        Just(Operation::RegisterSession),
        Just(Operation::KeepAlive),
        Just(Operation::CloseSession),
        (small_bytes(), small_bytes(), put_condition(), any::<bool>()).prop_map(
            |(key, value, condition, return_previous)| Operation::Put {
                key,
                value,
                condition,
                return_previous
            }
        ),
        proptest::collection::vec(small_bytes(), 0..4).prop_map(|keys| Operation::Delete { keys }),
        (small_bytes(), compare(), small_bytes()).prop_map(|(key, compare, value)| {
            Operation::Cas {
                key,
                compare,
                value,
            }
        }),
        (small_bytes(), any::<i64>()).prop_map(|(key, delta)| Operation::Incr { key, delta }),
        (small_bytes(), small_bytes()).prop_map(|(key, suffix)| Operation::Append { key, suffix }),
        (
            proptest::collection::vec((small_bytes(), compare()), 0..3),
            ops(),
            ops()
        )
            .prop_map(|(compares, success, failure)| Operation::Txn {
                compares,
                success,
                failure
            }),
        (small_bytes(), proptest::option::of(any::<u64>()))
            .prop_map(|(key, revision)| Operation::Get { key, revision }),
        (
            small_bytes(),
            proptest::option::of(small_bytes()),
            any::<u32>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(start, end, limit, revision)| Operation::Range {
                start,
                end,
                limit,
                revision
            }),
        any::<u64>().prop_map(|revision| Operation::Compact { revision }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let session =
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(client, sequence, acknowledged)| {
            SessionRef {
                client: ClientId(client),
                sequence,
                acknowledged,
            }
        });
    (proptest::option::of(session), operation()).prop_map(|(session, op)| Command { session, op })
}

fn versioned_value() -> impl Strategy<Value = VersionedValue> {
    (small_bytes(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(value, create_revision, mod_revision, version)| VersionedValue {
            value,
            create_revision,
            mod_revision,
            version,
        },
    )
}

fn command_error() -> impl Strategy<Value = CommandError> {
    prop_oneof![
        "[a-z :]{0,20}".prop_map(|reason| CommandError::Malformed { reason }),
        any::<u64>().prop_map(|client| CommandError::SessionExpired {
            client: ClientId(client)
        }),
        Just(CommandError::SessionRequired),
        Just(CommandError::SessionNotAllowed),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(client, sequence, acknowledged)| {
            CommandError::SequenceAcknowledged {
                client: ClientId(client),
                sequence,
                acknowledged,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(client, sequence)| {
            CommandError::SequenceReused {
                client: ClientId(client),
                sequence,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(sequence, acknowledged)| {
            CommandError::AcknowledgedNotBelowSequence {
                sequence,
                acknowledged,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(client, limit)| {
            CommandError::SessionRepliesFull {
                client: ClientId(client),
                limit,
            }
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, max)| CommandError::KeyTooLarge { size, max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, max)| CommandError::ValueTooLarge { size, max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(count, max)| CommandError::TooManyOperations { count, max }),
        small_bytes().prop_map(|key| CommandError::TxnDuplicateKey { key }),
        Just(CommandError::NotAnInteger),
        Just(CommandError::IncrementOverflow),
        (any::<u64>(), any::<u64>()).prop_map(|(revision, compacted)| CommandError::Compacted {
            revision,
            compacted
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(revision, current)| CommandError::FutureRevision { revision, current }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(limit, max)| CommandError::RangeLimitTooLarge { limit, max }),
    ]
}

fn txn_result() -> impl Strategy<Value = TxnResult> {
    prop_oneof![
        Just(TxnResult::Put),
        any::<u64>().prop_map(|count| TxnResult::Deleted { count }),
        proptest::option::of(versioned_value()).prop_map(TxnResult::Value),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let value = || proptest::option::of(versioned_value());
    let entry =
        (small_bytes(), versioned_value()).prop_map(|(key, value)| RangeEntry { key, value });
    prop_oneof![
        any::<u64>().prop_map(|client| Response::Registered {
            client: ClientId(client)
        }),
        any::<u64>().prop_map(|revision| Response::Done { revision }),
        (any::<u64>(), any::<bool>(), value()).prop_map(|(revision, written, previous)| {
            Response::Put {
                revision,
                written,
                previous,
            }
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(revision, count)| Response::Deleted { revision, count }),
        (any::<u64>(), any::<bool>(), value()).prop_map(|(revision, succeeded, current)| {
            Response::Cas {
                revision,
                succeeded,
                current,
            }
        }),
        (any::<u64>(), any::<i64>())
            .prop_map(|(revision, value)| Response::Integer { revision, value }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(revision, length)| Response::Length { revision, length }),
        (
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(txn_result(), 0..4)
        )
            .prop_map(|(revision, succeeded, results)| Response::Txn {
                revision,
                succeeded,
                results,
            }),
        (any::<u64>(), value()).prop_map(|(revision, value)| Response::Value { revision, value }),
        (
            any::<u64>(),
            proptest::collection::vec(entry, 0..4),
            any::<bool>()
        )
            .prop_map(|(revision, entries, more)| Response::Range {
                revision,
                entries,
                more,
            }),
        command_error().prop_map(Response::Error),
    ]
}

fn context(index: u64) -> ApplyContext {
    ApplyContext {
        index: LogIndex(index),
        term: Term(1),
        time_ns: index * 1_000,
    }
}

proptest! {
    #[test]
    fn commands_round_trip(command in command()) {
        // Checks that every command decodes to exactly what was encoded.
        let bytes = command.encode();
        prop_assert_eq!(Command::decode(&bytes).unwrap(), command);
    }

    #[test]
    fn responses_round_trip(response in response()) {
        // Checks that every response decodes to exactly what was encoded.
        let bytes = response.encode();
        prop_assert_eq!(Response::decode(&bytes).unwrap(), response);
    }

    #[test]
    fn every_strict_prefix_of_an_encoding_is_refused(
        command in command(),
        response in response(),
    ) {
        // Checks that truncated commands and responses are errors, never panics or values.
        let bytes = command.encode();
        for length in 0..bytes.len() {
            prop_assert!(Command::decode(&bytes[..length]).is_err());
        }
        let bytes = response.encode();
        for length in 0..bytes.len() {
            prop_assert!(Response::decode(&bytes[..length]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_only_canonically(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // Checks the decoders, the store's apply and restore on arbitrary input: errors,
        // never panics; and that whatever decodes re-encodes to the same bytes (one
        // encoding per value, which the session dedup's hash relies on).
        if let Ok(command) = Command::decode(&bytes) {
            prop_assert_eq!(command.encode(), bytes.clone());
        }
        if let Ok(response) = Response::decode(&bytes) {
            prop_assert_eq!(response.encode(), bytes.clone());
        }
        let _ = KvStore::restore(KvConfig::default(), &bytes);
        let mut store = KvStore::new(KvConfig::default()).unwrap();
        store.apply(context(1), &bytes);
        store.invariants();
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic_the_decoders(
        op_tag in 0u8..16,
        rest in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        // Checks decoding past the version and session bytes, where arbitrary input rarely
        // reaches: every operation tag followed by garbage.
        let mut bytes = vec![1, 0, op_tag];
        bytes.extend_from_slice(&rest);
        if let Ok(command) = Command::decode(&bytes) {
            prop_assert_eq!(command.encode(), bytes.clone());
        }
        let mut response = vec![1, op_tag];
        response.extend_from_slice(&rest);
        if let Ok(decoded) = Response::decode(&response) {
            prop_assert_eq!(decoded.encode(), response.clone());
        }
        let mut store = KvStore::new(KvConfig::default()).unwrap();
        store.apply(context(1), &bytes);
        store.invariants();
    }

    #[test]
    fn valid_commands_keep_the_store_consistent(
        commands in proptest::collection::vec(command(), 1..40),
    ) {
        // Checks that any sequence of well-formed commands (random sessions, revisions,
        // limits) leaves every invariant intact and restores to the same digest.
        let mut store = KvStore::new(KvConfig::default()).unwrap();
        for (index, command) in commands.iter().enumerate() {
            store.apply(context(index as u64 + 1), &command.encode());
            store.invariants();
        }
        let restored = KvStore::restore(KvConfig::default(), &store.snapshot()).unwrap();
        prop_assert_eq!(restored.digest(), store.digest());
    }

    #[test]
    fn damaged_snapshots_never_panic_the_restore(
        commands in proptest::collection::vec(command(), 1..20),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        // Checks that a snapshot with one byte changed or cut short is either refused or
        // restores to a store whose invariants hold.
        let mut store = KvStore::new(KvConfig::default()).unwrap();
        for (index, command) in commands.iter().enumerate() {
            store.apply(context(index as u64 + 1), &command.encode());
        }
        let mut snapshot = store.snapshot();
        let position = position.index(snapshot.len());
        snapshot[position] ^= flip;
        if let Ok(restored) = KvStore::restore(KvConfig::default(), &snapshot) {
            restored.invariants();
        }
        let cut = cut.index(snapshot.len());
        prop_assert!(KvStore::restore(KvConfig::default(), &snapshot[..cut]).is_err());
    }
}
