//! The byte encoding of Raft messages, log entries, snapshot metadata and membership
//! configurations. docs/raft_wire.md gives the layout as tables.
//!
//! The encoding is written out by hand, field by field, so that the bytes are decided here
//! and not by a serialization library's version. All integers are little-endian. Every
//! public `encode_*` function produces a self-contained unit that starts with a format
//! version byte ([`FORMAT_VERSION`]); the entry encoding is also the payload of a WAL entry
//! record, so the version byte lets a later build read, or clearly refuse, what an older one
//! wrote to disk.
//!
//! Decoding treats its input as hostile. It never panics; it checks every length against a
//! named limit and against the bytes that remain *before* it allocates, so a forged length
//! costs nothing; and it refuses unknown versions and tags, booleans other than 0 and 1,
//! trailing bytes and memberships that break [`Membership::check`]. The encoding is therefore
//! canonical: any bytes that decode re-encode to exactly themselves.
//!
//! Encoding trusts its input: a value that breaks a limit (too many entries, an oversized
//! command, an invalid membership) is a bug in the caller, and encoding asserts rather than
//! write bytes that every decoder would refuse.

use bytes::Bytes;
use synod_core::limits::FRAME_PAYLOAD_SIZE_MAX;
use synod_core::{LogIndex, NodeId, Term};
use thiserror::Error;

use crate::message::{Message, MessageBody};
use crate::types::{Entry, EntryPayload, Membership, SnapshotMeta};

/// The format version this build writes, and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;
/// The most entries one `AppendRequest` may carry (`RaftConfig::append_entries_max` is
/// validated to at most this).
pub const ENTRIES_COUNT_MAX: usize = 65_536;
/// The most node ids in one member list (voters, outgoing voters or learners).
pub const MEMBERS_COUNT_MAX: usize = 4_096;
/// The largest byte field (a command or a snapshot chunk): it must fit in one network frame.
pub const BYTES_SIZE_MAX: usize = FRAME_PAYLOAD_SIZE_MAX;

// Every length is written as a u32, so every limit must fit in one.
const _: () = assert!(ENTRIES_COUNT_MAX <= u32::MAX as usize);
const _: () = assert!(MEMBERS_COUNT_MAX <= u32::MAX as usize);
const _: () = assert!(BYTES_SIZE_MAX <= u32::MAX as usize);

/// The encoded size of the smallest entry (term, index, time, a `Noop` payload tag). A
/// claimed entry count is checked against the remaining input at this size per entry.
const ENTRY_SIZE_MIN: usize = 8 + 8 + 8 + 1;
const NODE_ID_SIZE: usize = 8;

// Message body tags, in the order of the `MessageBody` variants.
const TAG_VOTE_REQUEST: u8 = 0;
const TAG_VOTE_RESPONSE: u8 = 1;
const TAG_APPEND_REQUEST: u8 = 2;
const TAG_APPEND_RESPONSE: u8 = 3;
const TAG_INSTALL_SNAPSHOT: u8 = 4;
const TAG_INSTALL_SNAPSHOT_RESPONSE: u8 = 5;
const TAG_READ_INDEX_REQUEST: u8 = 6;
const TAG_READ_INDEX_RESPONSE: u8 = 7;
const TAG_TIMEOUT_NOW: u8 = 8;

// Entry payload tags.
const TAG_PAYLOAD_NOOP: u8 = 0;
const TAG_PAYLOAD_COMMAND: u8 = 1;
const TAG_PAYLOAD_MEMBERSHIP: u8 = 2;

// Option tags.
const TAG_NONE: u8 = 0;
const TAG_SOME: u8 = 1;

/// Why a byte string is not a valid encoding. Offsets count from the start of the input
/// given to the `decode_*` function.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input ends early: {what} needs {needed} bytes at offset {offset}")]
    Truncated {
        needed: usize,
        offset: usize,
        what: &'static str,
    },
    #[error(
        "{what} has format version {version}, but this build reads only version \
         {FORMAT_VERSION}"
    )]
    UnknownVersion { what: &'static str, version: u8 },
    #[error("unknown {what} tag {tag} at offset {offset}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        offset: usize,
    },
    #[error("{what} at offset {offset} is {value}, but a boolean must be 0 or 1")]
    BadBool {
        what: &'static str,
        value: u8,
        offset: usize,
    },
    #[error("{count} unexpected bytes after the end of the encoded value")]
    TrailingBytes { count: usize },
    #[error("{what} length {length} exceeds the limit of {limit}")]
    TooLong {
        what: &'static str,
        length: usize,
        limit: usize,
    },
    #[error("invalid membership: {reason}")]
    InvalidMembership { reason: String },
}

// ---------------------------------------------------------------------------------------
// Public entry points.

/// Appends the encoding of `message` to `out`.
pub fn encode_message(message: &Message, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    put_u64(out, message.from.get());
    put_u64(out, message.to.get());
    put_u64(out, message.term.get());
    put_body(&message.body, out);
}

/// Decodes one whole message. Byte fields (commands, snapshot data) are copied out of
/// `bytes`; use [`decode_message_bytes`] to share the input buffer instead.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_unit(Reader::new(bytes, None), "raft message", get_message)
}

/// Decodes one whole message; byte fields are zero-copy slices of `bytes`, so they keep
/// the whole input buffer alive for as long as any of them lives.
pub fn decode_message_bytes(bytes: &Bytes) -> Result<Message, DecodeError> {
    decode_unit(Reader::new(bytes, Some(bytes)), "raft message", get_message)
}

/// Appends the self-contained encoding of `entry` to `out`; it is also the WAL record
/// payload of a log entry.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    put_entry(entry, out);
}

/// Decodes one whole entry; a command payload is copied out of `bytes`.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    decode_unit(Reader::new(bytes, None), "log entry", get_entry)
}

/// Decodes one whole entry; a command payload is a zero-copy slice of `bytes`.
pub fn decode_entry_bytes(bytes: &Bytes) -> Result<Entry, DecodeError> {
    decode_unit(Reader::new(bytes, Some(bytes)), "log entry", get_entry)
}

/// Appends the self-contained encoding of `meta` to `out`.
pub fn encode_snapshot_meta(meta: &SnapshotMeta, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    put_snapshot_meta(meta, out);
}

/// Decodes one whole snapshot meta; the membership must pass [`Membership::check`].
pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, DecodeError> {
    decode_unit(Reader::new(bytes, None), "snapshot meta", get_snapshot_meta)
}

/// Appends the self-contained encoding of `membership` to `out`.
pub fn encode_membership(membership: &Membership, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    put_membership(membership, out);
}

/// Decodes one whole membership; the membership must pass [`Membership::check`].
pub fn decode_membership(bytes: &[u8]) -> Result<Membership, DecodeError> {
    decode_unit(Reader::new(bytes, None), "membership", get_membership)
}

/// Decodes a versioned unit that must fill `reader`'s whole input.
fn decode_unit<'a, T>(
    mut reader: Reader<'a>,
    what: &'static str,
    get: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    reader.version(what)?;
    let value = get(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------
// Encoding.

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

fn put_option_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(TAG_NONE),
        Some(value) => {
            out.push(TAG_SOME);
            put_u64(out, value);
        }
    }
}

/// Writes a u32 length. A length over its limit would be refused by every decoder, so
/// writing one is a bug.
fn put_length(out: &mut Vec<u8>, what: &str, length: usize, limit: usize) {
    assert!(
        length <= limit,
        "codec: {what} length {length} exceeds the limit of {limit}; decoding would refuse it"
    );
    let length = u32::try_from(length).expect("every limit fits in a u32");
    out.extend_from_slice(&length.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, what: &str, bytes: &Bytes) {
    put_length(out, what, bytes.len(), BYTES_SIZE_MAX);
    out.extend_from_slice(bytes);
}

// One flat match over the variants, mirroring `get_body`, is easier to check against the
// format table than the same arms split across functions, so this one runs past 70 lines.
fn put_body(body: &MessageBody, out: &mut Vec<u8>) {
    match body {
        MessageBody::VoteRequest {
            pre_vote,
            transfer,
            last_index,
            last_term,
        } => {
            out.push(TAG_VOTE_REQUEST);
            put_bool(out, *pre_vote);
            put_bool(out, *transfer);
            put_u64(out, last_index.get());
            put_u64(out, last_term.get());
        }
        MessageBody::VoteResponse { pre_vote, granted } => {
            out.push(TAG_VOTE_RESPONSE);
            put_bool(out, *pre_vote);
            put_bool(out, *granted);
        }
        MessageBody::AppendRequest {
            prev_index,
            prev_term,
            entries,
            commit,
            sequence,
        } => {
            out.push(TAG_APPEND_REQUEST);
            put_u64(out, prev_index.get());
            put_u64(out, prev_term.get());
            put_length(out, "entries", entries.len(), ENTRIES_COUNT_MAX);
            for entry in entries {
                put_entry(entry, out);
            }
            put_u64(out, commit.get());
            put_u64(out, *sequence);
        }
        MessageBody::AppendResponse {
            success,
            index,
            hint_term,
            sequence,
            clock_nanos,
        } => {
            out.push(TAG_APPEND_RESPONSE);
            put_bool(out, *success);
            put_u64(out, index.get());
            put_option_u64(out, hint_term.map(Term::get));
            put_u64(out, *sequence);
            put_u64(out, *clock_nanos);
        }
        MessageBody::InstallSnapshot {
            meta,
            offset,
            size,
            data,
            sequence,
        } => {
            out.push(TAG_INSTALL_SNAPSHOT);
            put_snapshot_meta(meta, out);
            put_u64(out, *offset);
            put_u64(out, *size);
            put_bytes(out, "snapshot data", data);
            put_u64(out, *sequence);
        }
        MessageBody::InstallSnapshotResponse {
            next_offset,
            done,
            last_index,
            sequence,
        } => {
            out.push(TAG_INSTALL_SNAPSHOT_RESPONSE);
            put_u64(out, *next_offset);
            put_bool(out, *done);
            put_u64(out, last_index.get());
            put_u64(out, *sequence);
        }
        MessageBody::ReadIndexRequest { id } => {
            out.push(TAG_READ_INDEX_REQUEST);
            put_u64(out, *id);
        }
        MessageBody::ReadIndexResponse { id, index } => {
            out.push(TAG_READ_INDEX_RESPONSE);
            put_u64(out, *id);
            put_option_u64(out, index.map(LogIndex::get));
        }
        MessageBody::TimeoutNow => out.push(TAG_TIMEOUT_NOW),
    }
}

fn put_entry(entry: &Entry, out: &mut Vec<u8>) {
    put_u64(out, entry.term.get());
    put_u64(out, entry.index.get());
    put_u64(out, entry.time_ns);
    match &entry.payload {
        EntryPayload::Noop => out.push(TAG_PAYLOAD_NOOP),
        EntryPayload::Command(command) => {
            out.push(TAG_PAYLOAD_COMMAND);
            put_bytes(out, "command", command);
        }
        EntryPayload::Membership(membership) => {
            out.push(TAG_PAYLOAD_MEMBERSHIP);
            put_membership(membership, out);
        }
    }
}

fn put_snapshot_meta(meta: &SnapshotMeta, out: &mut Vec<u8>) {
    put_u64(out, meta.last_index.get());
    put_u64(out, meta.last_term.get());
    put_membership(&meta.membership, out);
}

fn put_membership(membership: &Membership, out: &mut Vec<u8>) {
    if let Err(reason) = membership.check() {
        panic!("codec: refusing to encode an invalid membership ({reason}): {membership:?}");
    }
    let lists = [
        ("voters", &membership.voters),
        ("voters_outgoing", &membership.voters_outgoing),
        ("learners", &membership.learners),
    ];
    for (what, nodes) in lists {
        put_length(out, what, nodes.len(), MEMBERS_COUNT_MAX);
        for node in nodes {
            put_u64(out, node.get());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding.

/// A cursor over the input. Every read checks that its bytes are present first.
struct Reader<'a> {
    input: &'a [u8],
    /// The same bytes as `input` when the caller gave a `Bytes`: byte fields are then
    /// sliced from it instead of copied.
    shared: Option<&'a Bytes>,
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8], shared: Option<&'a Bytes>) -> Reader<'a> {
        Reader {
            input,
            shared,
            position: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.position
    }

    fn take(&mut self, size: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if size > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: size,
                offset: self.position,
                what,
            });
        }
        let start = self.position;
        self.position += size;
        Ok(&self.input[start..self.position])
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut array = [0; 4];
        array.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(array))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut array = [0; 8];
        array.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(array))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.position;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool {
                what,
                value,
                offset,
            }),
        }
    }

    fn option_u64(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        let offset = self.position;
        match self.u8(what)? {
            TAG_NONE => Ok(None),
            TAG_SOME => Ok(Some(self.u64(what)?)),
            tag => Err(DecodeError::UnknownTag { what, tag, offset }),
        }
    }

    /// Reads a u32 length and checks it against `limit` and against the input that remains,
    /// taking each element to be at least `element_size_min` bytes, so that the caller may
    /// allocate `length` elements without trusting the input.
    fn length(
        &mut self,
        what: &'static str,
        limit: usize,
        element_size_min: usize,
    ) -> Result<usize, DecodeError> {
        let length = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        if length > limit {
            return Err(DecodeError::TooLong {
                what,
                length,
                limit,
            });
        }
        let needed = length.saturating_mul(element_size_min);
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                needed,
                offset: self.position,
                what,
            });
        }
        Ok(length)
    }

    fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.length(what, BYTES_SIZE_MAX, 1)?;
        let start = self.position;
        let slice = self.take(length, what)?;
        Ok(match self.shared {
            Some(shared) => shared.slice(start..start + length),
            None => Bytes::copy_from_slice(slice),
        })
    }

    fn version(&mut self, what: &'static str) -> Result<(), DecodeError> {
        let version = self.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion { what, version });
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

// Struct expressions evaluate their fields in the order written, so each constructor below
// reads its fields in the order it lists them: the encoding order.

fn get_message(reader: &mut Reader<'_>) -> Result<Message, DecodeError> {
    Ok(Message {
        from: NodeId(reader.u64("from")?),
        to: NodeId(reader.u64("to")?),
        term: Term(reader.u64("term")?),
        body: get_body(reader)?,
    })
}

fn get_body(reader: &mut Reader<'_>) -> Result<MessageBody, DecodeError> {
    let offset = reader.position;
    let body = match reader.u8("message body tag")? {
        TAG_VOTE_REQUEST => MessageBody::VoteRequest {
            pre_vote: reader.bool("pre_vote")?,
            transfer: reader.bool("transfer")?,
            last_index: LogIndex(reader.u64("last_index")?),
            last_term: Term(reader.u64("last_term")?),
        },
        TAG_VOTE_RESPONSE => MessageBody::VoteResponse {
            pre_vote: reader.bool("pre_vote")?,
            granted: reader.bool("granted")?,
        },
        TAG_APPEND_REQUEST => MessageBody::AppendRequest {
            prev_index: LogIndex(reader.u64("prev_index")?),
            prev_term: Term(reader.u64("prev_term")?),
            entries: get_entries(reader)?,
            commit: LogIndex(reader.u64("commit")?),
            sequence: reader.u64("sequence")?,
        },
        TAG_APPEND_RESPONSE => MessageBody::AppendResponse {
            success: reader.bool("success")?,
            index: LogIndex(reader.u64("index")?),
            hint_term: reader.option_u64("hint_term")?.map(Term),
            sequence: reader.u64("sequence")?,
            clock_nanos: reader.u64("clock_nanos")?,
        },
        TAG_INSTALL_SNAPSHOT => MessageBody::InstallSnapshot {
            meta: get_snapshot_meta(reader)?,
            offset: reader.u64("offset")?,
            size: reader.u64("size")?,
            data: reader.bytes("snapshot data")?,
            sequence: reader.u64("sequence")?,
        },
        TAG_INSTALL_SNAPSHOT_RESPONSE => MessageBody::InstallSnapshotResponse {
            next_offset: reader.u64("next_offset")?,
            done: reader.bool("done")?,
            last_index: LogIndex(reader.u64("last_index")?),
            sequence: reader.u64("sequence")?,
        },
        TAG_READ_INDEX_REQUEST => MessageBody::ReadIndexRequest {
            id: reader.u64("id")?,
        },
        TAG_READ_INDEX_RESPONSE => MessageBody::ReadIndexResponse {
            id: reader.u64("id")?,
            index: reader.option_u64("index")?.map(LogIndex),
        },
        TAG_TIMEOUT_NOW => MessageBody::TimeoutNow,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "message body",
                tag,
                offset,
            });
        }
    };
    Ok(body)
}

fn get_entries(reader: &mut Reader<'_>) -> Result<Vec<Entry>, DecodeError> {
    let count = reader.length("entries", ENTRIES_COUNT_MAX, ENTRY_SIZE_MIN)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(get_entry(reader)?);
    }
    Ok(entries)
}

fn get_entry(reader: &mut Reader<'_>) -> Result<Entry, DecodeError> {
    Ok(Entry {
        term: Term(reader.u64("entry term")?),
        index: LogIndex(reader.u64("entry index")?),
        time_ns: reader.u64("entry time_ns")?,
        payload: get_payload(reader)?,
    })
}

fn get_payload(reader: &mut Reader<'_>) -> Result<EntryPayload, DecodeError> {
    let offset = reader.position;
    match reader.u8("entry payload tag")? {
        TAG_PAYLOAD_NOOP => Ok(EntryPayload::Noop),
        TAG_PAYLOAD_COMMAND => Ok(EntryPayload::Command(reader.bytes("command")?)),
        TAG_PAYLOAD_MEMBERSHIP => Ok(EntryPayload::Membership(get_membership(reader)?)),
        tag => Err(DecodeError::UnknownTag {
            what: "entry payload",
            tag,
            offset,
        }),
    }
}

fn get_snapshot_meta(reader: &mut Reader<'_>) -> Result<SnapshotMeta, DecodeError> {
    Ok(SnapshotMeta {
        last_index: LogIndex(reader.u64("snapshot last_index")?),
        last_term: Term(reader.u64("snapshot last_term")?),
        membership: get_membership(reader)?,
    })
}

fn get_membership(reader: &mut Reader<'_>) -> Result<Membership, DecodeError> {
    let membership = Membership {
        voters: get_nodes(reader, "voters")?,
        voters_outgoing: get_nodes(reader, "voters_outgoing")?,
        learners: get_nodes(reader, "learners")?,
    };
    membership
        .check()
        .map_err(|reason| DecodeError::InvalidMembership { reason })?;
    Ok(membership)
}

fn get_nodes(reader: &mut Reader<'_>, what: &'static str) -> Result<Vec<NodeId>, DecodeError> {
    let count = reader.length(what, MEMBERS_COUNT_MAX, NODE_ID_SIZE)?;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        nodes.push(NodeId(reader.u64(what)?));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_set, vec};
    use proptest::prelude::*;

    // -----------------------------------------------------------------------------------
    // Strategies.

    fn node_id() -> impl Strategy<Value = NodeId> {
        // Small ids make overlapping member sets likely; any u64 covers the full width.
        prop_oneof![0u64..16, any::<u64>()].prop_map(NodeId)
    }

    /// Valid memberships only: sorted unique lists (from sets), at least one voter, and
    /// learners with every voter of either half removed.
    fn membership() -> impl Strategy<Value = Membership> {
        let voters = btree_set(node_id(), 1..6);
        let voters_outgoing = prop_oneof![Just(Default::default()), btree_set(node_id(), 1..6)];
        let learners = btree_set(node_id(), 0..4);
        (voters, voters_outgoing, learners).prop_map(|(voters, voters_outgoing, learners)| {
            let learners = learners
                .into_iter()
                .filter(|node| !voters.contains(node) && !voters_outgoing.contains(node))
                .collect();
            Membership {
                voters: voters.into_iter().collect(),
                voters_outgoing: voters_outgoing.into_iter().collect(),
                learners,
            }
        })
    }

    fn small_bytes() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..48).prop_map(Bytes::from)
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let payload = prop_oneof![
            Just(EntryPayload::Noop),
            small_bytes().prop_map(EntryPayload::Command),
            membership().prop_map(EntryPayload::Membership),
        ];
        (any::<u64>(), any::<u64>(), any::<u64>(), payload).prop_map(
            |(term, index, time_ns, payload)| Entry {
                term: Term(term),
                index: LogIndex(index),
                time_ns,
                payload,
            },
        )
    }

    fn snapshot_meta() -> impl Strategy<Value = SnapshotMeta> {
        (any::<u64>(), any::<u64>(), membership()).prop_map(|(index, term, membership)| {
            SnapshotMeta {
                last_index: LogIndex(index),
                last_term: Term(term),
                membership,
            }
        })
    }

    fn index() -> impl Strategy<Value = LogIndex> {
        any::<u64>().prop_map(LogIndex)
    }

    fn term() -> impl Strategy<Value = Term> {
        any::<u64>().prop_map(Term)
    }

    /// Every variant of `MessageBody`, equally likely.
    fn message_body() -> impl Strategy<Value = MessageBody> {
        prop_oneof![
            (any::<bool>(), any::<bool>(), index(), term()).prop_map(
                |(pre_vote, transfer, last_index, last_term)| MessageBody::VoteRequest {
                    pre_vote,
                    transfer,
                    last_index,
                    last_term,
                }
            ),
            (any::<bool>(), any::<bool>())
                .prop_map(|(pre_vote, granted)| MessageBody::VoteResponse { pre_vote, granted }),
            (index(), term(), vec(entry(), 0..5), index(), any::<u64>()).prop_map(
                |(prev_index, prev_term, entries, commit, sequence)| MessageBody::AppendRequest {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    sequence,
                }
            ),
            (
                any::<bool>(),
                index(),
                proptest::option::of(term()),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(success, index, hint_term, sequence, clock_nanos)| {
                    MessageBody::AppendResponse {
                        success,
                        index,
                        hint_term,
                        sequence,
                        clock_nanos,
                    }
                }),
            (
                snapshot_meta(),
                any::<u64>(),
                any::<u64>(),
                small_bytes(),
                any::<u64>()
            )
                .prop_map(|(meta, offset, size, data, sequence)| {
                    MessageBody::InstallSnapshot {
                        meta,
                        offset,
                        size,
                        data,
                        sequence,
                    }
                }),
            (any::<u64>(), any::<bool>(), index(), any::<u64>()).prop_map(
                |(next_offset, done, last_index, sequence)| {
                    MessageBody::InstallSnapshotResponse {
                        next_offset,
                        done,
                        last_index,
                        sequence,
                    }
                }
            ),
            any::<u64>().prop_map(|id| MessageBody::ReadIndexRequest { id }),
            (any::<u64>(), proptest::option::of(index()))
                .prop_map(|(id, index)| MessageBody::ReadIndexResponse { id, index }),
            Just(MessageBody::TimeoutNow),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (node_id(), node_id(), term(), message_body()).prop_map(|(from, to, term, body)| Message {
            from,
            to,
            term,
            body,
        })
    }

    fn encoded_message(message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(message, &mut out);
        out
    }

    fn encoded_entry(entry: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry(entry, &mut out);
        out
    }

    /// An append request carrying one command entry, and the byte offsets of its entry
    /// count and of the command's length, computed from the layout in docs/raft_wire.md.
    fn append_request_with_command(command: &'static [u8]) -> (Vec<u8>, usize, usize) {
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::AppendRequest {
                prev_index: LogIndex(4),
                prev_term: Term(3),
                entries: vec![Entry {
                    term: Term(3),
                    index: LogIndex(5),
                    time_ns: 6,
                    payload: EntryPayload::Command(Bytes::from_static(command)),
                }],
                commit: LogIndex(4),
                sequence: 7,
            },
        };
        let header_size = 1 + 8 + 8 + 8 + 1;
        let entries_count_offset = header_size + 8 + 8;
        let command_length_offset = entries_count_offset + 4 + 8 + 8 + 8 + 1;
        (
            encoded_message(&message),
            entries_count_offset,
            command_length_offset,
        )
    }

    fn overwrite_u32(bytes: &mut [u8], offset: usize, expected: u32, value: u32) {
        let field = &mut bytes[offset..offset + 4];
        assert_eq!(
            field,
            expected.to_le_bytes(),
            "the layout moved: fix the test's offsets"
        );
        field.copy_from_slice(&value.to_le_bytes());
    }

    // -----------------------------------------------------------------------------------
    // Example tests.

    #[test]
    fn a_vote_request_encodes_to_the_documented_bytes() {
        // Checks the exact bytes of one small message, pinning the format: changing them
        // breaks every running cluster and needs a new FORMAT_VERSION.
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(5),
            body: MessageBody::VoteRequest {
                pre_vote: true,
                transfer: false,
                last_index: LogIndex(0x0102),
                last_term: Term(4),
            },
        };
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            1,                          // format version
            1, 0, 0, 0, 0, 0, 0, 0,     // from
            2, 0, 0, 0, 0, 0, 0, 0,     // to
            5, 0, 0, 0, 0, 0, 0, 0,     // term
            0,                          // body tag: VoteRequest
            1,                          // pre_vote
            0,                          // transfer
            2, 1, 0, 0, 0, 0, 0, 0,     // last_index
            4, 0, 0, 0, 0, 0, 0, 0,     // last_term
        ];
        assert_eq!(encoded_message(&message), expected);
        assert_eq!(decode_message(&expected), Ok(message));
    }

    #[test]
    fn an_entry_encodes_to_the_documented_bytes() {
        // Checks the exact bytes of a command entry, the WAL payload of a log entry, and of
        // a membership entry: these are on disk, so changing them needs a new version.
        let command = Entry {
            term: Term(2),
            index: LogIndex(9),
            time_ns: 0x0a0b,
            payload: EntryPayload::Command(Bytes::from_static(b"hi")),
        };
        #[rustfmt::skip]
        let command_expected: Vec<u8> = vec![
            1,                          // format version
            2, 0, 0, 0, 0, 0, 0, 0,     // term
            9, 0, 0, 0, 0, 0, 0, 0,     // index
            0x0b, 0x0a, 0, 0, 0, 0, 0, 0, // time_ns
            1,                          // payload tag: Command
            2, 0, 0, 0,                 // command length
            b'h', b'i',                 // command
        ];
        assert_eq!(encoded_entry(&command), command_expected);
        assert_eq!(decode_entry(&command_expected), Ok(command));

        let membership = Membership {
            voters: vec![NodeId(1), NodeId(3)],
            voters_outgoing: Vec::new(),
            learners: vec![NodeId(2)],
        };
        #[rustfmt::skip]
        let membership_expected: Vec<u8> = vec![
            1,                          // format version
            2, 0, 0, 0,                 // voters count
            1, 0, 0, 0, 0, 0, 0, 0,     // voter
            3, 0, 0, 0, 0, 0, 0, 0,     // voter
            0, 0, 0, 0,                 // voters_outgoing count
            1, 0, 0, 0,                 // learners count
            2, 0, 0, 0, 0, 0, 0, 0,     // learner
        ];
        let mut out = Vec::new();
        encode_membership(&membership, &mut out);
        assert_eq!(out, membership_expected);
        assert_eq!(decode_membership(&membership_expected), Ok(membership));
    }

    #[test]
    fn length_fields_claiming_4_gib_fail_without_allocating() {
        // Checks that an entry count or a command length of u32::MAX is refused by its limit
        // before anything is allocated or sliced (an allocation of 2^32 entries would abort
        // the test process), and that a length under the limit but past the end of the input
        // is refused as truncated.
        let (valid, entries_count_offset, command_length_offset) =
            append_request_with_command(b"abc");
        assert!(decode_message(&valid).is_ok());

        let mut bytes = valid.clone();
        overwrite_u32(&mut bytes, entries_count_offset, 1, u32::MAX);
        let error = decode_message(&bytes).unwrap_err();
        let expected = DecodeError::TooLong {
            what: "entries",
            length: u32::MAX as usize,
            limit: ENTRIES_COUNT_MAX,
        };
        assert_eq!(error, expected);

        let mut bytes = valid.clone();
        overwrite_u32(&mut bytes, command_length_offset, 3, u32::MAX);
        let error = decode_message_bytes(&Bytes::from(bytes)).unwrap_err();
        let expected = DecodeError::TooLong {
            what: "command",
            length: u32::MAX as usize,
            limit: BYTES_SIZE_MAX,
        };
        assert_eq!(error, expected);

        let mut bytes = valid.clone();
        let count = ENTRIES_COUNT_MAX as u32;
        overwrite_u32(&mut bytes, entries_count_offset, 1, count);
        let error = decode_message(&bytes).unwrap_err();
        let expected = DecodeError::Truncated {
            needed: ENTRIES_COUNT_MAX * ENTRY_SIZE_MIN,
            offset: entries_count_offset + 4,
            what: "entries",
        };
        assert_eq!(error, expected);

        let mut bytes = valid;
        let length = BYTES_SIZE_MAX as u32;
        overwrite_u32(&mut bytes, command_length_offset, 3, length);
        let error = decode_message(&bytes).unwrap_err();
        let expected = DecodeError::Truncated {
            needed: BYTES_SIZE_MAX,
            offset: command_length_offset + 4,
            what: "command",
        };
        assert_eq!(error, expected);
    }

    #[test]
    fn malformed_inputs_fail_with_the_error_that_names_the_fault() {
        // Checks, one table row per rule, that each kind of malformed input is refused with
        // the specific error and offset, not some other failure.
        let vote = encoded_message(&Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(5),
            body: MessageBody::VoteResponse {
                pre_vote: false,
                granted: true,
            },
        });
        let with = |offset: usize, value: u8| {
            let mut bytes = vote.clone();
            bytes[offset] = value;
            bytes
        };
        let trailing = [vote.clone(), vec![0, 0]].concat();
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            (
                "unknown version",
                with(0, 2),
                DecodeError::UnknownVersion {
                    what: "raft message",
                    version: 2,
                },
            ),
            (
                "unknown body tag",
                with(25, 9),
                DecodeError::UnknownTag {
                    what: "message body",
                    tag: 9,
                    offset: 25,
                },
            ),
            (
                "boolean 2",
                with(27, 2),
                DecodeError::BadBool {
                    what: "granted",
                    value: 2,
                    offset: 27,
                },
            ),
            (
                "trailing bytes",
                trailing,
                DecodeError::TrailingBytes { count: 2 },
            ),
            (
                "empty input",
                Vec::new(),
                DecodeError::Truncated {
                    needed: 1,
                    offset: 0,
                    what: "format version",
                },
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(decode_message(&bytes), Err(expected), "case: {name}");
        }
    }

    #[test]
    fn an_append_response_carries_the_follower_clock_and_a_cut_one_is_truncated() {
        // Checks the follower's clock reading is the last field of an AppendResponse, decodes
        // back exactly, and that a message cut inside it fails as Truncated naming the field
        // (a peer's short message must never panic or decode to a wrong clock).
        let message = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(3),
            body: MessageBody::AppendResponse {
                success: true,
                index: LogIndex(9),
                hint_term: None,
                sequence: 17,
                clock_nanos: 0x0102_0304_0506_0708,
            },
        };
        let bytes = encoded_message(&message);
        assert_eq!(bytes.len(), 52);
        assert_eq!(&bytes[44..], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(decode_message(&bytes), Ok(message));
        assert_eq!(
            decode_message(&bytes[..49]),
            Err(DecodeError::Truncated {
                needed: 8,
                offset: 44,
                what: "clock_nanos",
            })
        );
    }

    #[test]
    fn invalid_option_and_payload_tags_are_refused() {
        // Checks that an option tag other than 0 or 1 and an unknown entry payload tag are
        // refused with their offsets.
        let mut response = encoded_message(&Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(5),
            body: MessageBody::ReadIndexResponse { id: 3, index: None },
        });
        let option_offset = 26 + 8;
        response[option_offset] = 2;
        let expected = DecodeError::UnknownTag {
            what: "index",
            tag: 2,
            offset: option_offset,
        };
        assert_eq!(decode_message(&response), Err(expected));

        let mut entry = encoded_entry(&Entry {
            term: Term(1),
            index: LogIndex(1),
            time_ns: 0,
            payload: EntryPayload::Noop,
        });
        entry[25] = 3;
        let expected = DecodeError::UnknownTag {
            what: "entry payload",
            tag: 3,
            offset: 25,
        };
        assert_eq!(decode_entry(&entry), Err(expected));
    }

    #[test]
    fn memberships_that_break_the_rules_are_refused() {
        // Checks that a decoded membership must pass Membership::check: no voters, unsorted
        // or duplicate members, and a learner that is also a voter all fail with the reason.
        let encode_lists = |voters: &[u64], outgoing: &[u64], learners: &[u64]| {
            let mut out = vec![FORMAT_VERSION];
            for list in [voters, outgoing, learners] {
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for node in list {
                    out.extend_from_slice(&node.to_le_bytes());
                }
            }
            out
        };
        // Voters, outgoing voters, learners, and the reason check() gives.
        type Case = (&'static [u64], &'static [u64], &'static [u64], &'static str);
        let cases: [Case; 5] = [
            (&[], &[], &[], "a configuration needs at least one voter"),
            (
                &[2, 1],
                &[],
                &[],
                "member lists must be sorted and free of duplicates",
            ),
            (
                &[1, 1],
                &[],
                &[],
                "member lists must be sorted and free of duplicates",
            ),
            (
                &[1],
                &[],
                &[3, 3],
                "member lists must be sorted and free of duplicates",
            ),
            (&[1], &[2], &[2], "n2 is both a voter and a learner"),
        ];
        for (voters, outgoing, learners, reason) in cases {
            let bytes = encode_lists(voters, outgoing, learners);
            let expected = DecodeError::InvalidMembership {
                reason: reason.to_string(),
            };
            assert_eq!(
                decode_membership(&bytes),
                Err(expected),
                "{voters:?} {learners:?}"
            );
        }
        assert!(decode_membership(&encode_lists(&[1, 2], &[3], &[4])).is_ok());
    }

    #[test]
    fn zero_copy_decoding_slices_the_input_buffer() {
        // Checks that decode_message_bytes returns a command that points into the input
        // buffer, while decode_message copies it.
        let (valid, _, command_length_offset) = append_request_with_command(b"abc");
        let input = Bytes::from(valid);
        let command_of = |message: Message| match message.body {
            MessageBody::AppendRequest { mut entries, .. } => match entries.remove(0).payload {
                EntryPayload::Command(command) => command,
                other => panic!("expected a command, got {other:?}"),
            },
            other => panic!("expected an append request, got {other:?}"),
        };
        let shared = command_of(decode_message_bytes(&input).unwrap());
        let copied = command_of(decode_message(&input).unwrap());
        assert_eq!(shared, copied);
        let command_start = input.as_ptr() as usize + command_length_offset + 4;
        assert_eq!(shared.as_ptr() as usize, command_start);
        assert_ne!(copied.as_ptr() as usize, command_start);
    }

    #[test]
    #[should_panic(expected = "refusing to encode an invalid membership")]
    fn encoding_an_invalid_membership_asserts() {
        // Checks that the encoder refuses to write a membership every decoder would refuse.
        encode_membership(&Membership::default(), &mut Vec::new());
    }

    // -----------------------------------------------------------------------------------
    // Properties.

    proptest! {
        #[test]
        fn messages_round_trip(message in message()) {
            // Checks that every message (each MessageBody variant is drawn in about a ninth
            // of the cases) decodes to itself, through both the copying and the zero-copy
            // decoder.
            let bytes = encoded_message(&message);
            prop_assert_eq!(decode_message(&bytes), Ok(message.clone()));
            prop_assert_eq!(decode_message_bytes(&Bytes::from(bytes)), Ok(message));
        }

        #[test]
        fn entries_snapshot_metas_and_memberships_round_trip(
            entry in entry(),
            meta in snapshot_meta(),
        ) {
            // Checks the self-contained encodings (the WAL entry payload among them) decode
            // to what was encoded.
            let bytes = encoded_entry(&entry);
            prop_assert_eq!(decode_entry(&bytes), Ok(entry.clone()));
            prop_assert_eq!(decode_entry_bytes(&Bytes::from(bytes)), Ok(entry));

            let mut bytes = Vec::new();
            encode_snapshot_meta(&meta, &mut bytes);
            prop_assert_eq!(decode_snapshot_meta(&bytes), Ok(meta.clone()));

            let mut bytes = Vec::new();
            encode_membership(&meta.membership, &mut bytes);
            prop_assert_eq!(decode_membership(&bytes), Ok(meta.membership));
        }

        #[test]
        fn every_strict_prefix_of_an_encoding_is_truncated(
            message in message(),
            entry in entry(),
        ) {
            // Checks that cutting a valid message or entry anywhere before its end fails
            // with Truncated, never with another error and never by succeeding.
            let bytes = encoded_message(&message);
            for length in 0..bytes.len() {
                let result = decode_message(&bytes[..length]);
                prop_assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "prefix of {} bytes: {:?}", length, result
                );
            }
            let bytes = encoded_entry(&entry);
            for length in 0..bytes.len() {
                let result = decode_entry(&bytes[..length]);
                prop_assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "prefix of {} bytes: {:?}", length, result
                );
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(
            bytes in vec(any::<u8>(), 0..512),
            versioned in any::<bool>(),
        ) {
            // Checks that every decoder returns (Ok or Err) on arbitrary input; half the
            // inputs carry the right version byte so that decoding gets past it.
            let mut bytes = bytes;
            if versioned && !bytes.is_empty() {
                bytes[0] = FORMAT_VERSION;
            }
            let _ = decode_message(&bytes);
            let _ = decode_message_bytes(&Bytes::from(bytes.clone()));
            let _ = decode_entry(&bytes);
            let _ = decode_snapshot_meta(&bytes);
            let _ = decode_membership(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic_and_decode_canonically(
            message in message(),
            position in any::<prop::sample::Index>(),
            value in any::<u8>(),
        ) {
            // Checks that a valid message with one byte changed never panics the decoder,
            // and that when it still decodes, re-encoding gives back exactly the mutated
            // bytes: the encoding is canonical, so no two byte strings mean one message.
            let mut bytes = encoded_message(&message);
            let position = position.index(bytes.len());
            bytes[position] = value;
            if let Ok(decoded) = decode_message(&bytes) {
                prop_assert_eq!(encoded_message(&decoded), bytes);
            }
        }
    }
}
