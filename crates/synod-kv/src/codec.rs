//! Little-endian primitives shared by the command, response and snapshot encodings.
//!
//! Every read checks the remaining length before it slices, so a decoder built on
//! [`Reader`] never panics and never allocates more than its input justifies: a count is
//! refused when its elements could not fit in the bytes that remain.

use thiserror::Error;

/// Bytes that cannot be decoded: which field, at which offset, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot decode {field} at byte {offset}: {problem}")]
pub struct DecodeError {
    /// The field being read, e.g. `put.value` or `command.tag`.
    pub field: &'static str,
    /// The offset of the first byte of the field.
    pub offset: usize,
    pub problem: DecodeProblem,
}

/// What was wrong with the bytes of a field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeProblem {
    #[error("it needs {needed} bytes but only {remaining} remain (truncated input)")]
    Truncated { needed: u64, remaining: u64 },
    #[error("tag {tag} is not one of the known values")]
    UnknownTag { tag: u8 },
    #[error("format version {version} is not supported (this build reads version {supported})")]
    UnsupportedVersion { version: u8, supported: u8 },
    #[error("a count of {count} elements cannot fit in the {remaining} bytes that remain")]
    CountTooLarge { count: u64, remaining: u64 },
    #[error("{count} bytes follow the end of the message")]
    TrailingBytes { count: u64 },
    #[error("the value is invalid: {reason}")]
    Invalid { reason: &'static str },
}

/// Where a [`Writer`] puts bytes: a buffer, or a hasher (the digest streams the snapshot
/// encoding through one without building it).
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for xxhash_rust::xxh3::Xxh3 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Appends little-endian fields to a sink.
#[derive(Debug, Default)]
pub struct Writer<S: Sink = Vec<u8>> {
    pub sink: S,
}

impl Writer<Vec<u8>> {
    pub fn new() -> Writer<Vec<u8>> {
        Writer { sink: Vec::new() }
    }
}

impl<S: Sink> Writer<S> {
    pub fn u8(&mut self, value: u8) {
        self.sink.put(&[value]);
    }

    pub fn bool(&mut self, value: bool) {
        self.sink.put(&[u8::from(value)]);
    }

    pub fn u32(&mut self, value: u32) {
        self.sink.put(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.sink.put(&value.to_le_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.sink.put(&value.to_le_bytes());
    }

    /// A count of elements, as `u32`. Counts come from bounded collections (validated
    /// configuration limits), so one beyond `u32::MAX` is a bug.
    pub fn count(&mut self, count: usize) {
        let count = u32::try_from(count).expect("an encoded count exceeds u32::MAX");
        self.u32(count);
    }

    /// A byte string: its length as `u32`, then its bytes.
    pub fn bytes(&mut self, value: &[u8]) {
        self.count(value.len());
        self.sink.put(value);
    }

    /// An optional byte string: tag 0 (absent) or 1 followed by the byte string.
    pub fn option_bytes(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.bytes(value);
            }
        }
    }

    /// An optional `u64`: tag 0 (absent) or 1 followed by the value.
    pub fn option_u64(&mut self, value: Option<u64>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.u64(value);
            }
        }
    }
}

/// Reads little-endian fields from a byte slice, checking every length first.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    /// The offset of the next byte to be read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub fn error(&self, field: &'static str, problem: DecodeProblem) -> DecodeError {
        DecodeError {
            field,
            offset: self.offset,
            problem,
        }
    }

    fn take(&mut self, field: &'static str, size: usize) -> Result<&'a [u8], DecodeError> {
        if size > self.remaining() {
            let problem = DecodeProblem::Truncated {
                needed: size as u64,
                remaining: self.remaining() as u64,
            };
            return Err(self.error(field, problem));
        }
        let slice = &self.bytes[self.offset..self.offset + size];
        self.offset += size;
        Ok(slice)
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.take(field, N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A boolean: exactly 0 or 1, so that every value has one encoding.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(self.error_before(field, 1, DecodeProblem::UnknownTag { tag })),
        }
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// A count of elements each at least `element_size_min` bytes long, refused when that
    /// many elements could not fit in what remains (so no allocation is sized by garbage).
    pub fn count(
        &mut self,
        field: &'static str,
        element_size_min: usize,
    ) -> Result<usize, DecodeError> {
        assert!(element_size_min > 0);
        let count = self.u32(field)? as usize;
        let remaining = self.remaining();
        if count > remaining / element_size_min {
            let problem = DecodeProblem::CountTooLarge {
                count: count as u64,
                remaining: remaining as u64,
            };
            return Err(self.error_before(field, 4, problem));
        }
        Ok(count)
    }

    /// A byte string written by [`Writer::bytes`].
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let size = self.u32(field)? as usize;
        if size > self.remaining() {
            let problem = DecodeProblem::Truncated {
                needed: size as u64,
                remaining: self.remaining() as u64,
            };
            return Err(self.error(field, problem));
        }
        self.take(field, size)
    }

    /// An optional byte string written by [`Writer::option_bytes`].
    pub fn option_bytes(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes(field)?)),
            tag => Err(self.error_before(field, 1, DecodeProblem::UnknownTag { tag })),
        }
    }

    /// An optional `u64` written by [`Writer::option_u64`].
    pub fn option_u64(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.u64(field)?)),
            tag => Err(self.error_before(field, 1, DecodeProblem::UnknownTag { tag })),
        }
    }

    /// An error about the field whose `size` bytes were just read.
    pub fn error_before(
        &self,
        field: &'static str,
        size: usize,
        problem: DecodeProblem,
    ) -> DecodeError {
        DecodeError {
            field,
            offset: self.offset - size,
            problem,
        }
    }

    /// Refuses bytes left after the end of the message.
    pub fn finish(&self, field: &'static str) -> Result<(), DecodeError> {
        if self.remaining() > 0 {
            let problem = DecodeProblem::TrailingBytes {
                count: self.remaining() as u64,
            };
            return Err(self.error(field, problem));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_errors_name_field_and_offset() {
        // Checks each primitive round-trips and that a short read names the field and offset.
        let mut writer = Writer::new();
        writer.u8(7);
        writer.bool(true);
        writer.u32(0x0102_0304);
        writer.u64(u64::MAX - 1);
        writer.i64(-5);
        writer.bytes(b"abc");
        writer.option_bytes(None);
        writer.option_u64(Some(9));
        let mut reader = Reader::new(&writer.sink);
        assert_eq!(reader.u8("a").unwrap(), 7);
        assert!(reader.bool("b").unwrap());
        assert_eq!(reader.u32("c").unwrap(), 0x0102_0304);
        assert_eq!(reader.u64("d").unwrap(), u64::MAX - 1);
        assert_eq!(reader.i64("e").unwrap(), -5);
        assert_eq!(reader.bytes("f").unwrap(), b"abc");
        assert_eq!(reader.option_bytes("g").unwrap(), None);
        assert_eq!(reader.option_u64("h").unwrap(), Some(9));
        reader.finish("end").unwrap();
        let error = reader.u64("put.value").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot decode put.value at byte 39: it needs 8 bytes but only 0 remain \
             (truncated input)"
        );
    }

    #[test]
    fn counts_that_cannot_fit_are_refused_before_any_allocation() {
        // Checks that a huge count in a short input is an error naming the count.
        let mut writer = Writer::new();
        writer.u32(1_000_000);
        writer.u64(0);
        let error = Reader::new(&writer.sink)
            .count("txn.success", 2)
            .unwrap_err();
        assert_eq!(error.offset, 0);
        assert_eq!(
            error.problem,
            DecodeProblem::CountTooLarge {
                count: 1_000_000,
                remaining: 8
            }
        );
    }

    #[test]
    fn booleans_and_option_tags_accept_only_their_one_encoding() {
        // Checks that a boolean of 2 and an option tag of 3 are refused, keeping encodings
        // canonical (the session dedup hashes the encoded bytes).
        assert_eq!(
            Reader::new(&[2]).bool("flag").unwrap_err().problem,
            DecodeProblem::UnknownTag { tag: 2 }
        );
        assert_eq!(
            Reader::new(&[3]).option_u64("rev").unwrap_err().problem,
            DecodeProblem::UnknownTag { tag: 3 }
        );
        assert_eq!(
            Reader::new(&[1, 2]).finish("end").unwrap_err().problem,
            DecodeProblem::TrailingBytes { count: 2 }
        );
    }
}
