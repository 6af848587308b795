//! The byte format of node-to-node TCP connections (docs/wire.md is the full description).
//!
//! A connection carries, in one direction only, a hello followed by data frames:
//!
//! ```text
//! hello: u32 LE length (= 21) | "SYND" | u8 version (1) | u64 LE from-node | u64 LE to-node
//! frame: u32 LE length (= 15 + payload) | u8 version (1) | u64 LE from-node | u16 LE port
//!        | u32 LE crc32c(payload) | payload
//! ```
//!
//! Decoding is incremental and size-checked: the length prefix is checked against the limit
//! before any of the frame is buffered, and every malformed input is a [`FrameError`], never a
//! panic. The decoders work on a caller-owned `BytesMut`, so payloads are handed out without
//! copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use synod_actor::Port;
use synod_core::NodeId;
use synod_core::limits::FRAME_PAYLOAD_SIZE_MAX;
use thiserror::Error;

/// The only version of the format this node speaks.
pub const FRAME_VERSION: u8 = 1;
/// The size of the `u32` length that starts every hello and frame.
pub const LENGTH_PREFIX_SIZE: usize = 4;
/// The fixed part of a data frame after the length prefix: version, from-node, port, crc.
pub const FRAME_HEADER_SIZE: usize = 1 + 8 + 2 + 4;
/// The largest value a data frame's length prefix may hold.
pub const FRAME_LENGTH_MAX: usize = FRAME_HEADER_SIZE + FRAME_PAYLOAD_SIZE_MAX;
/// The four bytes that open a hello, so that a stray client is told apart from a peer.
pub const HELLO_MAGIC: [u8; 4] = *b"SYND";
/// The size of a hello after its length prefix: magic, version, from-node, to-node.
pub const HELLO_BODY_SIZE: usize = 4 + 1 + 8 + 8;

const _: () = assert!(FRAME_LENGTH_MAX <= u32::MAX as usize);
const _: () = assert!(HELLO_BODY_SIZE != FRAME_HEADER_SIZE);

/// One message from one node to an actor bound to `port` on another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub from: NodeId,
    pub port: Port,
    pub payload: Bytes,
}

/// The first thing a connecting node sends: who it is and whom it believes it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub from: NodeId,
    pub to: NodeId,
}

/// Bytes that are not a well-formed hello or frame. The connection that sent them is closed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame length {length} exceeds the limit of {limit} bytes")]
    TooLong { length: usize, limit: usize },
    #[error("frame length {length} is shorter than the {header} byte frame header")]
    TruncatedHeader { length: usize, header: usize },
    #[error("unknown frame version {version} (this node speaks version {FRAME_VERSION})")]
    UnknownVersion { version: u8 },
    #[error("payload checksum mismatch: header {expected:#010x}, payload {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("the stream ended inside a frame, after {received} of {expected} bytes")]
    Truncated { received: usize, expected: usize },
    #[error("the first frame is not a synod hello: length {length}, a hello has {expected}")]
    HelloLength { length: usize, expected: usize },
    #[error("the first frame is not a synod hello: magic {found:02x?}, not \"SYND\"")]
    HelloMagic { found: [u8; 4] },
}

/// The length prefix, version, from-node, port and checksum of a frame carrying `payload`.
/// The payload follows it on the wire; it is not copied here.
pub fn encode_frame_header(
    from: NodeId,
    port: Port,
    payload: &[u8],
) -> [u8; LENGTH_PREFIX_SIZE + FRAME_HEADER_SIZE] {
    // Senders refuse larger payloads before they are queued, so this is a bug, not input.
    assert!(
        payload.len() <= FRAME_PAYLOAD_SIZE_MAX,
        "frame payload of {} bytes exceeds {FRAME_PAYLOAD_SIZE_MAX}",
        payload.len()
    );
    let length = u32::try_from(FRAME_HEADER_SIZE + payload.len()).expect("checked above");
    let mut header = [0u8; LENGTH_PREFIX_SIZE + FRAME_HEADER_SIZE];
    let mut cursor = &mut header[..];
    cursor.put_u32_le(length);
    cursor.put_u8(FRAME_VERSION);
    cursor.put_u64_le(from.get());
    cursor.put_u16_le(port.0);
    cursor.put_u32_le(crc32c::crc32c(payload));
    assert!(cursor.is_empty(), "frame header layout");
    header
}

/// Appends a whole frame (header and payload) to `out`.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    out.put_slice(&encode_frame_header(frame.from, frame.port, &frame.payload));
    out.put_slice(&frame.payload);
}

/// The bytes of a hello.
pub fn encode_hello(hello: Hello) -> [u8; LENGTH_PREFIX_SIZE + HELLO_BODY_SIZE] {
    let mut bytes = [0u8; LENGTH_PREFIX_SIZE + HELLO_BODY_SIZE];
    let mut cursor = &mut bytes[..];
    cursor.put_u32_le(HELLO_BODY_SIZE as u32);
    cursor.put_slice(&HELLO_MAGIC);
    cursor.put_u8(FRAME_VERSION);
    cursor.put_u64_le(hello.from.get());
    cursor.put_u64_le(hello.to.get());
    assert!(cursor.is_empty(), "hello layout");
    bytes
}

/// The length prefix at the start of `buffer`, if all four bytes have arrived.
fn length_prefix(buffer: &[u8]) -> Option<usize> {
    let prefix: [u8; LENGTH_PREFIX_SIZE] = buffer.get(..LENGTH_PREFIX_SIZE)?.try_into().ok()?;
    Some(u32::from_le_bytes(prefix) as usize)
}

/// Takes one data frame off the front of `buffer`. `Ok(None)` means more bytes are needed;
/// the bytes of a partial frame stay in the buffer.
pub fn decode_frame(buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    let Some(length) = length_prefix(buffer) else {
        return Ok(None);
    };
    if length < FRAME_HEADER_SIZE {
        return Err(FrameError::TruncatedHeader {
            length,
            header: FRAME_HEADER_SIZE,
        });
    }
    if length > FRAME_LENGTH_MAX {
        return Err(FrameError::TooLong {
            length,
            limit: FRAME_LENGTH_MAX,
        });
    }
    // The version is checked as soon as its byte arrives, so a peer speaking another format
    // is refused before a whole frame of it is buffered.
    if let Some(&version) = buffer.get(LENGTH_PREFIX_SIZE)
        && version != FRAME_VERSION
    {
        return Err(FrameError::UnknownVersion { version });
    }
    if buffer.len() < LENGTH_PREFIX_SIZE + length {
        return Ok(None);
    }
    let mut frame = buffer.split_to(LENGTH_PREFIX_SIZE + length);
    frame.advance(LENGTH_PREFIX_SIZE + 1);
    let from = NodeId(frame.get_u64_le());
    let port = Port(frame.get_u16_le());
    let expected = frame.get_u32_le();
    let payload = frame.freeze();
    let actual = crc32c::crc32c(&payload);
    if actual != expected {
        return Err(FrameError::ChecksumMismatch { expected, actual });
    }
    Ok(Some(Frame {
        from,
        port,
        payload,
    }))
}

/// Takes the hello off the front of `buffer`. `Ok(None)` means more bytes are needed.
pub fn decode_hello(buffer: &mut BytesMut) -> Result<Option<Hello>, FrameError> {
    let Some(length) = length_prefix(buffer) else {
        return Ok(None);
    };
    if length != HELLO_BODY_SIZE {
        return Err(FrameError::HelloLength {
            length,
            expected: HELLO_BODY_SIZE,
        });
    }
    if buffer.len() < LENGTH_PREFIX_SIZE + HELLO_BODY_SIZE {
        return Ok(None);
    }
    let mut hello = buffer.split_to(LENGTH_PREFIX_SIZE + HELLO_BODY_SIZE);
    hello.advance(LENGTH_PREFIX_SIZE);
    let mut found = [0u8; 4];
    hello.copy_to_slice(&mut found);
    if found != HELLO_MAGIC {
        return Err(FrameError::HelloMagic { found });
    }
    let version = hello.get_u8();
    if version != FRAME_VERSION {
        return Err(FrameError::UnknownVersion { version });
    }
    let from = NodeId(hello.get_u64_le());
    let to = NodeId(hello.get_u64_le());
    Ok(Some(Hello { from, to }))
}

/// Checks what is left in the buffer when the stream ends: nothing, or a truncated frame.
pub fn check_end_of_stream(buffer: &[u8]) -> Result<(), FrameError> {
    if buffer.is_empty() {
        return Ok(());
    }
    let expected = match length_prefix(buffer) {
        Some(length) => LENGTH_PREFIX_SIZE.saturating_add(length),
        None => LENGTH_PREFIX_SIZE,
    };
    Err(FrameError::Truncated {
        received: buffer.len(),
        expected,
    })
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use synod_core::Prng;

    use super::*;

    fn frame(payload: &'static [u8]) -> Frame {
        Frame {
            from: NodeId(3),
            port: Port(7),
            payload: Bytes::from_static(payload),
        }
    }

    fn encoded(frame: &Frame) -> BytesMut {
        let mut bytes = BytesMut::new();
        encode_frame(frame, &mut bytes);
        bytes
    }

    #[test]
    fn frames_and_hellos_round_trip_byte_by_byte() {
        // Checks that encode then decode gives back the same frames and hello, also when the
        // bytes arrive one at a time, and that the header layout matches docs/wire.md.
        let frames = [frame(b""), frame(b"x"), frame(b"hello, synod")];
        let mut stream = BytesMut::new();
        stream.put_slice(&encode_hello(Hello {
            from: NodeId(3),
            to: NodeId(9),
        }));
        for frame in &frames {
            encode_frame(frame, &mut stream);
        }
        let mut buffer = BytesMut::new();
        let mut hello = None;
        let mut decoded = Vec::new();
        for byte in stream.iter() {
            buffer.put_u8(*byte);
            if hello.is_none() {
                hello = decode_hello(&mut buffer).expect("valid hello");
                continue;
            }
            decoded.extend(decode_frame(&mut buffer).expect("valid frame"));
        }
        let expected_hello = Hello {
            from: NodeId(3),
            to: NodeId(9),
        };
        assert_eq!(hello, Some(expected_hello));
        assert_eq!(decoded, frames);
        assert_eq!(check_end_of_stream(&buffer), Ok(()));
        let header = encode_frame_header(NodeId(0x0102), Port(0x0304), b"ab");
        assert_eq!(&header[..4], &17u32.to_le_bytes());
        assert_eq!(header[4], FRAME_VERSION);
        assert_eq!(&header[5..13], &0x0102u64.to_le_bytes());
        assert_eq!(&header[13..15], &0x0304u16.to_le_bytes());
        assert_eq!(&header[15..19], &crc32c::crc32c(b"ab").to_le_bytes());
    }

    /// A valid frame with one edit applied to its bytes.
    fn edited(edit: impl FnOnce(&mut BytesMut)) -> BytesMut {
        let mut bytes = encoded(&frame(b"payload"));
        edit(&mut bytes);
        bytes
    }

    #[test]
    fn malformed_frames_give_the_named_error() {
        // Checks each way a frame can be malformed against the exact error it gives.
        let too_long = (FRAME_LENGTH_MAX + 1) as u32;
        let crc = crc32c::crc32c(b"payload");
        let table: Vec<(&str, BytesMut, FrameError)> = vec![
            (
                "length above the limit",
                edited(|bytes| bytes[..4].copy_from_slice(&too_long.to_le_bytes())),
                FrameError::TooLong {
                    length: FRAME_LENGTH_MAX + 1,
                    limit: FRAME_LENGTH_MAX,
                },
            ),
            (
                "length shorter than the header",
                edited(|bytes| bytes[..4].copy_from_slice(&14u32.to_le_bytes())),
                FrameError::TruncatedHeader {
                    length: 14,
                    header: FRAME_HEADER_SIZE,
                },
            ),
            (
                "unknown version",
                edited(|bytes| bytes[4] = 2),
                FrameError::UnknownVersion { version: 2 },
            ),
            (
                "payload changed in flight",
                edited(|bytes| bytes[LENGTH_PREFIX_SIZE + FRAME_HEADER_SIZE] ^= 0x20),
                FrameError::ChecksumMismatch {
                    expected: crc,
                    actual: crc32c::crc32c(b"Payload"),
                },
            ),
        ];
        for (name, mut bytes, error) in table {
            assert_eq!(decode_frame(&mut bytes), Err(error), "{name}");
        }
    }

    #[test]
    fn truncated_streams_and_bad_hellos_give_the_named_error() {
        // Checks a stream that ends inside the length prefix, the header or the payload, and
        // hellos that are not from a synod peer.
        let whole = encoded(&frame(b"payload"));
        for (cut, expected) in [(2, 4), (10, whole.len()), (whole.len() - 1, whole.len())] {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_frame(&mut partial), Ok(None));
            let error = FrameError::Truncated {
                received: cut,
                expected,
            };
            assert_eq!(check_end_of_stream(&partial), Err(error), "cut at {cut}");
        }
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let length = u32::from_le_bytes(*b"GET ") as usize;
        let error = FrameError::HelloLength {
            length,
            expected: HELLO_BODY_SIZE,
        };
        assert_eq!(decode_hello(&mut http), Err(error));
        let hello = Hello {
            from: NodeId(1),
            to: NodeId(2),
        };
        let mut bad_magic = BytesMut::from(&encode_hello(hello)[..]);
        bad_magic[4] = b'X';
        let found = *b"XYND";
        assert_eq!(
            decode_hello(&mut bad_magic),
            Err(FrameError::HelloMagic { found })
        );
        let mut bad_version = BytesMut::from(&encode_hello(hello)[..]);
        bad_version[8] = 9;
        let error = FrameError::UnknownVersion { version: 9 };
        assert_eq!(decode_hello(&mut bad_version), Err(error));
    }

    /// Feeds `bytes` to the decoders in random chunks until they stop or fail.
    fn decode_everything(prng: &mut Prng, bytes: &[u8]) {
        let mut buffer = BytesMut::new();
        let mut offset = 0;
        let mut hello_seen = prng.chance(0.5);
        while offset < bytes.len() {
            let chunk = 1 + prng.index(bytes.len() - offset);
            buffer.put_slice(&bytes[offset..offset + chunk]);
            offset += chunk;
            loop {
                let progress = if hello_seen {
                    decode_frame(&mut buffer).map(|frame| frame.is_some())
                } else {
                    decode_hello(&mut buffer).map(|hello| hello.is_some())
                };
                match progress {
                    Ok(true) => hello_seen = true,
                    Ok(false) => break,
                    Err(_) => return,
                }
            }
        }
        let _ = check_end_of_stream(&buffer);
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        // Checks that random bytes, and valid frames with random bytes changed, only ever
        // give frames or errors: the decoders never panic on what a peer sends.
        for seed in 0..2_000u64 {
            let mut prng = Prng::from_seed(seed);
            let mut bytes = encoded(&frame(b"some payload")).to_vec();
            if prng.chance(0.5) {
                let length = prng.index(64);
                bytes = (0..length).map(|_| prng.next_u64() as u8).collect();
            } else {
                for _ in 0..=prng.index(3) {
                    let at = prng.index(bytes.len());
                    bytes[at] = prng.next_u64() as u8;
                }
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| decode_everything(&mut prng, &bytes)));
            assert!(
                outcome.is_ok(),
                "decoder panicked on seed {seed} with bytes {bytes:02x?}; replay: cargo test \
                 -p synod-runtime random_bytes_never_panic_the_decoders"
            );
        }
    }
}
