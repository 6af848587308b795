//! The store: applies committed entries in log order and serves direct reads.

use std::collections::BTreeSet;

use bytes::Bytes;
use synod_core::config::{ConfigError, Validate};
use synod_core::{ClientId, LogIndex, Term};
use xxhash_rust::xxh3::xxh3_64;

use crate::command::{
    Command, Compare, Operation, PutCondition, SessionRef, TxnOp, decode_command,
};
use crate::config::KvConfig;
use crate::keyspace::Keyspace;
use crate::response::{CommandError, RangeEntry, ReadError, Response, TxnResult};
use crate::session::{Admission, Session, SessionTable};
use crate::value::{Version, VersionedValue};

/// Where the entry being applied sits in the log, and the leader's timestamp stamped into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    pub index: LogIndex,
    pub term: Term,
    /// The leader's clock when it created the entry, in nanoseconds. The store's log time is
    /// the largest of these seen, so it never goes backwards.
    pub time_ns: u64,
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    /// The store's revision when read (page on at this revision for a consistent scan).
    pub revision: u64,
    pub entries: Vec<RangeEntry>,
    /// Whether keys after the last entry matched: continue from just after its key.
    pub more: bool,
}

/// The replicated key-value state machine of one replica.
#[derive(Debug, Clone)]
pub struct KvStore {
    pub(crate) config: KvConfig,
    pub(crate) keys: Keyspace,
    pub(crate) sessions: SessionTable,
    pub(crate) applied_index: LogIndex,
    pub(crate) applied_term: Term,
    pub(crate) log_time_ns: u64,
}

impl KvStore {
    /// An empty store, before the first log entry.
    pub fn new(config: KvConfig) -> Result<KvStore, ConfigError> {
        config.validate()?;
        Ok(KvStore {
            config,
            keys: Keyspace::new(),
            sessions: SessionTable::default(),
            applied_index: LogIndex(0),
            applied_term: Term(0),
            log_time_ns: 0,
        })
    }

    /// Applies one committed entry's payload. Every replica returns the same response for
    /// the same entry; a payload that does not decode gets an error response, never a panic.
    ///
    /// Panics if `ctx.index` is not above the last applied index or `ctx.term` is below the
    /// last applied term: the caller applied the log out of order, which is a bug.
    pub fn apply(&mut self, ctx: ApplyContext, payload: &[u8]) -> Response {
        self.begin_entry(ctx);
        let response = match decode_command(payload) {
            Err(error) => CommandError::Malformed {
                reason: error.to_string(),
            }
            .into(),
            Ok((command, op_offset)) => {
                let op_hash = xxh3_64(&payload[op_offset..]);
                self.apply_command(ctx, command, op_hash)
            }
        };
        self.end_entry();
        response
    }

    /// Applies an entry that carries no command (a leader's no-op, a configuration change):
    /// the applied index and log time advance, and expiry and pruning run as for any entry.
    pub fn apply_noop(&mut self, ctx: ApplyContext) {
        self.begin_entry(ctx);
        self.end_entry();
    }

    fn begin_entry(&mut self, ctx: ApplyContext) {
        assert!(
            ctx.index > self.applied_index,
            "apply index {} is not above the applied index {}",
            ctx.index,
            self.applied_index
        );
        assert!(
            ctx.term >= self.applied_term,
            "apply term {} is below the applied term {}",
            ctx.term,
            self.applied_term
        );
        self.applied_index = ctx.index;
        self.applied_term = ctx.term;
        self.log_time_ns = self.log_time_ns.max(ctx.time_ns);
        self.sessions.expire(
            self.log_time_ns,
            self.config.session_timeout_ns,
            self.config.session_expiry_sweep_max,
        );
        self.keys
            .prune_step(self.config.compaction_keys_per_apply_max);
    }

    /// The O(1) checks run after every entry; [`KvStore::invariants`] runs all of them.
    fn end_entry(&self) {
        self.keys.invariants_entry();
        assert!(self.sessions.len() <= self.config.sessions_max);
    }

    fn apply_command(&mut self, ctx: ApplyContext, command: Command, op_hash: u64) -> Response {
        let now_ns = self.log_time_ns;
        let timeout_ns = self.config.session_timeout_ns;
        let revision = self.keys.revision();
        let done = |result: Result<(), CommandError>| match result {
            Ok(()) => Response::Done { revision },
            Err(error) => error.into(),
        };
        match (command.session, command.op) {
            (None, Operation::RegisterSession) => {
                let client = ClientId(ctx.index.get());
                self.sessions
                    .register(client, now_ns, self.config.sessions_max);
                Response::Registered { client }
            }
            (Some(_), Operation::RegisterSession) => CommandError::SessionNotAllowed.into(),
            (None, Operation::KeepAlive | Operation::CloseSession) => {
                CommandError::SessionRequired.into()
            }
            (Some(session), Operation::KeepAlive) => {
                done(self.sessions.keep_alive(session, now_ns, timeout_ns))
            }
            (Some(session), Operation::CloseSession) => {
                done(self.sessions.close(session.client, now_ns, timeout_ns))
            }
            (session, op) => {
                if let Err(error) = validate_operation(&self.config, &op) {
                    return error.into();
                }
                match session {
                    None => self.execute(op),
                    Some(session) => self.execute_in_session(session, op, op_hash),
                }
            }
        }
    }

    fn execute_in_session(&mut self, session: SessionRef, op: Operation, op_hash: u64) -> Response {
        let admission = self.sessions.admit(
            session,
            op_hash,
            self.log_time_ns,
            self.config.session_timeout_ns,
            self.config.session_replies_max,
        );
        match admission {
            Err(error) => error.into(),
            Ok(Admission::Replay(response)) => response,
            Ok(Admission::Apply) => {
                let response = self.execute(op);
                self.sessions.record(session, op_hash, response.clone());
                response
            }
        }
    }

    /// Runs a validated data operation.
    fn execute(&mut self, op: Operation) -> Response {
        match op {
            Operation::Put {
                key,
                value,
                condition,
                return_previous,
            } => self.execute_put(&key, &value, condition, return_previous),
            Operation::Delete { keys } => {
                let mut count = 0;
                for key in &keys {
                    count += u64::from(self.keys.delete(key));
                }
                let revision = self.keys.commit();
                Response::Deleted { revision, count }
            }
            Operation::Cas {
                key,
                compare,
                value,
            } => self.execute_cas(&key, &compare, &value),
            Operation::Incr { key, delta } => self.execute_incr(&key, delta),
            Operation::Append { key, suffix } => self.execute_append(&key, &suffix),
            Operation::Txn {
                compares,
                success,
                failure,
            } => self.execute_txn(&compares, success, failure),
            op @ (Operation::Get { .. } | Operation::Range { .. }) => self.read(&op),
            Operation::Compact { revision } => match self.keys.compact(revision) {
                Ok(()) => Response::Done {
                    revision: self.keys.revision(),
                },
                Err(error) => CommandError::from(error).into(),
            },
            Operation::RegisterSession | Operation::KeepAlive | Operation::CloseSession => {
                unreachable!("session operations are handled by apply_command")
            }
        }
    }

    fn execute_put(
        &mut self,
        key: &[u8],
        value: &[u8],
        condition: PutCondition,
        return_previous: bool,
    ) -> Response {
        let current = self.keys.current(key);
        let present = current.is_some();
        let previous = current
            .filter(|_| return_previous)
            .and_then(Version::visible);
        let written = match condition {
            PutCondition::Always => true,
            PutCondition::IfAbsent => !present,
            PutCondition::IfPresent => present,
        };
        if written {
            self.keys.put(key, value);
        }
        Response::Put {
            revision: self.keys.commit(),
            written,
            previous,
        }
    }

    fn execute_cas(&mut self, key: &[u8], compare: &Compare, value: &[u8]) -> Response {
        let succeeded = compare_holds(self.keys.current(key), compare);
        if succeeded {
            self.keys.put(key, value);
        }
        Response::Cas {
            revision: self.keys.commit(),
            succeeded,
            current: self.keys.current(key).and_then(Version::visible),
        }
    }

    fn execute_incr(&mut self, key: &[u8], delta: i64) -> Response {
        let current = match self.keys.current(key) {
            None => 0,
            Some(version) => match parse_integer(value_of(version)) {
                Some(integer) => integer,
                None => return CommandError::NotAnInteger.into(),
            },
        };
        let Some(value) = current.checked_add(delta) else {
            return CommandError::IncrementOverflow.into();
        };
        self.keys.put(key, value.to_string().as_bytes());
        Response::Integer {
            revision: self.keys.commit(),
            value,
        }
    }

    fn execute_append(&mut self, key: &[u8], suffix: &[u8]) -> Response {
        let current = self.keys.current(key).map_or(&[][..], value_of);
        let length = current.len() + suffix.len();
        if length > self.config.value_size_max {
            return CommandError::ValueTooLarge {
                size: length as u64,
                max: self.config.value_size_max as u64,
            }
            .into();
        }
        let mut value = Vec::with_capacity(length);
        value.extend_from_slice(current);
        value.extend_from_slice(suffix);
        self.keys.put(key, &value);
        Response::Length {
            revision: self.keys.commit(),
            length: length as u64,
        }
    }

    fn execute_txn(
        &mut self,
        compares: &[(Bytes, Compare)],
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Response {
        let succeeded = compares
            .iter()
            .all(|(key, compare)| compare_holds(self.keys.current(key), compare));
        let branch = if succeeded { success } else { failure };
        let mut results = Vec::with_capacity(branch.len());
        // Validation refused oversized keys and values and keys written twice, so no op
        // below can fail: the branch applies whole.
        for op in branch {
            let result = match op {
                TxnOp::Put { key, value } => {
                    self.keys.put(&key, &value);
                    TxnResult::Put
                }
                TxnOp::Delete { key } => TxnResult::Deleted {
                    count: u64::from(self.keys.delete(&key)),
                },
                TxnOp::Get { key } => {
                    TxnResult::Value(self.keys.current(&key).and_then(Version::visible))
                }
            };
            results.push(result);
        }
        Response::Txn {
            revision: self.keys.commit(),
            succeeded,
            results,
        }
    }
}

/// Direct reads, for ReadIndex, lease and stale reads that do not go through the log.
impl KvStore {
    /// The value of `key` at `revision` (`None`: the current revision).
    pub fn get(
        &self,
        key: &[u8],
        revision: Option<u64>,
    ) -> Result<Option<VersionedValue>, ReadError> {
        self.keys.get(key, revision)
    }

    /// The keys in `[start, end)` (`end` `None`: to the last key) holding a value at
    /// `revision`, in key order, at most `limit` of them (0: `range_limit_max`) and at most
    /// `range_size_max` bytes beyond the first entry. Page on by calling again with `start`
    /// just after the last key returned (append a zero byte) at the page's revision.
    pub fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        revision: Option<u64>,
    ) -> Result<RangePage, ReadError> {
        let limit_max = self.config.range_limit_max;
        if limit > limit_max {
            return Err(ReadError::RangeLimitTooLarge {
                limit: limit as u64,
                max: limit_max as u64,
            });
        }
        let limit = if limit == 0 { limit_max } else { limit };
        let read_revision = self.keys.read_revision(revision)?;
        let size_max = self.config.range_size_max;
        let (entries, more) = self.keys.range(start, end, limit, size_max, read_revision);
        Ok(RangePage {
            revision: self.keys.revision(),
            entries,
            more,
        })
    }

    /// Serves a read-only operation (`Get` or `Range`) from the applied state, with the same
    /// reply it would get through the log; any other operation is refused as malformed.
    pub fn read(&self, op: &Operation) -> Response {
        if let Err(error) = validate_operation(&self.config, op) {
            return error.into();
        }
        match op {
            Operation::Get { key, revision } => match self.keys.get(key, *revision) {
                Ok(value) => Response::Value {
                    revision: self.keys.revision(),
                    value,
                },
                Err(error) => CommandError::from(error).into(),
            },
            Operation::Range {
                start,
                end,
                limit,
                revision,
            } => match self.range(start, end.as_deref(), *limit as usize, *revision) {
                Ok(page) => Response::Range {
                    revision: page.revision,
                    entries: page.entries,
                    more: page.more,
                },
                Err(error) => CommandError::from(error).into(),
            },
            _ => CommandError::Malformed {
                reason: "only Get and Range can be served as reads".into(),
            }
            .into(),
        }
    }

    /// Keys holding a value now (DBSIZE).
    pub fn len(&self) -> u64 {
        self.keys.live_keys_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys held in memory: the live ones and deleted ones whose tombstones compaction has
    /// not yet pruned.
    pub fn keys_held_count(&self) -> usize {
        self.keys.keys_held_count()
    }

    /// The revision of the last entry that wrote a key (0 before any).
    pub fn revision(&self) -> u64 {
        self.keys.revision()
    }

    /// Reads below this revision are refused with a Compacted error.
    pub fn compacted_revision(&self) -> u64 {
        self.keys.compacted_revision()
    }

    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// The largest leader timestamp applied, in nanoseconds.
    pub fn log_time(&self) -> u64 {
        self.log_time_ns
    }

    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Open sessions, including expired ones not yet swept.
    pub fn sessions_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn session(&self, client: ClientId) -> Option<&Session> {
        self.sessions.get(client)
    }

    /// Asserts every invariant of the store. O(keys + versions + sessions): the simulator
    /// and tests call it; `apply` runs only the O(1) subset after each entry.
    pub fn invariants(&self) {
        self.end_entry();
        self.keys.invariants();
        self.sessions.invariants(
            self.log_time_ns,
            self.config.sessions_max,
            self.config.session_replies_max,
        );
        for (client, _) in self.sessions.iter() {
            assert!(
                client.get() <= self.applied_index.get(),
                "session {client} from the future"
            );
        }
    }
}

/// The bytes of a version that is not a tombstone.
fn value_of(version: &Version) -> &[u8] {
    version
        .value
        .as_ref()
        .map(|value| value.as_slice())
        .expect("current versions are values")
}

/// Whether `compare` holds for the key's current version (`None`: absent).
fn compare_holds(current: Option<&Version>, compare: &Compare) -> bool {
    match compare {
        Compare::ValueEquals(expected) => {
            current.map(value_of) == expected.as_ref().map(|expected| &expected[..])
        }
        Compare::VersionEquals(version) => current.map_or(0, |v| v.version) == *version,
        Compare::ModRevisionEquals(revision) => current.map_or(0, |v| v.mod_revision) == *revision,
    }
}

/// The longest decimal i64 ("-9223372036854775808").
const INTEGER_SIZE_MAX: usize = 20;

/// Parses a value as Redis does for INCR: an optional minus sign and decimal digits, no
/// leading zeros, no plus sign, no spaces, no "-0", within i64.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > INTEGER_SIZE_MAX {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Refuses commands that exceed a configured limit, before anything is applied.
fn validate_operation(config: &KvConfig, op: &Operation) -> Result<(), CommandError> {
    match op {
        Operation::RegisterSession
        | Operation::KeepAlive
        | Operation::CloseSession
        | Operation::Compact { .. } => Ok(()),
        Operation::Put { key, value, .. } => {
            check_key(config, key)?;
            check_value(config, value)
        }
        Operation::Delete { keys } => {
            check_count(config, keys.len())?;
            keys.iter().try_for_each(|key| check_key(config, key))
        }
        Operation::Cas {
            key,
            compare,
            value,
        } => {
            check_key(config, key)?;
            check_compare(config, compare)?;
            check_value(config, value)
        }
        Operation::Incr { key, .. } | Operation::Get { key, .. } => check_key(config, key),
        Operation::Append { key, suffix } => {
            check_key(config, key)?;
            check_value(config, suffix)
        }
        Operation::Txn {
            compares,
            success,
            failure,
        } => validate_txn(config, compares, success, failure),
        Operation::Range {
            start, end, limit, ..
        } => {
            check_key(config, start)?;
            end.as_ref().map_or(Ok(()), |end| check_key(config, end))?;
            if *limit as usize > config.range_limit_max {
                return Err(CommandError::RangeLimitTooLarge {
                    limit: u64::from(*limit),
                    max: config.range_limit_max as u64,
                });
            }
            Ok(())
        }
    }
}

fn validate_txn(
    config: &KvConfig,
    compares: &[(Bytes, Compare)],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Result<(), CommandError> {
    check_count(config, compares.len())?;
    for (key, compare) in compares {
        check_key(config, key)?;
        check_compare(config, compare)?;
    }
    for branch in [success, failure] {
        check_count(config, branch.len())?;
        let mut written = BTreeSet::new();
        for op in branch {
            let key = match op {
                TxnOp::Put { key, value } => {
                    check_value(config, value)?;
                    key
                }
                TxnOp::Delete { key } => key,
                TxnOp::Get { key } => {
                    check_key(config, key)?;
                    continue;
                }
            };
            check_key(config, key)?;
            if !written.insert(key) {
                return Err(CommandError::TxnDuplicateKey { key: key.clone() });
            }
        }
    }
    Ok(())
}

fn check_key(config: &KvConfig, key: &[u8]) -> Result<(), CommandError> {
    if key.len() > config.key_size_max {
        return Err(CommandError::KeyTooLarge {
            size: key.len() as u64,
            max: config.key_size_max as u64,
        });
    }
    Ok(())
}

fn check_value(config: &KvConfig, value: &[u8]) -> Result<(), CommandError> {
    if value.len() > config.value_size_max {
        return Err(CommandError::ValueTooLarge {
            size: value.len() as u64,
            max: config.value_size_max as u64,
        });
    }
    Ok(())
}

fn check_compare(config: &KvConfig, compare: &Compare) -> Result<(), CommandError> {
    match compare {
        Compare::ValueEquals(Some(value)) => check_value(config, value),
        _ => Ok(()),
    }
}

fn check_count(config: &KvConfig, count: usize) -> Result<(), CommandError> {
    if count > config.txn_ops_max {
        return Err(CommandError::TooManyOperations {
            count: count as u64,
            max: config.txn_ops_max as u64,
        });
    }
    Ok(())
}
