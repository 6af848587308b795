//! Snapshots of the whole store, and the digest, which hashes the same encoding.
//!
//! A snapshot records the logical state: every key with the versions compaction keeps, the
//! revisions, the sessions with their cached replies, the applied index and term and the log
//! time. Two stores that answer every read and every future command alike therefore have
//! identical snapshots and digests, whatever their pruning progress. The layout is in
//! `docs/kv.md`; the WAL's snapshot file checksums it, so this format only checks its own
//! magic, version, length and consistency.

use std::collections::BTreeMap;

use synod_core::config::{ConfigError, Validate};
use synod_core::{ClientId, LogIndex, Term};
use thiserror::Error;
use xxhash_rust::xxh3::Xxh3;

use crate::codec::{DecodeError, Reader, Sink, Writer};
use crate::config::KvConfig;
use crate::keyspace::Keyspace;
use crate::response::{Response, decode_response};
use crate::session::{CachedReply, Session, SessionTable};
use crate::store::KvStore;
use crate::value::{CompactBytes, KeyHistory, Version};

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"synodkv\0";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Magic, version, five u64 fields, the two end markers and the trailing length.
const SNAPSHOT_SIZE_MIN: usize = 8 + 1 + 5 * 8 + 2 + 8;
/// The fewest bytes an encoded version takes (three u64s and an option tag).
const VERSION_SIZE_MIN: usize = 3 * 8 + 1;
/// The fewest bytes a cached reply takes (sequence, hash, response version and tag).
const REPLY_SIZE_MIN: usize = 8 + 8 + 2;

/// A snapshot that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error(
        "the snapshot is {size} bytes, shorter than any synod-kv snapshot ({SNAPSHOT_SIZE_MIN})"
    )]
    TooShort { size: usize },
    #[error("not a synod-kv snapshot: it starts with {found:?}")]
    BadMagic { found: [u8; 8] },
    #[error("snapshot format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error(
        "the snapshot records {recorded} bytes before its trailer but holds {actual}: it is \
         truncated or was not written whole"
    )]
    LengthMismatch { recorded: u64, actual: u64 },
    #[error("the snapshot is malformed: {0}")]
    Decode(#[from] DecodeError),
    #[error("the snapshot is inconsistent at byte {offset}: {reason}")]
    Invalid { offset: usize, reason: String },
    #[error("cannot restore with this configuration: {0}")]
    Config(#[from] ConfigError),
}

impl KvStore {
    /// The whole state as bytes, for [`KvStore::restore`]. O(state size).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        self.encode_state(&mut writer);
        let length = writer.sink.len() as u64;
        writer.u64(length);
        writer.sink
    }

    /// A 64-bit xxh3 digest of the whole logical state: the snapshot encoding, streamed
    /// through the hasher without being built. Replicas at the same applied index must have
    /// equal digests. O(state size): meant for the simulator and tests, not the apply path.
    pub fn digest(&self) -> u64 {
        let mut writer = Writer { sink: Xxh3::new() };
        self.encode_state(&mut writer);
        writer.sink.digest()
    }

    fn encode_state<S: Sink>(&self, writer: &mut Writer<S>) {
        writer.sink.put(&SNAPSHOT_MAGIC);
        writer.u8(SNAPSHOT_FORMAT_VERSION);
        writer.u64(self.applied_index.get());
        writer.u64(self.applied_term.get());
        writer.u64(self.log_time_ns);
        writer.u64(self.keys.revision());
        writer.u64(self.keys.compacted_revision());
        for (key, versions) in self.keys.retained() {
            writer.bool(true);
            writer.bytes(key.as_slice());
            writer.count(versions.len());
            for version in versions {
                writer.u64(version.create_revision);
                writer.u64(version.mod_revision);
                writer.u64(version.version);
                writer.option_bytes(version.value.as_ref().map(CompactBytes::as_slice));
            }
        }
        writer.bool(false);
        for (client, session) in self.sessions.iter() {
            writer.bool(true);
            writer.u64(client.get());
            writer.u64(session.last_activity_ns);
            writer.u64(session.acknowledged);
            writer.u64(session.sequence_applied_max);
            writer.count(session.replies.len());
            for (&sequence, reply) in &session.replies {
                writer.u64(sequence);
                writer.u64(reply.op_hash);
                reply.response.encode_into(writer);
            }
        }
        writer.bool(false);
    }

    /// Rebuilds a store from [`KvStore::snapshot`] bytes. Malformed or inconsistent bytes
    /// are an error saying what and where, never a panic.
    pub fn restore(config: KvConfig, bytes: &[u8]) -> Result<KvStore, SnapshotError> {
        config.validate()?;
        let body = check_frame(bytes)?;
        let mut reader = Reader::new(body);
        reader.array::<8>("snapshot.magic")?;
        reader.u8("snapshot.format_version")?;
        let applied_index = LogIndex(reader.u64("snapshot.applied_index")?);
        let applied_term = Term(reader.u64("snapshot.applied_term")?);
        let log_time_ns = reader.u64("snapshot.log_time")?;
        let revision = reader.u64("snapshot.revision")?;
        let compacted_revision = reader.u64("snapshot.compacted_revision")?;
        if compacted_revision > revision {
            return Err(invalid(
                &reader,
                "the compacted revision exceeds the revision",
            ));
        }
        let keys = decode_keys(&mut reader, revision, compacted_revision)?;
        let limits = SessionLimits {
            applied_index,
            log_time_ns,
            config: &config,
        };
        let sessions = decode_sessions(&mut reader, &limits)?;
        reader.finish("snapshot")?;
        let store = KvStore {
            config,
            keys: Keyspace::from_parts(keys, revision, compacted_revision),
            sessions,
            applied_index,
            applied_term,
            log_time_ns,
        };
        store.invariants();
        Ok(store)
    }
}

/// Checks the magic, version and trailing length; returns the bytes before the trailer.
fn check_frame(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    if bytes.len() < SNAPSHOT_SIZE_MIN {
        return Err(SnapshotError::TooShort { size: bytes.len() });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[..8]);
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic { found: magic });
    }
    if bytes[8] != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: bytes[8],
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 8);
    let mut recorded = [0u8; 8];
    recorded.copy_from_slice(trailer);
    let recorded = u64::from_le_bytes(recorded);
    if recorded != body.len() as u64 {
        return Err(SnapshotError::LengthMismatch {
            recorded,
            actual: body.len() as u64,
        });
    }
    Ok(body)
}

fn invalid(reader: &Reader<'_>, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        offset: reader.offset(),
        reason: reason.into(),
    }
}

fn decode_keys(
    reader: &mut Reader<'_>,
    revision: u64,
    compacted_revision: u64,
) -> Result<BTreeMap<CompactBytes, KeyHistory>, SnapshotError> {
    // Collected into a sorted Vec and built in one pass: `BTreeMap::from_iter` fills its
    // nodes completely, where inserting one by one leaves them about half full.
    let mut keys: Vec<(CompactBytes, KeyHistory)> = Vec::new();
    while reader.bool("snapshot.key_marker")? {
        let key = CompactBytes::new(reader.bytes("snapshot.key")?);
        if keys.last().is_some_and(|(previous, _)| *previous >= key) {
            return Err(invalid(
                reader,
                format!("key {key:?} is not above the one before"),
            ));
        }
        let count = reader.count("snapshot.versions", VERSION_SIZE_MIN)?;
        let mut versions = Vec::with_capacity(count);
        for _ in 0..count {
            versions.push(Version {
                create_revision: reader.u64("snapshot.create_revision")?,
                mod_revision: reader.u64("snapshot.mod_revision")?,
                version: reader.u64("snapshot.version")?,
                value: reader
                    .option_bytes("snapshot.value")?
                    .map(CompactBytes::new),
            });
        }
        if let Err(reason) = check_history(&versions, revision) {
            return Err(invalid(reader, format!("key {key:?}: {reason}")));
        }
        let history = match versions.len() {
            1 => KeyHistory::One(versions.pop().expect("one version")),
            _ => KeyHistory::Many(versions),
        };
        if history.prunable_count(compacted_revision) > 0 {
            let reason = format!("key {key:?} holds versions that compaction removes");
            return Err(invalid(reader, reason));
        }
        keys.push((key, history));
    }
    Ok(keys.into_iter().collect())
}

/// The checks `Keyspace::invariants` asserts, as errors, for one key's history.
fn check_history(versions: &[Version], revision: u64) -> Result<(), &'static str> {
    if versions.is_empty() {
        return Err("it has no versions");
    }
    for version in versions {
        if version.mod_revision == 0 || version.mod_revision > revision {
            return Err("a mod revision is outside 1..=revision");
        }
        let consistent = match version.value {
            None => version.create_revision == 0 && version.version == 0,
            Some(_) => {
                version.create_revision >= 1
                    && version.create_revision <= version.mod_revision
                    && version.version >= 1
            }
        };
        if !consistent {
            return Err("a version's create revision or version count is inconsistent");
        }
    }
    for pair in versions.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        let follows = next.mod_revision > previous.mod_revision
            && match (previous.is_tombstone(), next.is_tombstone()) {
                (false, false) => {
                    next.create_revision == previous.create_revision
                        && next.version == previous.version + 1
                }
                (true, false) => next.create_revision == next.mod_revision && next.version == 1,
                (false, true) => true,
                (true, true) => false,
            };
        if !follows {
            return Err("its versions do not follow one another");
        }
    }
    Ok(())
}

/// What the sessions of a snapshot are checked against.
struct SessionLimits<'a> {
    applied_index: LogIndex,
    log_time_ns: u64,
    config: &'a KvConfig,
}

fn decode_sessions(
    reader: &mut Reader<'_>,
    limits: &SessionLimits<'_>,
) -> Result<SessionTable, SnapshotError> {
    let mut sessions = SessionTable::default();
    let mut previous_client = None;
    while reader.bool("snapshot.session_marker")? {
        let client = ClientId(reader.u64("snapshot.client")?);
        if previous_client.is_some_and(|previous| previous >= client) {
            return Err(invalid(
                reader,
                format!("session {client} is not above the one before"),
            ));
        }
        if client.get() == 0 || client.get() > limits.applied_index.get() {
            return Err(invalid(
                reader,
                format!("session {client} is not a past log index"),
            ));
        }
        previous_client = Some(client);
        if sessions.len() == limits.config.sessions_max {
            let reason = format!(
                "it holds more sessions than sessions_max ({}): restore with the \
                 configuration that wrote it",
                limits.config.sessions_max
            );
            return Err(invalid(reader, reason));
        }
        let session = decode_session(reader, client, limits)?;
        sessions.insert(client, session);
    }
    Ok(sessions)
}

fn decode_session(
    reader: &mut Reader<'_>,
    client: ClientId,
    limits: &SessionLimits<'_>,
) -> Result<Session, SnapshotError> {
    let last_activity_ns = reader.u64("snapshot.last_activity")?;
    let acknowledged = reader.u64("snapshot.acknowledged")?;
    let sequence_applied_max = reader.u64("snapshot.sequence_applied_max")?;
    if last_activity_ns > limits.log_time_ns {
        return Err(invalid(
            reader,
            format!("session {client} is active after the log time"),
        ));
    }
    let count = reader.count("snapshot.replies", REPLY_SIZE_MIN)?;
    let replies_max = limits.config.session_replies_max;
    if count > replies_max {
        let reason = format!(
            "session {client} holds {count} replies, more than session_replies_max \
             ({replies_max}): restore with the configuration that wrote it"
        );
        return Err(invalid(reader, reason));
    }
    let mut replies = BTreeMap::new();
    let mut previous_sequence = acknowledged;
    for _ in 0..count {
        let sequence = reader.u64("snapshot.sequence")?;
        if sequence <= previous_sequence || sequence > sequence_applied_max {
            let reason = format!("session {client}: reply sequence {sequence} is out of order");
            return Err(invalid(reader, reason));
        }
        previous_sequence = sequence;
        let op_hash = reader.u64("snapshot.op_hash")?;
        let response: Response = decode_response(reader)?;
        replies.insert(sequence, CachedReply { op_hash, response });
    }
    Ok(Session {
        last_activity_ns,
        acknowledged,
        sequence_applied_max,
        replies,
    })
}
