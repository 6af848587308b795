//! A harness that applies commands to a store at consecutive log indexes and checks every
//! invariant after each one.

// Each test file uses a different subset of the helpers.
#![allow(dead_code)]

use bytes::Bytes;
use synod_core::{ClientId, LogIndex, Term};
use synod_kv::{
    ApplyContext, Command, CommandError, Compare, KvConfig, KvStore, Operation, PutCondition,
    Response, SessionRef, TxnOp, VersionedValue,
};

/// One second of log time.
pub const SECOND_NS: u64 = 1_000_000_000;

pub struct Harness {
    pub store: KvStore,
    /// The index of the last applied entry.
    pub index: u64,
    /// The timestamp stamped into the next entry.
    pub time_ns: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(KvConfig::default())
    }

    pub fn with_config(config: KvConfig) -> Harness {
        Harness {
            store: KvStore::new(config).unwrap(),
            index: 0,
            time_ns: SECOND_NS,
        }
    }

    pub fn context(&self) -> ApplyContext {
        ApplyContext {
            index: LogIndex(self.index + 1),
            term: Term(1),
            time_ns: self.time_ns,
        }
    }

    pub fn apply_bytes(&mut self, payload: &[u8]) -> Response {
        let ctx = self.context();
        self.index += 1;
        let response = self.store.apply(ctx, payload);
        self.store.invariants();
        response
    }

    pub fn apply(&mut self, command: &Command) -> Response {
        self.apply_bytes(&command.encode())
    }

    /// Applies an operation outside any session.
    pub fn run(&mut self, op: Operation) -> Response {
        self.apply(&Command { session: None, op })
    }

    /// Applies an operation in a session.
    pub fn run_in(
        &mut self,
        client: ClientId,
        sequence: u64,
        acknowledged: u64,
        op: Operation,
    ) -> Response {
        let session = SessionRef {
            client,
            sequence,
            acknowledged,
        };
        self.apply(&Command {
            session: Some(session),
            op,
        })
    }

    /// Registers a session and returns its id.
    pub fn register(&mut self) -> ClientId {
        match self.run(Operation::RegisterSession) {
            Response::Registered { client } => client,
            other => panic!("register: {other:?}"),
        }
    }
}

pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn put(key: &str, value: &str) -> Operation {
    put_if(key, value, PutCondition::Always, false)
}

pub fn put_if(key: &str, value: &str, condition: PutCondition, return_previous: bool) -> Operation {
    Operation::Put {
        key: b(key),
        value: b(value),
        condition,
        return_previous,
    }
}

pub fn get(key: &str) -> Operation {
    Operation::Get {
        key: b(key),
        revision: None,
    }
}

pub fn get_at(key: &str, revision: u64) -> Operation {
    Operation::Get {
        key: b(key),
        revision: Some(revision),
    }
}

pub fn delete(keys: &[&str]) -> Operation {
    Operation::Delete {
        keys: keys.iter().map(|key| b(key)).collect(),
    }
}

pub fn incr(key: &str, delta: i64) -> Operation {
    Operation::Incr { key: b(key), delta }
}

pub fn cas(key: &str, compare: Compare, value: &str) -> Operation {
    Operation::Cas {
        key: b(key),
        compare,
        value: b(value),
    }
}

pub fn txn_put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: b(key),
        value: b(value),
    }
}

/// A value as replies show it.
pub fn versioned(
    value: &str,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
) -> VersionedValue {
    VersionedValue {
        value: b(value),
        create_revision,
        mod_revision,
        version,
    }
}

/// A seeded stream of commands over a few keys and sessions, with retries, reused
/// sequences, acknowledgements, compactions and time passing, for randomized tests.
pub struct Workload {
    prng: synod_core::Prng,
    clients: Vec<Client>,
}

struct Client {
    id: ClientId,
    sequence_next: u64,
    acknowledged: u64,
    /// Commands sent, by sequence, for retries.
    sent: Vec<Operation>,
}

const WORKLOAD_KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "key-long-enough-for-the-heap"];
const WORKLOAD_VALUES: [&str; 6] = [
    "",
    "1",
    "42",
    "x",
    "-7",
    "value-long-enough-to-live-on-the-heap",
];

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            prng: synod_core::Prng::from_seed(seed),
            clients: Vec::new(),
        }
    }

    /// Small limits, so that eviction, expiry, full reply windows and pruning all happen.
    pub fn config() -> KvConfig {
        KvConfig {
            sessions_max: 4,
            session_timeout_ns: 20 * SECOND_NS,
            session_replies_max: 6,
            session_expiry_sweep_max: 1,
            compaction_keys_per_apply_max: 2,
            txn_ops_max: 4,
            ..KvConfig::default()
        }
    }

    /// Applies the next command to every harness (each must hold the same state), checks
    /// that they all reply alike, and returns the reply.
    pub fn step(&mut self, harnesses: &mut [&mut Harness]) -> Response {
        let time_step = self.prng.below(3 * SECOND_NS);
        let command = self.next_command();
        let mut responses = Vec::new();
        for harness in harnesses.iter_mut() {
            harness.time_ns += time_step;
            responses.push(harness.apply(&command));
        }
        let first = responses[0].clone();
        for response in &responses {
            assert_eq!(
                response, &first,
                "replicas replied differently to {command:?}"
            );
        }
        match (&first, command.session, &command.op) {
            (Response::Registered { client }, _, _) => self.clients.push(Client {
                id: *client,
                sequence_next: 1,
                acknowledged: 0,
                sent: vec![Operation::KeepAlive],
            }),
            // A client whose session expired, was evicted or closed registers anew.
            (Response::Error(CommandError::SessionExpired { client }), _, _) => {
                self.clients.retain(|known| known.id != *client);
            }
            (Response::Done { .. }, Some(session), Operation::CloseSession) => {
                self.clients.retain(|known| known.id != session.client);
            }
            _ => {}
        }
        first
    }

    fn next_command(&mut self) -> Command {
        if self.clients.is_empty() || self.prng.chance(0.08) {
            return Command {
                session: None,
                op: Operation::RegisterSession,
            };
        }
        let op = self.random_op();
        if self.prng.chance(0.3) {
            return Command { session: None, op };
        }
        let index = self.prng.index(self.clients.len());
        let client = &mut self.clients[index];
        let roll = self.prng.below(10);
        let (sequence, op) = if roll < 2 && client.sequence_next > 1 {
            // A retry of an earlier sequence, usually with the same operation.
            let sequence = self.prng.range_inclusive(1, client.sequence_next - 1);
            let same = client.sent[sequence as usize].clone();
            (sequence, if roll == 0 { same } else { op })
        } else {
            client.sequence_next += 1;
            client.sent.push(op.clone());
            (client.sequence_next - 1, op)
        };
        if self.prng.chance(0.3) && client.acknowledged < sequence {
            client.acknowledged = self.prng.range_inclusive(client.acknowledged, sequence - 1);
        }
        let session = SessionRef {
            client: client.id,
            sequence,
            acknowledged: client.acknowledged.min(sequence - 1),
        };
        Command {
            session: Some(session),
            op,
        }
    }

    fn key(&mut self) -> Bytes {
        b(WORKLOAD_KEYS[self.prng.index(WORKLOAD_KEYS.len())])
    }

    fn value(&mut self) -> Bytes {
        b(WORKLOAD_VALUES[self.prng.index(WORKLOAD_VALUES.len())])
    }

    fn compare(&mut self) -> Compare {
        match self.prng.below(3) {
            0 => Compare::ValueEquals(self.prng.chance(0.7).then(|| self.value())),
            1 => Compare::VersionEquals(self.prng.below(4)),
            _ => Compare::ModRevisionEquals(self.prng.below(30)),
        }
    }

    fn txn_ops(&mut self) -> Vec<TxnOp> {
        let count = self.prng.below(4);
        (0..count)
            .map(|_| match self.prng.below(3) {
                0 => TxnOp::Put {
                    key: self.key(),
                    value: self.value(),
                },
                1 => TxnOp::Delete { key: self.key() },
                _ => TxnOp::Get { key: self.key() },
            })
            .collect()
    }

    fn random_op(&mut self) -> Operation {
        match self.prng.below(12) {
            0 | 1 => {
                let condition = [
                    PutCondition::Always,
                    PutCondition::IfAbsent,
                    PutCondition::IfPresent,
                ][self.prng.index(3)];
                Operation::Put {
                    key: self.key(),
                    value: self.value(),
                    condition,
                    return_previous: self.prng.chance(0.5),
                }
            }
            2 => Operation::Delete {
                keys: (0..self.prng.range_inclusive(1, 3))
                    .map(|_| self.key())
                    .collect(),
            },
            3 => Operation::Cas {
                key: self.key(),
                compare: self.compare(),
                value: self.value(),
            },
            4 => Operation::Incr {
                key: self.key(),
                delta: [1, -1, 5, i64::MAX][self.prng.index(4)],
            },
            5 => Operation::Append {
                key: self.key(),
                suffix: self.value(),
            },
            6 => Operation::Txn {
                compares: (0..self.prng.below(3))
                    .map(|_| (self.key(), self.compare()))
                    .collect(),
                success: self.txn_ops(),
                failure: self.txn_ops(),
            },
            7 => Operation::Get {
                key: self.key(),
                revision: self.prng.chance(0.5).then(|| self.prng.below(40)),
            },
            8 => Operation::Range {
                start: self.key(),
                end: self.prng.chance(0.5).then(|| self.key()),
                limit: self.prng.below(4) as u32,
                revision: self.prng.chance(0.5).then(|| self.prng.below(40)),
            },
            9 => Operation::Compact {
                revision: self.prng.below(40),
            },
            10 => Operation::KeepAlive,
            _ => Operation::CloseSession,
        }
    }
}

/// A reply's kind for coverage checks: its variant, and for errors the error's variant
/// (`"Put"`, `"Error SessionExpired"`).
pub fn response_kind(response: &Response) -> String {
    let text = format!("{response:?}");
    let words: Vec<&str> = text
        .split([' ', '(', ')', '{'])
        .filter(|word| !word.is_empty())
        .take(2)
        .collect();
    match words.as_slice() {
        ["Error", error, ..] => format!("Error {error}"),
        [variant, ..] => variant.to_string(),
        [] => text,
    }
}
