//! Client sessions: at-most-once application, cached replies, acknowledgement, expiry by log
//! time, eviction, and dedup across snapshot and restore.

mod common;

use common::{Harness, SECOND_NS, b, get, incr, put};
use synod_core::ClientId;
use synod_kv::{CommandError, KvConfig, KvStore, Operation, Response};

fn config_with_timeout(timeout_seconds: u64) -> KvConfig {
    KvConfig {
        session_timeout_ns: timeout_seconds * SECOND_NS,
        ..KvConfig::default()
    }
}

#[test]
fn a_session_id_is_the_log_index_of_its_registration() {
    // Checks that RegisterSession replies with the entry's index as the client id.
    let mut harness = Harness::new();
    harness.run(put("a", "1"));
    assert_eq!(
        harness.run(Operation::RegisterSession),
        Response::Registered {
            client: ClientId(2)
        }
    );
    assert_eq!(harness.store.sessions_count(), 1);
}

#[test]
fn a_retry_returns_the_cached_reply_without_applying_again() {
    // Checks at-most-once: the same (client, sequence, op) applied twice increments once
    // and both replies are identical.
    let mut harness = Harness::new();
    let client = harness.register();
    let first = harness.run_in(client, 1, 0, incr("n", 1));
    assert_eq!(
        first,
        Response::Integer {
            revision: 1,
            value: 1
        }
    );
    harness.run(put("other", "x"));
    let retry = harness.run_in(client, 1, 0, incr("n", 1));
    assert_eq!(retry, first);
    assert_eq!(harness.store.get(b"n", None).unwrap().unwrap().value, "1");
    assert_eq!(harness.store.revision(), 2);
}

#[test]
fn error_replies_are_cached_like_any_other() {
    // Checks that a retry of a command that failed (Incr of a non-integer) gets the same
    // error even after the key became an integer: the outcome was decided once.
    let mut harness = Harness::new();
    let client = harness.register();
    harness.run(put("n", "text"));
    let first = harness.run_in(client, 1, 0, incr("n", 1));
    assert_eq!(first, Response::Error(CommandError::NotAnInteger));
    harness.run(put("n", "5"));
    assert_eq!(harness.run_in(client, 1, 0, incr("n", 1)), first);
    assert_eq!(harness.store.get(b"n", None).unwrap().unwrap().value, "5");
}

#[test]
fn a_retry_with_a_different_payload_is_refused() {
    // Checks that reusing a sequence for another command is an error and changes nothing.
    let mut harness = Harness::new();
    let client = harness.register();
    harness.run_in(client, 1, 0, incr("n", 1));
    let response = harness.run_in(client, 1, 0, incr("n", 2));
    let error = CommandError::SequenceReused {
        client,
        sequence: 1,
    };
    assert_eq!(
        error.to_string(),
        format!(
            "sequence 1 of session {client} was already used for a different command: use a new \
         sequence"
        )
    );
    assert_eq!(response, Response::Error(error));
    assert_eq!(harness.store.get(b"n", None).unwrap().unwrap().value, "1");
}

#[test]
fn acknowledged_sequences_are_forgotten_and_refused() {
    // Checks that an acknowledgement drops cached replies and that a sequence at or below
    // it is refused rather than applied again.
    let mut harness = Harness::new();
    let client = harness.register();
    harness.run_in(client, 1, 0, incr("n", 1));
    harness.run_in(client, 2, 0, incr("n", 1));
    assert_eq!(harness.store.session(client).unwrap().replies.len(), 2);
    harness.run_in(client, 3, 2, incr("n", 1));
    let session = harness.store.session(client).unwrap();
    assert_eq!(session.replies.keys().copied().collect::<Vec<_>>(), vec![3]);
    assert_eq!(session.acknowledged, 2);
    assert_eq!(
        harness.run_in(client, 2, 0, incr("n", 1)),
        Response::Error(CommandError::SequenceAcknowledged {
            client,
            sequence: 2,
            acknowledged: 2
        })
    );
    assert_eq!(
        harness.run_in(client, 4, 4, incr("n", 1)),
        Response::Error(CommandError::AcknowledgedNotBelowSequence {
            sequence: 4,
            acknowledged: 4
        })
    );
    assert_eq!(harness.store.get(b"n", None).unwrap().unwrap().value, "3");
}

#[test]
fn sequences_may_arrive_out_of_order_and_each_applies_once() {
    // Checks pipelined requests: sequence 3 before 2, then retries of both.
    let mut harness = Harness::new();
    let client = harness.register();
    let third = harness.run_in(client, 3, 0, incr("n", 10));
    let second = harness.run_in(client, 2, 0, incr("n", 1));
    assert_eq!(harness.run_in(client, 3, 0, incr("n", 10)), third);
    assert_eq!(harness.run_in(client, 2, 0, incr("n", 1)), second);
    assert_eq!(harness.store.get(b"n", None).unwrap().unwrap().value, "11");
    assert_eq!(
        harness.store.session(client).unwrap().sequence_applied_max,
        3
    );
}

#[test]
fn a_full_reply_window_refuses_until_the_client_acknowledges() {
    // Checks session_replies_max: a third unacknowledged command is refused, and goes
    // through once the client acknowledges the first.
    let config = KvConfig {
        session_replies_max: 2,
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config);
    let client = harness.register();
    harness.run_in(client, 1, 0, incr("n", 1));
    harness.run_in(client, 2, 0, incr("n", 1));
    assert_eq!(
        harness.run_in(client, 3, 0, incr("n", 1)),
        Response::Error(CommandError::SessionRepliesFull { client, limit: 2 })
    );
    assert_eq!(
        harness.run_in(client, 3, 1, incr("n", 1)),
        Response::Integer {
            revision: 3,
            value: 3
        }
    );
}

#[test]
fn sessions_expire_by_log_time_only() {
    // Checks that a session idle for exactly the timeout is alive, one idle for longer is
    // expired, and that only the entries' timestamps count.
    let mut harness = Harness::with_config(config_with_timeout(10));
    let client = harness.register();
    harness.time_ns += 10 * SECOND_NS;
    assert_eq!(
        harness.run_in(client, 1, 0, get("k")),
        Response::Value {
            revision: 0,
            value: None
        }
    );
    harness.time_ns += 10 * SECOND_NS + 1;
    let response = harness.run_in(client, 2, 0, get("k"));
    let error = CommandError::SessionExpired { client };
    assert_eq!(response, Response::Error(error.clone()));
    assert_eq!(
        error.to_string(),
        format!("session {client} is unknown or has expired: register a new session")
    );
    assert_eq!(harness.store.sessions_count(), 0);
}

#[test]
fn keep_alive_refreshes_and_close_ends_a_session() {
    // Checks KeepAlive extends a session past the timeout, CloseSession ends it, and the
    // session operations refuse a missing or unexpected SessionRef.
    let mut harness = Harness::with_config(config_with_timeout(10));
    let client = harness.register();
    for _ in 0..3 {
        harness.time_ns += 8 * SECOND_NS;
        assert_eq!(
            harness.run_in(client, 1, 0, Operation::KeepAlive),
            Response::Done { revision: 0 }
        );
    }
    assert_eq!(
        harness.run_in(client, 1, 0, Operation::CloseSession),
        Response::Done { revision: 0 }
    );
    assert_eq!(
        harness.run_in(client, 1, 0, Operation::KeepAlive),
        Response::Error(CommandError::SessionExpired { client })
    );
    assert_eq!(
        harness.run(Operation::KeepAlive),
        Response::Error(CommandError::SessionRequired)
    );
    assert_eq!(
        harness.run_in(client, 1, 0, Operation::RegisterSession),
        Response::Error(CommandError::SessionNotAllowed)
    );
}

#[test]
fn the_expiry_sweep_is_bounded_and_unswept_sessions_are_still_expired() {
    // Checks that one entry removes at most session_expiry_sweep_max sessions, oldest first,
    // and that a command to an expired but unswept session is refused all the same.
    let config = KvConfig {
        session_expiry_sweep_max: 2,
        ..config_with_timeout(10)
    };
    let mut harness = Harness::with_config(config);
    let clients: Vec<ClientId> = (0..5).map(|_| harness.register()).collect();
    harness.time_ns += 11 * SECOND_NS;
    let ctx = harness.context();
    harness.index += 1;
    harness.store.apply_noop(ctx);
    assert_eq!(harness.store.sessions_count(), 3);
    assert!(harness.store.session(clients[1]).is_none());
    assert!(harness.store.session(clients[2]).is_some());
    let client = clients[4];
    assert_eq!(
        harness.run_in(client, 1, 0, get("k")),
        Response::Error(CommandError::SessionExpired { client })
    );
}

#[test]
fn registering_beyond_sessions_max_evicts_the_least_recently_active() {
    // Checks eviction order: by last activity, so a session used recently survives.
    let config = KvConfig {
        sessions_max: 3,
        ..KvConfig::default()
    };
    let mut harness = Harness::with_config(config);
    let mut clients = Vec::new();
    for _ in 0..3 {
        harness.time_ns += SECOND_NS;
        clients.push(harness.register());
    }
    harness.time_ns += SECOND_NS;
    harness.run_in(clients[0], 1, 0, put("a", "1"));
    harness.time_ns += SECOND_NS;
    let newest = harness.register();
    assert_eq!(harness.store.sessions_count(), 3);
    let evicted = clients[1];
    assert_eq!(
        harness.run_in(evicted, 1, 0, get("a")),
        Response::Error(CommandError::SessionExpired { client: evicted })
    );
    assert!(harness.store.session(clients[0]).is_some());
    assert!(harness.store.session(clients[2]).is_some());
    assert!(harness.store.session(newest).is_some());
}

#[test]
fn dedup_survives_snapshot_and_restore() {
    // Checks that a restored store returns the cached reply to a retry, refuses a reused
    // sequence, and reaches the same digest as the original after the same commands.
    let mut harness = Harness::new();
    let client = harness.register();
    let first = harness.run_in(client, 1, 0, incr("n", 7));
    let snapshot = harness.store.snapshot();
    let restored = KvStore::restore(KvConfig::default(), &snapshot).unwrap();
    assert_eq!(restored.digest(), harness.store.digest());
    let mut copy = Harness {
        store: restored,
        index: harness.index,
        time_ns: harness.time_ns,
    };
    for target in [&mut harness, &mut copy] {
        assert_eq!(target.run_in(client, 1, 0, incr("n", 7)), first);
        assert_eq!(
            target.run_in(client, 1, 0, incr("n", 8)),
            Response::Error(CommandError::SequenceReused {
                client,
                sequence: 1
            })
        );
        target.run_in(client, 2, 1, Operation::Delete { keys: vec![b("n")] });
    }
    assert_eq!(copy.store.digest(), harness.store.digest());
    assert_eq!(copy.store.get(b"n", Some(1)).unwrap().unwrap().value, "7");
}
