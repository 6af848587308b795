//! Commands: what a Raft entry asks the store to do, and their byte encoding.
//!
//! The encoding is explicit little-endian (see `docs/kv.md` for the layout) and canonical:
//! every command has exactly one encoding, because the decoder refuses unknown tags,
//! booleans other than 0 and 1, and trailing bytes. The session table relies on that: it
//! recognises a retried command by the hash of its encoded operation.

use bytes::Bytes;
use synod_core::ClientId;

use crate::codec::{DecodeError, DecodeProblem, Reader, Writer};

/// The format version written as the first byte of an encoded command.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

/// One entry's command: an operation, optionally inside a client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub session: Option<SessionRef>,
    pub op: Operation,
}

/// Where a command sits in its client's session: the store applies each `(client,
/// sequence)` at most once and remembers replies above `acknowledged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub client: ClientId,
    /// The client's number for this command, starting at 1 and never reused.
    pub sequence: u64,
    /// The client has seen the replies to every sequence at or below this one, so the
    /// store may forget them. Always less than `sequence`.
    pub acknowledged: u64,
}

/// When a `Put` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Always (SET).
    Always,
    /// Only when the key is absent (SET NX, SETNX).
    IfAbsent,
    /// Only when the key is present (SET XX).
    IfPresent,
}

/// A test on a key's current state, for `Cas` and `Txn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The value equals this one; `None` means the key is absent.
    ValueEquals(Option<Bytes>),
    /// The key's version equals this one; 0 means the key is absent.
    VersionEquals(u64),
    /// The key's mod revision equals this one; 0 means the key is absent.
    ModRevisionEquals(u64),
}

/// An operation inside a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    /// A read inside the transaction: it sees the branch's earlier writes.
    Get {
        key: Bytes,
    },
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Opens a session; its `ClientId` is the log index of this entry.
    RegisterSession,
    /// Keeps a session alive and applies its acknowledgement.
    KeepAlive,
    /// Ends a session and forgets its replies.
    CloseSession,
    Put {
        key: Bytes,
        value: Bytes,
        condition: PutCondition,
        /// Reply with the value the key held before (SET GET, GETSET).
        return_previous: bool,
    },
    /// Deletes each key; the reply counts the keys that existed.
    Delete { keys: Vec<Bytes> },
    /// Writes `value` if `compare` holds.
    Cas {
        key: Bytes,
        compare: Compare,
        value: Bytes,
    },
    /// Adds `delta` to a decimal integer value (Redis INCRBY; absent counts as 0).
    Incr { key: Bytes, delta: i64 },
    /// Appends to the value (absent counts as empty); the reply is the new length.
    Append { key: Bytes, suffix: Bytes },
    /// If every compare holds, runs `success`, else `failure`: all or nothing, one revision.
    Txn {
        compares: Vec<(Bytes, Compare)>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// Reads a key at a revision (`None`: the current one) through the log.
    Get { key: Bytes, revision: Option<u64> },
    /// Reads keys in `[start, end)` (`end` `None`: to the last key) in key order, at most
    /// `limit` of them (0: the configured maximum).
    Range {
        start: Bytes,
        end: Option<Bytes>,
        limit: u32,
        revision: Option<u64>,
    },
    /// Forgets versions that no read at or after `revision` can see.
    Compact { revision: u64 },
}

mod tag {
    pub const REGISTER_SESSION: u8 = 1;
    pub const KEEP_ALIVE: u8 = 2;
    pub const CLOSE_SESSION: u8 = 3;
    pub const PUT: u8 = 4;
    pub const DELETE: u8 = 5;
    pub const CAS: u8 = 6;
    pub const INCR: u8 = 7;
    pub const APPEND: u8 = 8;
    pub const TXN: u8 = 9;
    pub const GET: u8 = 10;
    pub const RANGE: u8 = 11;
    pub const COMPACT: u8 = 12;

    pub const COMPARE_VALUE: u8 = 1;
    pub const COMPARE_VERSION: u8 = 2;
    pub const COMPARE_MOD_REVISION: u8 = 3;

    pub const TXN_PUT: u8 = 1;
    pub const TXN_DELETE: u8 = 2;
    pub const TXN_GET: u8 = 3;
}

/// The fewest bytes an encoded byte string takes (its length).
const BYTES_SIZE_MIN: usize = 4;
/// The fewest bytes an encoded compare takes (tag and option tag).
const COMPARE_SIZE_MIN: usize = 2;
/// The fewest bytes an encoded transaction op takes (tag and a key length).
const TXN_OP_SIZE_MIN: usize = 1 + BYTES_SIZE_MIN;

impl Command {
    /// The command's canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        writer.u8(COMMAND_FORMAT_VERSION);
        match self.session {
            None => writer.u8(0),
            Some(session) => {
                writer.u8(1);
                writer.u64(session.client.get());
                writer.u64(session.sequence);
                writer.u64(session.acknowledged);
            }
        }
        encode_operation(&mut writer, &self.op);
        writer.sink
    }

    /// Decodes an encoded command; any malformed input is an error saying what was wrong
    /// and where, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        decode_command(bytes).map(|(command, _)| command)
    }
}

/// Decodes a command and returns the offset where its operation's bytes start, which the
/// session table hashes to recognise a retry.
pub(crate) fn decode_command(bytes: &[u8]) -> Result<(Command, usize), DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8("command.format_version")?;
    if version != COMMAND_FORMAT_VERSION {
        let problem = DecodeProblem::UnsupportedVersion {
            version,
            supported: COMMAND_FORMAT_VERSION,
        };
        return Err(reader.error_before("command.format_version", 1, problem));
    }
    let session = match reader.u8("command.session")? {
        0 => None,
        1 => Some(SessionRef {
            client: ClientId(reader.u64("session.client")?),
            sequence: reader.u64("session.sequence")?,
            acknowledged: reader.u64("session.acknowledged")?,
        }),
        tag => {
            let problem = DecodeProblem::UnknownTag { tag };
            return Err(reader.error_before("command.session", 1, problem));
        }
    };
    let op_offset = reader.offset();
    let op = decode_operation(&mut reader)?;
    reader.finish("command")?;
    Ok((Command { session, op }, op_offset))
}

fn encode_operation(writer: &mut Writer, op: &Operation) {
    match op {
        Operation::RegisterSession => writer.u8(tag::REGISTER_SESSION),
        Operation::KeepAlive => writer.u8(tag::KEEP_ALIVE),
        Operation::CloseSession => writer.u8(tag::CLOSE_SESSION),
        Operation::Put {
            key,
            value,
            condition,
            return_previous,
        } => {
            writer.u8(tag::PUT);
            writer.bytes(key);
            writer.bytes(value);
            writer.u8(match condition {
                PutCondition::Always => 0,
                PutCondition::IfAbsent => 1,
                PutCondition::IfPresent => 2,
            });
            writer.bool(*return_previous);
        }
        Operation::Delete { keys } => {
            writer.u8(tag::DELETE);
            writer.count(keys.len());
            keys.iter().for_each(|key| writer.bytes(key));
        }
        Operation::Cas {
            key,
            compare,
            value,
        } => {
            writer.u8(tag::CAS);
            writer.bytes(key);
            encode_compare(writer, compare);
            writer.bytes(value);
        }
        Operation::Incr { key, delta } => {
            writer.u8(tag::INCR);
            writer.bytes(key);
            writer.i64(*delta);
        }
        Operation::Append { key, suffix } => {
            writer.u8(tag::APPEND);
            writer.bytes(key);
            writer.bytes(suffix);
        }
        Operation::Txn {
            compares,
            success,
            failure,
        } => encode_txn(writer, compares, success, failure),
        Operation::Get { key, revision } => {
            writer.u8(tag::GET);
            writer.bytes(key);
            writer.option_u64(*revision);
        }
        Operation::Range {
            start,
            end,
            limit,
            revision,
        } => {
            writer.u8(tag::RANGE);
            writer.bytes(start);
            writer.option_bytes(end.as_deref());
            writer.u32(*limit);
            writer.option_u64(*revision);
        }
        Operation::Compact { revision } => {
            writer.u8(tag::COMPACT);
            writer.u64(*revision);
        }
    }
}

fn encode_txn(
    writer: &mut Writer,
    compares: &[(Bytes, Compare)],
    success: &[TxnOp],
    failure: &[TxnOp],
) {
    writer.u8(tag::TXN);
    writer.count(compares.len());
    for (key, compare) in compares {
        writer.bytes(key);
        encode_compare(writer, compare);
    }
    for branch in [success, failure] {
        writer.count(branch.len());
        for op in branch {
            match op {
                TxnOp::Put { key, value } => {
                    writer.u8(tag::TXN_PUT);
                    writer.bytes(key);
                    writer.bytes(value);
                }
                TxnOp::Delete { key } => {
                    writer.u8(tag::TXN_DELETE);
                    writer.bytes(key);
                }
                TxnOp::Get { key } => {
                    writer.u8(tag::TXN_GET);
                    writer.bytes(key);
                }
            }
        }
    }
}

fn encode_compare(writer: &mut Writer, compare: &Compare) {
    match compare {
        Compare::ValueEquals(value) => {
            writer.u8(tag::COMPARE_VALUE);
            writer.option_bytes(value.as_deref());
        }
        Compare::VersionEquals(version) => {
            writer.u8(tag::COMPARE_VERSION);
            writer.u64(*version);
        }
        Compare::ModRevisionEquals(revision) => {
            writer.u8(tag::COMPARE_MOD_REVISION);
            writer.u64(*revision);
        }
    }
}

fn bytes(reader: &mut Reader<'_>, field: &'static str) -> Result<Bytes, DecodeError> {
    Ok(Bytes::copy_from_slice(reader.bytes(field)?))
}

fn decode_operation(reader: &mut Reader<'_>) -> Result<Operation, DecodeError> {
    let op = match reader.u8("operation.tag")? {
        tag::REGISTER_SESSION => Operation::RegisterSession,
        tag::KEEP_ALIVE => Operation::KeepAlive,
        tag::CLOSE_SESSION => Operation::CloseSession,
        tag::PUT => decode_put(reader)?,
        tag::DELETE => {
            let count = reader.count("delete.keys", BYTES_SIZE_MIN)?;
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                keys.push(bytes(reader, "delete.key")?);
            }
            Operation::Delete { keys }
        }
        tag::CAS => Operation::Cas {
            key: bytes(reader, "cas.key")?,
            compare: decode_compare(reader)?,
            value: bytes(reader, "cas.value")?,
        },
        tag::INCR => Operation::Incr {
            key: bytes(reader, "incr.key")?,
            delta: reader.i64("incr.delta")?,
        },
        tag::APPEND => Operation::Append {
            key: bytes(reader, "append.key")?,
            suffix: bytes(reader, "append.suffix")?,
        },
        tag::TXN => decode_txn(reader)?,
        tag::GET => Operation::Get {
            key: bytes(reader, "get.key")?,
            revision: reader.option_u64("get.revision")?,
        },
        tag::RANGE => Operation::Range {
            start: bytes(reader, "range.start")?,
            end: reader
                .option_bytes("range.end")?
                .map(Bytes::copy_from_slice),
            limit: reader.u32("range.limit")?,
            revision: reader.option_u64("range.revision")?,
        },
        tag::COMPACT => Operation::Compact {
            revision: reader.u64("compact.revision")?,
        },
        tag => {
            let problem = DecodeProblem::UnknownTag { tag };
            return Err(reader.error_before("operation.tag", 1, problem));
        }
    };
    Ok(op)
}

fn decode_put(reader: &mut Reader<'_>) -> Result<Operation, DecodeError> {
    let key = bytes(reader, "put.key")?;
    let value = bytes(reader, "put.value")?;
    let condition = match reader.u8("put.condition")? {
        0 => PutCondition::Always,
        1 => PutCondition::IfAbsent,
        2 => PutCondition::IfPresent,
        tag => {
            let problem = DecodeProblem::UnknownTag { tag };
            return Err(reader.error_before("put.condition", 1, problem));
        }
    };
    let return_previous = reader.bool("put.return_previous")?;
    Ok(Operation::Put {
        key,
        value,
        condition,
        return_previous,
    })
}

fn decode_compare(reader: &mut Reader<'_>) -> Result<Compare, DecodeError> {
    let compare = match reader.u8("compare.tag")? {
        tag::COMPARE_VALUE => Compare::ValueEquals(
            reader
                .option_bytes("compare.value")?
                .map(Bytes::copy_from_slice),
        ),
        tag::COMPARE_VERSION => Compare::VersionEquals(reader.u64("compare.version")?),
        tag::COMPARE_MOD_REVISION => {
            Compare::ModRevisionEquals(reader.u64("compare.mod_revision")?)
        }
        tag => {
            let problem = DecodeProblem::UnknownTag { tag };
            return Err(reader.error_before("compare.tag", 1, problem));
        }
    };
    Ok(compare)
}

fn decode_txn(reader: &mut Reader<'_>) -> Result<Operation, DecodeError> {
    let count = reader.count("txn.compares", BYTES_SIZE_MIN + COMPARE_SIZE_MIN)?;
    let mut compares = Vec::with_capacity(count);
    for _ in 0..count {
        let key = bytes(reader, "txn.compare.key")?;
        compares.push((key, decode_compare(reader)?));
    }
    let success = decode_txn_branch(reader, "txn.success")?;
    let failure = decode_txn_branch(reader, "txn.failure")?;
    Ok(Operation::Txn {
        compares,
        success,
        failure,
    })
}

fn decode_txn_branch(
    reader: &mut Reader<'_>,
    field: &'static str,
) -> Result<Vec<TxnOp>, DecodeError> {
    let count = reader.count(field, TXN_OP_SIZE_MIN)?;
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op = match reader.u8("txn.op.tag")? {
            tag::TXN_PUT => TxnOp::Put {
                key: bytes(reader, "txn.put.key")?,
                value: bytes(reader, "txn.put.value")?,
            },
            tag::TXN_DELETE => TxnOp::Delete {
                key: bytes(reader, "txn.delete.key")?,
            },
            tag::TXN_GET => TxnOp::Get {
                key: bytes(reader, "txn.get.key")?,
            },
            tag => {
                let problem = DecodeProblem::UnknownTag { tag };
                return Err(reader.error_before("txn.op.tag", 1, problem));
            }
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_in_a_session_has_the_documented_layout() {
        // Checks the byte layout given in docs/kv.md for a session Put.
        let command = Command {
            session: Some(SessionRef {
                client: ClientId(3),
                sequence: 2,
                acknowledged: 1,
            }),
            op: Operation::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"vv"),
                condition: PutCondition::IfAbsent,
                return_previous: true,
            },
        };
        let mut expected = vec![1, 1];
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&2u64.to_le_bytes());
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(&[4, 1, 0, 0, 0, b'k', 2, 0, 0, 0, b'v', b'v', 1, 1]);
        assert_eq!(command.encode(), expected);
        let (decoded, op_offset) = decode_command(&expected).unwrap();
        assert_eq!(decoded, command);
        assert_eq!(op_offset, 26);
    }

    #[test]
    fn malformed_commands_say_what_was_wrong_and_where() {
        // Checks the error text for a wrong version, an unknown tag and a truncated key.
        let error = Command::decode(&[9]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot decode command.format_version at byte 0: format version 9 is not \
             supported (this build reads version 1)"
        );
        let error = Command::decode(&[1, 0, 99]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot decode operation.tag at byte 2: tag 99 is not one of the known values"
        );
        let error = Command::decode(&[1, 0, tag::GET, 5, 0, 0, 0, b'a']).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot decode get.key at byte 7: it needs 5 bytes but only 1 remain \
             (truncated input)"
        );
        assert!(Command::decode(&[]).is_err());
    }
}
