//! Responses: what applying a command returns, the errors a command can meet, and their
//! byte encoding (explicit little-endian, canonical, like commands').

use bytes::Bytes;
use synod_core::ClientId;
use thiserror::Error;

use crate::codec::{DecodeError, DecodeProblem, Reader, Sink, Writer};
use crate::value::VersionedValue;

/// The format version written as the first byte of an encoded response.
pub const RESPONSE_FORMAT_VERSION: u8 = 1;

/// The reply to one applied command. Every write reply carries `revision`: the store's
/// revision after the command (the command's own revision when it changed a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A session was opened with this id.
    Registered {
        client: ClientId,
    },
    /// KeepAlive, CloseSession or Compact succeeded.
    Done {
        revision: u64,
    },
    /// `written` is false when the put's condition did not hold. `previous` is the value
    /// before the command, when it asked for it and the key was present.
    Put {
        revision: u64,
        written: bool,
        previous: Option<VersionedValue>,
    },
    /// How many of the keys existed (and were deleted).
    Deleted {
        revision: u64,
        count: u64,
    },
    /// Whether the compare held; `current` is the key's value after the command.
    Cas {
        revision: u64,
        succeeded: bool,
        current: Option<VersionedValue>,
    },
    /// The value after an Incr.
    Integer {
        revision: u64,
        value: i64,
    },
    /// The value's length after an Append.
    Length {
        revision: u64,
        length: u64,
    },
    /// Whether the compares held (so `success` ran), and one result per op of that branch.
    Txn {
        revision: u64,
        succeeded: bool,
        results: Vec<TxnResult>,
    },
    /// A Get's value.
    Value {
        revision: u64,
        value: Option<VersionedValue>,
    },
    /// A Range's entries in key order; `more` when keys beyond the last one matched.
    Range {
        revision: u64,
        entries: Vec<RangeEntry>,
        more: bool,
    },
    Error(CommandError),
}

/// The result of one transaction op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    Put,
    Deleted { count: u64 },
    Value(Option<VersionedValue>),
}

/// One key of a range reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeEntry {
    pub key: Bytes,
    pub value: VersionedValue,
}

/// Why a command was refused or failed. Every replica computes the same error for the same
/// entry, so these travel in [`Response::Error`] like any other reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("malformed command: {reason}")]
    Malformed { reason: String },
    #[error("session {client} is unknown or has expired: register a new session")]
    SessionExpired { client: ClientId },
    #[error("this operation needs a session: send it with a SessionRef")]
    SessionRequired,
    #[error("RegisterSession takes no session: send it without a SessionRef")]
    SessionNotAllowed,
    #[error(
        "sequence {sequence} of session {client} is already acknowledged (up to \
         {acknowledged}) and its reply is gone: use a new sequence"
    )]
    SequenceAcknowledged {
        client: ClientId,
        sequence: u64,
        acknowledged: u64,
    },
    #[error(
        "sequence {sequence} of session {client} was already used for a different command: \
         use a new sequence"
    )]
    SequenceReused { client: ClientId, sequence: u64 },
    #[error("acknowledged ({acknowledged}) must be below sequence ({sequence})")]
    AcknowledgedNotBelowSequence { sequence: u64, acknowledged: u64 },
    #[error(
        "session {client} holds {limit} unacknowledged replies (session_replies_max): \
         acknowledge replies before sending more"
    )]
    SessionRepliesFull { client: ClientId, limit: u64 },
    #[error("key is {size} bytes, more than key_size_max ({max})")]
    KeyTooLarge { size: u64, max: u64 },
    #[error("value is {size} bytes, more than value_size_max ({max})")]
    ValueTooLarge { size: u64, max: u64 },
    #[error("{count} keys, compares or transaction ops exceed txn_ops_max ({max})")]
    TooManyOperations { count: u64, max: u64 },
    #[error("a transaction branch writes key {key:?} twice: write each key at most once")]
    TxnDuplicateKey { key: Bytes },
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    #[error("increment or decrement would overflow")]
    IncrementOverflow,
    #[error(
        "revision {revision} has been compacted (compacted up to {compacted}): read at \
         {compacted} or later"
    )]
    Compacted { revision: u64, compacted: u64 },
    #[error("revision {revision} is in the future (the current revision is {current})")]
    FutureRevision { revision: u64, current: u64 },
    #[error("range limit {limit} exceeds range_limit_max ({max})")]
    RangeLimitTooLarge { limit: u64, max: u64 },
}

/// Why a direct read (not through the log) cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error(
        "revision {revision} has been compacted (compacted up to {compacted}): read at \
         {compacted} or later"
    )]
    Compacted { revision: u64, compacted: u64 },
    #[error("revision {revision} is in the future (the current revision is {current})")]
    FutureRevision { revision: u64, current: u64 },
    #[error("range limit {limit} exceeds range_limit_max ({max})")]
    RangeLimitTooLarge { limit: u64, max: u64 },
}

impl From<ReadError> for CommandError {
    fn from(error: ReadError) -> CommandError {
        match error {
            ReadError::Compacted {
                revision,
                compacted,
            } => CommandError::Compacted {
                revision,
                compacted,
            },
            ReadError::FutureRevision { revision, current } => {
                CommandError::FutureRevision { revision, current }
            }
            ReadError::RangeLimitTooLarge { limit, max } => {
                CommandError::RangeLimitTooLarge { limit, max }
            }
        }
    }
}

impl From<CommandError> for Response {
    fn from(error: CommandError) -> Response {
        Response::Error(error)
    }
}

mod tag {
    pub const REGISTERED: u8 = 1;
    pub const DONE: u8 = 2;
    pub const PUT: u8 = 3;
    pub const DELETED: u8 = 4;
    pub const CAS: u8 = 5;
    pub const INTEGER: u8 = 6;
    pub const LENGTH: u8 = 7;
    pub const TXN: u8 = 8;
    pub const VALUE: u8 = 9;
    pub const RANGE: u8 = 10;
    pub const ERROR: u8 = 11;

    pub const TXN_PUT: u8 = 1;
    pub const TXN_DELETED: u8 = 2;
    pub const TXN_VALUE: u8 = 3;
}

/// The fewest bytes an encoded versioned value takes (value length and three u64s).
const VERSIONED_VALUE_SIZE_MIN: usize = 4 + 3 * 8;

impl Response {
    /// The response's canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        self.encode_into(&mut writer);
        writer.sink
    }

    pub(crate) fn encode_into<S: Sink>(&self, writer: &mut Writer<S>) {
        writer.u8(RESPONSE_FORMAT_VERSION);
        match self {
            Response::Registered { client } => {
                writer.u8(tag::REGISTERED);
                writer.u64(client.get());
            }
            Response::Done { revision } => {
                writer.u8(tag::DONE);
                writer.u64(*revision);
            }
            Response::Put {
                revision,
                written,
                previous,
            } => {
                writer.u8(tag::PUT);
                writer.u64(*revision);
                writer.bool(*written);
                encode_option_value(writer, previous.as_ref());
            }
            Response::Deleted { revision, count } => {
                writer.u8(tag::DELETED);
                writer.u64(*revision);
                writer.u64(*count);
            }
            Response::Cas {
                revision,
                succeeded,
                current,
            } => {
                writer.u8(tag::CAS);
                writer.u64(*revision);
                writer.bool(*succeeded);
                encode_option_value(writer, current.as_ref());
            }
            Response::Integer { revision, value } => {
                writer.u8(tag::INTEGER);
                writer.u64(*revision);
                writer.i64(*value);
            }
            Response::Length { revision, length } => {
                writer.u8(tag::LENGTH);
                writer.u64(*revision);
                writer.u64(*length);
            }
            Response::Txn {
                revision,
                succeeded,
                results,
            } => encode_txn(writer, *revision, *succeeded, results),
            Response::Value { revision, value } => {
                writer.u8(tag::VALUE);
                writer.u64(*revision);
                encode_option_value(writer, value.as_ref());
            }
            Response::Range {
                revision,
                entries,
                more,
            } => {
                writer.u8(tag::RANGE);
                writer.u64(*revision);
                writer.count(entries.len());
                for entry in entries {
                    writer.bytes(&entry.key);
                    encode_value(writer, &entry.value);
                }
                writer.bool(*more);
            }
            Response::Error(error) => {
                writer.u8(tag::ERROR);
                encode_error(writer, error);
            }
        }
    }

    /// Decodes an encoded response; malformed input is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Response, DecodeError> {
        let mut reader = Reader::new(bytes);
        let response = decode_response(&mut reader)?;
        reader.finish("response")?;
        Ok(response)
    }
}

fn encode_txn<S: Sink>(
    writer: &mut Writer<S>,
    revision: u64,
    succeeded: bool,
    results: &[TxnResult],
) {
    writer.u8(tag::TXN);
    writer.u64(revision);
    writer.bool(succeeded);
    writer.count(results.len());
    for result in results {
        match result {
            TxnResult::Put => writer.u8(tag::TXN_PUT),
            TxnResult::Deleted { count } => {
                writer.u8(tag::TXN_DELETED);
                writer.u64(*count);
            }
            TxnResult::Value(value) => {
                writer.u8(tag::TXN_VALUE);
                encode_option_value(writer, value.as_ref());
            }
        }
    }
}

fn encode_value<S: Sink>(writer: &mut Writer<S>, value: &VersionedValue) {
    writer.bytes(&value.value);
    writer.u64(value.create_revision);
    writer.u64(value.mod_revision);
    writer.u64(value.version);
}

fn encode_option_value<S: Sink>(writer: &mut Writer<S>, value: Option<&VersionedValue>) {
    match value {
        None => writer.u8(0),
        Some(value) => {
            writer.u8(1);
            encode_value(writer, value);
        }
    }
}

/// Error codes on the wire; never reuse one.
mod code {
    pub const MALFORMED: u8 = 1;
    pub const SESSION_EXPIRED: u8 = 2;
    pub const SESSION_REQUIRED: u8 = 3;
    pub const SESSION_NOT_ALLOWED: u8 = 4;
    pub const SEQUENCE_ACKNOWLEDGED: u8 = 5;
    pub const SEQUENCE_REUSED: u8 = 6;
    pub const ACKNOWLEDGED_NOT_BELOW_SEQUENCE: u8 = 7;
    pub const SESSION_REPLIES_FULL: u8 = 8;
    pub const KEY_TOO_LARGE: u8 = 9;
    pub const VALUE_TOO_LARGE: u8 = 10;
    pub const TOO_MANY_OPERATIONS: u8 = 11;
    pub const TXN_DUPLICATE_KEY: u8 = 12;
    pub const NOT_AN_INTEGER: u8 = 13;
    pub const INCREMENT_OVERFLOW: u8 = 14;
    pub const COMPACTED: u8 = 15;
    pub const FUTURE_REVISION: u8 = 16;
    pub const RANGE_LIMIT_TOO_LARGE: u8 = 17;
}

fn encode_error<S: Sink>(writer: &mut Writer<S>, error: &CommandError) {
    let pair = |writer: &mut Writer<S>, code: u8, first: u64, second: u64| {
        writer.u8(code);
        writer.u64(first);
        writer.u64(second);
    };
    match error {
        CommandError::Malformed { reason } => {
            writer.u8(code::MALFORMED);
            writer.bytes(reason.as_bytes());
        }
        CommandError::SessionExpired { client } => {
            writer.u8(code::SESSION_EXPIRED);
            writer.u64(client.get());
        }
        CommandError::SessionRequired => writer.u8(code::SESSION_REQUIRED),
        CommandError::SessionNotAllowed => writer.u8(code::SESSION_NOT_ALLOWED),
        CommandError::SequenceAcknowledged {
            client,
            sequence,
            acknowledged,
        } => {
            pair(writer, code::SEQUENCE_ACKNOWLEDGED, client.get(), *sequence);
            writer.u64(*acknowledged);
        }
        CommandError::SequenceReused { client, sequence } => {
            pair(writer, code::SEQUENCE_REUSED, client.get(), *sequence);
        }
        CommandError::AcknowledgedNotBelowSequence {
            sequence,
            acknowledged,
        } => pair(
            writer,
            code::ACKNOWLEDGED_NOT_BELOW_SEQUENCE,
            *sequence,
            *acknowledged,
        ),
        CommandError::SessionRepliesFull { client, limit } => {
            pair(writer, code::SESSION_REPLIES_FULL, client.get(), *limit);
        }
        CommandError::KeyTooLarge { size, max } => pair(writer, code::KEY_TOO_LARGE, *size, *max),
        CommandError::ValueTooLarge { size, max } => {
            pair(writer, code::VALUE_TOO_LARGE, *size, *max);
        }
        CommandError::TooManyOperations { count, max } => {
            pair(writer, code::TOO_MANY_OPERATIONS, *count, *max);
        }
        CommandError::TxnDuplicateKey { key } => {
            writer.u8(code::TXN_DUPLICATE_KEY);
            writer.bytes(key);
        }
        CommandError::NotAnInteger => writer.u8(code::NOT_AN_INTEGER),
        CommandError::IncrementOverflow => writer.u8(code::INCREMENT_OVERFLOW),
        CommandError::Compacted {
            revision,
            compacted,
        } => pair(writer, code::COMPACTED, *revision, *compacted),
        CommandError::FutureRevision { revision, current } => {
            pair(writer, code::FUTURE_REVISION, *revision, *current);
        }
        CommandError::RangeLimitTooLarge { limit, max } => {
            pair(writer, code::RANGE_LIMIT_TOO_LARGE, *limit, *max);
        }
    }
}

pub(crate) fn decode_response(reader: &mut Reader<'_>) -> Result<Response, DecodeError> {
    let version = reader.u8("response.format_version")?;
    if version != RESPONSE_FORMAT_VERSION {
        let problem = DecodeProblem::UnsupportedVersion {
            version,
            supported: RESPONSE_FORMAT_VERSION,
        };
        return Err(reader.error_before("response.format_version", 1, problem));
    }
    let response = match reader.u8("response.tag")? {
        tag::REGISTERED => Response::Registered {
            client: ClientId(reader.u64("registered.client")?),
        },
        tag::DONE => Response::Done {
            revision: reader.u64("done.revision")?,
        },
        tag::PUT => Response::Put {
            revision: reader.u64("put.revision")?,
            written: reader.bool("put.written")?,
            previous: decode_option_value(reader, "put.previous")?,
        },
        tag::DELETED => Response::Deleted {
            revision: reader.u64("deleted.revision")?,
            count: reader.u64("deleted.count")?,
        },
        tag::CAS => Response::Cas {
            revision: reader.u64("cas.revision")?,
            succeeded: reader.bool("cas.succeeded")?,
            current: decode_option_value(reader, "cas.current")?,
        },
        tag::INTEGER => Response::Integer {
            revision: reader.u64("integer.revision")?,
            value: reader.i64("integer.value")?,
        },
        tag::LENGTH => Response::Length {
            revision: reader.u64("length.revision")?,
            length: reader.u64("length.length")?,
        },
        tag::TXN => decode_txn(reader)?,
        tag::VALUE => Response::Value {
            revision: reader.u64("value.revision")?,
            value: decode_option_value(reader, "value.value")?,
        },
        tag::RANGE => decode_range(reader)?,
        tag::ERROR => Response::Error(decode_error(reader)?),
        tag => {
            let problem = DecodeProblem::UnknownTag { tag };
            return Err(reader.error_before("response.tag", 1, problem));
        }
    };
    Ok(response)
}

fn decode_txn(reader: &mut Reader<'_>) -> Result<Response, DecodeError> {
    let revision = reader.u64("txn.revision")?;
    let succeeded = reader.bool("txn.succeeded")?;
    let count = reader.count("txn.results", 1)?;
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        let result = match reader.u8("txn.result.tag")? {
            tag::TXN_PUT => TxnResult::Put,
            tag::TXN_DELETED => TxnResult::Deleted {
                count: reader.u64("txn.deleted.count")?,
            },
            tag::TXN_VALUE => TxnResult::Value(decode_option_value(reader, "txn.value")?),
            tag => {
                let problem = DecodeProblem::UnknownTag { tag };
                return Err(reader.error_before("txn.result.tag", 1, problem));
            }
        };
        results.push(result);
    }
    Ok(Response::Txn {
        revision,
        succeeded,
        results,
    })
}

fn decode_range(reader: &mut Reader<'_>) -> Result<Response, DecodeError> {
    let revision = reader.u64("range.revision")?;
    let count = reader.count("range.entries", 4 + VERSIONED_VALUE_SIZE_MIN)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key = Bytes::copy_from_slice(reader.bytes("range.key")?);
        let value = decode_value(reader, "range.value")?;
        entries.push(RangeEntry { key, value });
    }
    Ok(Response::Range {
        revision,
        entries,
        more: reader.bool("range.more")?,
    })
}

fn decode_value(
    reader: &mut Reader<'_>,
    field: &'static str,
) -> Result<VersionedValue, DecodeError> {
    Ok(VersionedValue {
        value: Bytes::copy_from_slice(reader.bytes(field)?),
        create_revision: reader.u64(field)?,
        mod_revision: reader.u64(field)?,
        version: reader.u64(field)?,
    })
}

fn decode_option_value(
    reader: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<VersionedValue>, DecodeError> {
    match reader.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(decode_value(reader, field)?)),
        tag => Err(reader.error_before(field, 1, DecodeProblem::UnknownTag { tag })),
    }
}

fn decode_error(reader: &mut Reader<'_>) -> Result<CommandError, DecodeError> {
    let field = "error";
    let error = match reader.u8("error.code")? {
        code::MALFORMED => {
            let reason = reader.bytes("error.reason")?;
            let reason = String::from_utf8(reason.to_vec()).map_err(|_| {
                let problem = DecodeProblem::Invalid {
                    reason: "the text is not UTF-8",
                };
                reader.error_before("error.reason", reason.len(), problem)
            })?;
            CommandError::Malformed { reason }
        }
        code::SESSION_EXPIRED => CommandError::SessionExpired {
            client: ClientId(reader.u64(field)?),
        },
        code::SESSION_REQUIRED => CommandError::SessionRequired,
        code::SESSION_NOT_ALLOWED => CommandError::SessionNotAllowed,
        code::SEQUENCE_ACKNOWLEDGED => CommandError::SequenceAcknowledged {
            client: ClientId(reader.u64(field)?),
            sequence: reader.u64(field)?,
            acknowledged: reader.u64(field)?,
        },
        code::SEQUENCE_REUSED => CommandError::SequenceReused {
            client: ClientId(reader.u64(field)?),
            sequence: reader.u64(field)?,
        },
        code::ACKNOWLEDGED_NOT_BELOW_SEQUENCE => CommandError::AcknowledgedNotBelowSequence {
            sequence: reader.u64(field)?,
            acknowledged: reader.u64(field)?,
        },
        code::SESSION_REPLIES_FULL => CommandError::SessionRepliesFull {
            client: ClientId(reader.u64(field)?),
            limit: reader.u64(field)?,
        },
        code => decode_error_tail(reader, code)?,
    };
    Ok(error)
}

fn decode_error_tail(reader: &mut Reader<'_>, code: u8) -> Result<CommandError, DecodeError> {
    let field = "error";
    let error = match code {
        code::KEY_TOO_LARGE => CommandError::KeyTooLarge {
            size: reader.u64(field)?,
            max: reader.u64(field)?,
        },
        code::VALUE_TOO_LARGE => CommandError::ValueTooLarge {
            size: reader.u64(field)?,
            max: reader.u64(field)?,
        },
        code::TOO_MANY_OPERATIONS => CommandError::TooManyOperations {
            count: reader.u64(field)?,
            max: reader.u64(field)?,
        },
        code::TXN_DUPLICATE_KEY => CommandError::TxnDuplicateKey {
            key: Bytes::copy_from_slice(reader.bytes("error.key")?),
        },
        code::NOT_AN_INTEGER => CommandError::NotAnInteger,
        code::INCREMENT_OVERFLOW => CommandError::IncrementOverflow,
        code::COMPACTED => CommandError::Compacted {
            revision: reader.u64(field)?,
            compacted: reader.u64(field)?,
        },
        code::FUTURE_REVISION => CommandError::FutureRevision {
            revision: reader.u64(field)?,
            current: reader.u64(field)?,
        },
        code::RANGE_LIMIT_TOO_LARGE => CommandError::RangeLimitTooLarge {
            limit: reader.u64(field)?,
            max: reader.u64(field)?,
        },
        tag => {
            let problem = DecodeProblem::UnknownTag { tag };
            return Err(reader.error_before("error.code", 1, problem));
        }
    };
    Ok(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_reply_has_the_documented_layout() {
        // Checks the byte layout given in docs/kv.md for a Put reply with a previous value.
        let response = Response::Put {
            revision: 7,
            written: true,
            previous: Some(VersionedValue {
                value: Bytes::from_static(b"v"),
                create_revision: 2,
                mod_revision: 5,
                version: 3,
            }),
        };
        let mut expected = vec![1, 3];
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&[1, 1, 1, 0, 0, 0, b'v']);
        for number in [2u64, 5, 3] {
            expected.extend_from_slice(&number.to_le_bytes());
        }
        assert_eq!(response.encode(), expected);
        assert_eq!(Response::decode(&expected).unwrap(), response);
    }

    #[test]
    fn error_messages_say_what_happened_and_what_to_do() {
        // Checks the text clients see for the session errors.
        let expired = CommandError::SessionExpired {
            client: ClientId(12),
        };
        assert_eq!(
            expired.to_string(),
            "session c12 is unknown or has expired: register a new session"
        );
        let acknowledged = CommandError::SequenceAcknowledged {
            client: ClientId(12),
            sequence: 3,
            acknowledged: 5,
        };
        assert_eq!(
            acknowledged.to_string(),
            "sequence 3 of session c12 is already acknowledged (up to 5) and its reply is gone: \
             use a new sequence"
        );
    }
}
