//! The RESP codec: an incremental request parser, a reply encoder for RESP2 and RESP3, and an
//! incremental reply parser (for tests and the Rust client).
//!
//! Everything here is sans-IO and total: any input bytes give a value, `Ok(None)` (need more
//! bytes) or a [`RespError`] whose text matches what Redis says for the same fault, and never
//! a panic. Every length read from the wire is checked against [`RespLimits`] before anything
//! is allocated for it. After an error the stream is out of sync: the caller replies with the
//! error and closes the connection, as Redis does.

use std::fmt::Write as _;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Capacity reserved up front for an aggregate, whatever count the peer announced: a header
/// costs the peer a few bytes, so memory grows only with the elements that actually arrive.
const PREALLOCATION_COUNT_MAX: usize = 1024;

/// Limits on what a peer may send. Input that exceeds one is refused with a [`RespError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Most arguments in one command, and most elements in one reply aggregate.
    pub arguments_max: usize,
    /// Largest bulk string, in bytes (Redis's `proto-max-bulk-len`).
    pub bulk_size_max: usize,
    /// Largest inline command, and largest header or simple line, in bytes.
    pub inline_size_max: usize,
    /// Deepest nesting of aggregates in a reply (requests are flat).
    pub aggregate_depth_max: usize,
}

impl Default for RespLimits {
    fn default() -> RespLimits {
        RespLimits {
            arguments_max: 1024 * 1024,
            bulk_size_max: 512 * 1024 * 1024,
            inline_size_max: 64 * 1024,
            aggregate_depth_max: 128,
        }
    }
}

/// What was wrong with the bytes. Display texts for requests are Redis's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLengthInvalid,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    #[error("Protocol error: expected '$', got '{got}'")]
    BulkPrefixExpected { got: char },
    #[error("Protocol error: invalid bulk length")]
    BulkLengthInvalid,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    #[error("Protocol error: expected CRLF after bulk data")]
    BulkTerminatorMissing,
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: expected '\\n' after '\\r'")]
    LineFeedMissing,
    #[error("Protocol error: unknown reply type '{got}'")]
    ReplyTypeUnknown { got: char },
    #[error("Protocol error: reply line longer than {inline_size_max} bytes")]
    ReplyLineTooBig { inline_size_max: usize },
    #[error("Protocol error: invalid aggregate length")]
    AggregateLengthInvalid,
    #[error("Protocol error: reply nested deeper than {aggregate_depth_max} aggregates")]
    AggregateTooDeep { aggregate_depth_max: usize },
    #[error("Protocol error: invalid integer")]
    IntegerInvalid,
    #[error("Protocol error: invalid double")]
    DoubleInvalid,
    #[error("Protocol error: invalid boolean, expected 't' or 'f'")]
    BooleanInvalid,
    #[error("Protocol error: invalid verbatim string, expected a 3-byte format and ':'")]
    VerbatimInvalid,
    #[error("Protocol error: invalid null, expected '_\\r\\n'")]
    NullInvalid,
    #[error("Protocol error: streamed strings and aggregates ('?' lengths) are not supported")]
    StreamedUnsupported,
}

/// The protocol version a connection speaks: RESP2 until `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    Resp2,
    Resp3,
}

/// One reply. RESP3-only kinds are sent to RESP2 clients as their RESP2 equivalents.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`: `\r` and `\n` are sent as spaces, since they would end the line.
    Simple(String),
    /// `-text`, sanitised like [`Reply::Simple`].
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Bytes>),
    /// `None` is the null array.
    Array(Option<Vec<Reply>>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    Null,
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    Push(Vec<Reply>),
}

/// Takes whole commands, multibulk or inline, off the front of a connection's buffer.
///
/// The parser remembers how far it has checked a multibulk command that is still arriving,
/// so that a command with many arguments read in many pieces is scanned once. The caller
/// must therefore pass the same buffer to every call and only append to it in between.
#[derive(Debug)]
pub struct RequestParser {
    limits: RespLimits,
    pending: Option<Multibulk>,
}

/// A multibulk command whose header has been read and whose arguments are still arriving.
/// Offsets are into the caller's buffer, which is not consumed until the command is whole.
#[derive(Debug)]
struct Multibulk {
    arguments_count: usize,
    argument_ranges: Vec<ArgumentRange>,
    position: usize,
}

impl RequestParser {
    pub fn new(limits: RespLimits) -> RequestParser {
        RequestParser {
            limits,
            pending: None,
        }
    }

    /// Takes the next whole command off the front of `buffer`: `Ok(None)` when it has not
    /// all arrived (the bytes stay in `buffer`). Empty commands (`*0`, `*-1`, blank inline
    /// lines) are skipped, as Redis does.
    pub fn feed(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        let result = self.feed_inner(buffer);
        if result.is_err() {
            self.pending = None;
        }
        result
    }

    fn feed_inner(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        if self
            .pending
            .as_ref()
            .is_some_and(|pending| pending.position > buffer.len())
        {
            // The caller replaced the buffer: what was checked no longer describes it.
            self.pending = None;
        }
        // Each pass returns or consumes at least one byte, so the loop ends.
        loop {
            if self.pending.is_none() {
                let step = match buffer.first() {
                    None => return Ok(None),
                    Some(b'*') => self.read_multibulk_header(buffer)?,
                    Some(_) => read_inline(buffer, self.limits.inline_size_max)?,
                };
                match step {
                    Step::Incomplete => return Ok(None),
                    Step::Skipped => continue,
                    Step::Command(arguments) => return Ok(Some(arguments)),
                    Step::Multibulk(multibulk) => self.pending = Some(multibulk),
                }
            }
            return self.read_arguments(buffer);
        }
    }

    /// Reads `*N\r\n`. Counts of zero or less are empty commands and are consumed.
    fn read_multibulk_header(&self, buffer: &mut BytesMut) -> Result<Step, RespError> {
        let line_max = self.limits.inline_size_max;
        let Some((count, next)) = read_line(buffer, 1, line_max)? else {
            if buffer.len() > line_max {
                return Err(RespError::MultibulkCountTooBig);
            }
            return Ok(Step::Incomplete);
        };
        let count = parse_integer(count).ok_or(RespError::MultibulkLengthInvalid)?;
        if count <= 0 {
            buffer.advance(next);
            return Ok(Step::Skipped);
        }
        let arguments_count =
            usize::try_from(count).map_err(|_| RespError::MultibulkLengthInvalid)?;
        if arguments_count > self.limits.arguments_max {
            return Err(RespError::MultibulkLengthInvalid);
        }
        Ok(Step::Multibulk(Multibulk {
            arguments_count,
            argument_ranges: Vec::with_capacity(arguments_count.min(PREALLOCATION_COUNT_MAX)),
            position: next,
        }))
    }

    /// Reads the `$len\r\ndata\r\n` arguments of the pending command from where the last
    /// call stopped; when all have arrived, takes the command off the buffer.
    fn read_arguments(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        while pending.argument_ranges.len() < pending.arguments_count {
            let Some((range, next)) = read_bulk_argument(buffer, pending.position, &self.limits)?
            else {
                return Ok(None);
            };
            pending.argument_ranges.push(range);
            pending.position = next;
        }
        let command = buffer.split_to(pending.position).freeze();
        let arguments = pending
            .argument_ranges
            .iter()
            .map(|&(start, end)| command.slice(start..end))
            .collect();
        self.pending = None;
        Ok(Some(arguments))
    }
}

/// What one look at the front of the buffer found.
enum Step {
    Incomplete,
    Skipped,
    Command(Vec<Bytes>),
    Multibulk(Multibulk),
}

/// Where one argument's data lies in the buffer: start and end offsets.
type ArgumentRange = (usize, usize);

/// Reads one `$len\r\ndata\r\n` at `start`: the range of the data and the offset after it.
fn read_bulk_argument(
    buffer: &[u8],
    start: usize,
    limits: &RespLimits,
) -> Result<Option<(ArgumentRange, usize)>, RespError> {
    let Some(&prefix) = buffer.get(start) else {
        return Ok(None);
    };
    if prefix != b'$' {
        return Err(RespError::BulkPrefixExpected {
            got: char::from(prefix),
        });
    }
    let Some((length, data_start)) = read_line(buffer, start + 1, limits.inline_size_max)? else {
        if buffer.len() - start > limits.inline_size_max {
            return Err(RespError::BulkCountTooBig);
        }
        return Ok(None);
    };
    let length = parse_integer(length)
        .and_then(|length| usize::try_from(length).ok())
        .filter(|&length| length <= limits.bulk_size_max)
        .ok_or(RespError::BulkLengthInvalid)?;
    let data_end = data_start
        .checked_add(length)
        .ok_or(RespError::BulkLengthInvalid)?;
    let Some(terminator) = buffer.get(data_end..data_end.saturating_add(2)) else {
        return Ok(None);
    };
    if terminator != b"\r\n" {
        return Err(RespError::BulkTerminatorMissing);
    }
    Ok(Some(((data_start, data_end), data_end + 2)))
}

/// Reads an inline command: one line of arguments separated by spaces or tabs, ended by
/// `\n` or `\r\n`. Quoting (as in `redis-cli`'s `"a b"`) is not supported yet.
fn read_inline(buffer: &mut BytesMut, inline_size_max: usize) -> Result<Step, RespError> {
    let search_end = buffer.len().min(inline_size_max.saturating_add(1));
    let Some(newline) = buffer[..search_end].iter().position(|&byte| byte == b'\n') else {
        if buffer.len() > inline_size_max {
            return Err(RespError::InlineTooBig);
        }
        return Ok(Step::Incomplete);
    };
    let line = buffer.split_to(newline + 1).freeze();
    let content_end = if newline > 0 && line[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    let mut arguments = Vec::new();
    let mut start = 0;
    while start < content_end {
        let end = line[start..content_end]
            .iter()
            .position(|&byte| byte == b' ' || byte == b'\t')
            .map_or(content_end, |offset| start + offset);
        if end > start {
            arguments.push(line.slice(start..end));
        }
        start = end + 1;
    }
    if arguments.is_empty() {
        return Ok(Step::Skipped);
    }
    Ok(Step::Command(arguments))
}

/// Reads the line that starts at `start` up to `\r\n`: its content and the offset after the
/// `\n`. `Ok(None)` when the line has not ended within `line_max` bytes of `start` yet; the
/// caller decides whether that many bytes mean the line is too long.
fn read_line(
    buffer: &[u8],
    start: usize,
    line_max: usize,
) -> Result<Option<(&[u8], usize)>, RespError> {
    let Some(rest) = buffer.get(start..) else {
        return Ok(None);
    };
    let window = &rest[..rest.len().min(line_max.saturating_add(1))];
    let Some(carriage_return) = window.iter().position(|&byte| byte == b'\r') else {
        return Ok(None);
    };
    match rest.get(carriage_return + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            &rest[..carriage_return],
            start + carriage_return + 2,
        ))),
        Some(_) => Err(RespError::LineFeedMissing),
    }
}

/// Parses a decimal `i64` the way Redis's `string2ll` does: an optional `-`, no `+`, no
/// leading zeros, no spaces, no overflow.
fn parse_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    let (&first, _) = digits.split_first()?;
    if !first.is_ascii_digit() || (first == b'0' && (digits.len() > 1 || negative)) {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        value = value.checked_mul(10)?;
        // Accumulating negatively reaches i64::MIN, which has no positive counterpart.
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

/// Appends `reply` to `out` in `version`. RESP2 gets the RESP2 equivalent of RESP3-only kinds,
/// as Redis sends them: maps as flat arrays, sets and pushes as arrays, doubles and verbatim
/// strings as bulk strings, booleans as 1 or 0, null as the null bulk string.
pub fn encode(reply: &Reply, version: ProtocolVersion, out: &mut BytesMut) {
    let resp3 = version == ProtocolVersion::Resp3;
    // An explicit stack instead of recursion: replies may nest deeply.
    let mut stack: Vec<&Reply> = vec![reply];
    while let Some(reply) = stack.pop() {
        match reply {
            Reply::Simple(text) => put_simple_line(out, b'+', text),
            Reply::Error(text) => put_simple_line(out, b'-', text),
            Reply::Integer(value) => put_header(out, b':', *value),
            Reply::Bulk(Some(data)) => put_bulk(out, b'$', &[], data),
            Reply::Bulk(None) | Reply::Null if resp3 => out.put_slice(b"_\r\n"),
            Reply::Bulk(None) | Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::Array(None) if resp3 => out.put_slice(b"_\r\n"),
            Reply::Array(None) => out.put_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => put_aggregate(out, &mut stack, b'*', items),
            Reply::Set(items) => {
                put_aggregate(out, &mut stack, if resp3 { b'~' } else { b'*' }, items)
            }
            Reply::Push(items) => {
                put_aggregate(out, &mut stack, if resp3 { b'>' } else { b'*' }, items)
            }
            Reply::Map(pairs) => {
                if resp3 {
                    put_header(out, b'%', length_as_i64(pairs.len()));
                } else {
                    put_header(out, b'*', length_as_i64(pairs.len()).saturating_mul(2));
                }
                for (key, value) in pairs.iter().rev() {
                    stack.push(value);
                    stack.push(key);
                }
            }
            Reply::Double(value) => {
                let text = format_double(*value);
                if resp3 {
                    put_simple_line(out, b',', &text);
                } else {
                    put_bulk(out, b'$', &[], text.as_bytes());
                }
            }
            Reply::Boolean(value) if resp3 => {
                out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" })
            }
            Reply::Boolean(value) => put_header(out, b':', i64::from(*value)),
            Reply::Verbatim { format, text } if resp3 => {
                put_bulk(out, b'=', &[format[0], format[1], format[2], b':'], text)
            }
            Reply::Verbatim { text, .. } => put_bulk(out, b'$', &[], text),
        }
    }
}

fn put_aggregate<'a>(
    out: &mut BytesMut,
    stack: &mut Vec<&'a Reply>,
    prefix: u8,
    items: &'a [Reply],
) {
    put_header(out, prefix, length_as_i64(items.len()));
    stack.extend(items.iter().rev());
}

fn length_as_i64(length: usize) -> i64 {
    i64::try_from(length).unwrap_or(i64::MAX)
}

fn put_header(out: &mut BytesMut, prefix: u8, value: i64) {
    out.put_u8(prefix);
    write!(out, "{value}\r\n").expect("writing to a BytesMut cannot fail");
}

fn put_bulk(out: &mut BytesMut, prefix: u8, head: &[u8], data: &[u8]) {
    put_header(out, prefix, length_as_i64(head.len() + data.len()));
    out.put_slice(head);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes a one-line reply. A `\r` or `\n` in `text` would end the line early and desync the
/// client, so each is sent as a space, as Redis does for error texts.
fn put_simple_line(out: &mut BytesMut, prefix: u8, text: &str) {
    out.put_u8(prefix);
    out.extend(text.bytes().map(|byte| {
        if byte == b'\r' || byte == b'\n' {
            b' '
        } else {
            byte
        }
    }));
    out.put_slice(b"\r\n");
}

/// Formats a double so that parsing it gives the same value back: `inf`, `-inf`, `nan`, or
/// Rust's shortest round-trip digits, in exponent form when the plain form would be long.
fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let plain = format!("{value}");
    if plain.len() <= 24 {
        plain
    } else {
        format!("{value:e}")
    }
}

/// Decodes replies, RESP2 or RESP3, from the front of a buffer. It rescans a reply that has
/// not all arrived on each call (replies are scanned, not copied, until whole), which suits
/// tests and a client; bulk data is copied out of the buffer.
#[derive(Debug)]
pub struct ReplyParser {
    limits: RespLimits,
}

/// An aggregate whose elements are still being read.
struct Frame {
    kind: AggregateKind,
    elements_remaining: usize,
    elements: Vec<Reply>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AggregateKind {
    Array,
    Map,
    Set,
    Push,
    /// RESP3 attributes (`|`) describe the reply that follows; they are read and dropped.
    Attribute,
}

/// One element read off the wire: a whole value, or the header of an aggregate.
enum Token {
    Value(Reply),
    Aggregate(AggregateKind, usize),
}

impl ReplyParser {
    pub fn new(limits: RespLimits) -> ReplyParser {
        ReplyParser { limits }
    }

    /// Takes the next whole reply off the front of `buffer`: `Ok(None)` when it has not all
    /// arrived (the bytes stay in `buffer`).
    pub fn feed(&mut self, buffer: &mut BytesMut) -> Result<Option<Reply>, RespError> {
        let Some((reply, consumed)) = self.parse(buffer)? else {
            return Ok(None);
        };
        buffer.advance(consumed);
        Ok(Some(reply))
    }

    /// Parses one reply from the start of `buffer` without recursion: open aggregates wait
    /// on a stack bounded by `aggregate_depth_max`.
    fn parse(&self, buffer: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut position = 0;
        // Each pass consumes at least one byte of `buffer`, so the loop ends.
        loop {
            let Some((token, next)) = self.read_token(buffer, position)? else {
                return Ok(None);
            };
            position = next;
            let mut value = match token {
                Token::Value(reply) => Some(reply),
                Token::Aggregate(kind, 0) => finish_aggregate(kind, Vec::new()),
                Token::Aggregate(kind, count) => {
                    if stack.len() >= self.limits.aggregate_depth_max {
                        return Err(RespError::AggregateTooDeep {
                            aggregate_depth_max: self.limits.aggregate_depth_max,
                        });
                    }
                    stack.push(Frame {
                        kind,
                        elements_remaining: count,
                        elements: Vec::with_capacity(count.min(PREALLOCATION_COUNT_MAX)),
                    });
                    None
                }
            };
            // Hands each finished value to the aggregate it belongs to, closing every
            // aggregate that it completes.
            while let Some(reply) = value.take() {
                let Some(frame) = stack.last_mut() else {
                    return Ok(Some((reply, position)));
                };
                frame.elements.push(reply);
                frame.elements_remaining -= 1;
                if frame.elements_remaining == 0 {
                    let frame = stack.pop().expect("the frame was just read");
                    value = finish_aggregate(frame.kind, frame.elements);
                }
            }
        }
    }

    /// Reads one element at `position`: its token and the offset after it.
    fn read_token(
        &self,
        buffer: &[u8],
        position: usize,
    ) -> Result<Option<(Token, usize)>, RespError> {
        let Some(&prefix) = buffer.get(position) else {
            return Ok(None);
        };
        let line_max = self.limits.inline_size_max;
        let Some((line, next)) = read_line(buffer, position + 1, line_max)? else {
            if buffer.len() - position > line_max.saturating_add(1) {
                return Err(RespError::ReplyLineTooBig {
                    inline_size_max: line_max,
                });
            }
            return Ok(None);
        };
        let text = || String::from_utf8_lossy(line).into_owned();
        let token = match prefix {
            b'+' => Token::Value(Reply::Simple(text())),
            b'-' => Token::Value(Reply::Error(text())),
            b':' => Token::Value(Reply::Integer(
                parse_integer(line).ok_or(RespError::IntegerInvalid)?,
            )),
            b',' => Token::Value(Reply::Double(parse_double(line)?)),
            b'#' => Token::Value(Reply::Boolean(match line {
                b"t" => true,
                b"f" => false,
                _ => return Err(RespError::BooleanInvalid),
            })),
            b'_' if line.is_empty() => Token::Value(Reply::Null),
            b'_' => return Err(RespError::NullInvalid),
            // Big numbers have no variant of their own yet: their digits come as a bulk.
            b'(' => Token::Value(Reply::Bulk(Some(Bytes::copy_from_slice(line)))),
            b'$' | b'!' | b'=' => return self.read_blob(buffer, prefix, line, next),
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let Some(token) = self.aggregate_token(prefix, line)? else {
                    return Ok(Some((Token::Value(Reply::Array(None)), next)));
                };
                token
            }
            _ => {
                return Err(RespError::ReplyTypeUnknown {
                    got: char::from(prefix),
                });
            }
        };
        Ok(Some((token, next)))
    }

    /// The token of an aggregate header whose count is `line`; `None` for the null array.
    fn aggregate_token(&self, prefix: u8, line: &[u8]) -> Result<Option<Token>, RespError> {
        if line == b"?" {
            return Err(RespError::StreamedUnsupported);
        }
        let count = parse_integer(line).ok_or(RespError::AggregateLengthInvalid)?;
        if count == -1 && prefix == b'*' {
            return Ok(None);
        }
        let count = usize::try_from(count)
            .ok()
            .filter(|&count| count <= self.limits.arguments_max)
            .ok_or(RespError::AggregateLengthInvalid)?;
        let (kind, elements_per_entry) = match prefix {
            b'*' => (AggregateKind::Array, 1),
            b'%' => (AggregateKind::Map, 2),
            b'~' => (AggregateKind::Set, 1),
            b'>' => (AggregateKind::Push, 1),
            _ => (AggregateKind::Attribute, 2),
        };
        let elements_count = count
            .checked_mul(elements_per_entry)
            .ok_or(RespError::AggregateLengthInvalid)?;
        Ok(Some(Token::Aggregate(kind, elements_count)))
    }

    /// Reads the data of a bulk string (`$`), blob error (`!`) or verbatim string (`=`)
    /// whose length is `line` and whose data starts at `data_start`.
    fn read_blob(
        &self,
        buffer: &[u8],
        prefix: u8,
        line: &[u8],
        data_start: usize,
    ) -> Result<Option<(Token, usize)>, RespError> {
        if line == b"?" {
            return Err(RespError::StreamedUnsupported);
        }
        let length = parse_integer(line).ok_or(RespError::BulkLengthInvalid)?;
        if length == -1 && prefix == b'$' {
            return Ok(Some((Token::Value(Reply::Bulk(None)), data_start)));
        }
        let length = usize::try_from(length)
            .ok()
            .filter(|&length| length <= self.limits.bulk_size_max)
            .ok_or(RespError::BulkLengthInvalid)?;
        let data_end = data_start
            .checked_add(length)
            .ok_or(RespError::BulkLengthInvalid)?;
        let Some(terminator) = buffer.get(data_end..data_end.saturating_add(2)) else {
            return Ok(None);
        };
        if terminator != b"\r\n" {
            return Err(RespError::BulkTerminatorMissing);
        }
        let data = &buffer[data_start..data_end];
        let reply = match prefix {
            b'$' => Reply::Bulk(Some(Bytes::copy_from_slice(data))),
            b'!' => Reply::Error(String::from_utf8_lossy(data).into_owned()),
            _ => match data {
                [a, b, c, b':', text @ ..] => Reply::Verbatim {
                    format: [*a, *b, *c],
                    text: Bytes::copy_from_slice(text),
                },
                _ => return Err(RespError::VerbatimInvalid),
            },
        };
        Ok(Some((Token::Value(reply), data_end + 2)))
    }
}

/// The reply an aggregate's elements make; `None` for an attribute, which is dropped.
fn finish_aggregate(kind: AggregateKind, elements: Vec<Reply>) -> Option<Reply> {
    match kind {
        AggregateKind::Array => Some(Reply::Array(Some(elements))),
        AggregateKind::Set => Some(Reply::Set(elements)),
        AggregateKind::Push => Some(Reply::Push(elements)),
        AggregateKind::Map => {
            assert!(
                elements.len().is_multiple_of(2),
                "a map frame holds whole pairs"
            );
            let mut pairs = Vec::with_capacity(elements.len() / 2);
            let mut elements = elements.into_iter();
            while let (Some(key), Some(value)) = (elements.next(), elements.next()) {
                pairs.push((key, value));
            }
            Some(Reply::Map(pairs))
        }
        AggregateKind::Attribute => None,
    }
}

fn parse_double(line: &[u8]) -> Result<f64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .filter(|text| !text.is_empty())
        .and_then(|text| text.parse::<f64>().ok())
        .ok_or(RespError::DoubleInvalid)
}
