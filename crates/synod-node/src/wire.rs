//! The heartbeat message on the wire: explicit little-endian, size-checked.
//!
//! ```text
//! offset size field
//! 0      1    kind (1 = heartbeat)
//! 1      1    version (1)
//! 2      8    incarnation, u64 LE: the sender's boot generation
//! 10     8    sequence, u64 LE: heartbeats sent by this incarnation
//! ```
//! The sender's node id travels in the transport frame, not here.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub const HEARTBEAT_KIND: u8 = 1;
pub const HEARTBEAT_VERSION: u8 = 1;
pub const HEARTBEAT_SIZE: usize = 18;

/// One heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub incarnation: u64,
    pub sequence: u64,
}

/// Why a payload is not a heartbeat. The receiver counts it and drops it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("heartbeat of {size} bytes, expected {HEARTBEAT_SIZE}")]
    Size { size: usize },
    #[error("message kind {kind} is not a heartbeat")]
    Kind { kind: u8 },
    #[error("heartbeat version {version} is not supported (this node speaks {HEARTBEAT_VERSION})")]
    Version { version: u8 },
    #[error("heartbeat with incarnation 0 (incarnations start at 1)")]
    IncarnationZero,
}

impl Heartbeat {
    pub fn encode(&self) -> Bytes {
        let mut buffer = BytesMut::with_capacity(HEARTBEAT_SIZE);
        buffer.put_u8(HEARTBEAT_KIND);
        buffer.put_u8(HEARTBEAT_VERSION);
        buffer.put_u64_le(self.incarnation);
        buffer.put_u64_le(self.sequence);
        debug_assert_eq!(buffer.len(), HEARTBEAT_SIZE);
        buffer.freeze()
    }

    pub fn decode(payload: &[u8]) -> Result<Heartbeat, DecodeError> {
        if payload.len() != HEARTBEAT_SIZE {
            return Err(DecodeError::Size {
                size: payload.len(),
            });
        }
        if payload[0] != HEARTBEAT_KIND {
            return Err(DecodeError::Kind { kind: payload[0] });
        }
        if payload[1] != HEARTBEAT_VERSION {
            return Err(DecodeError::Version {
                version: payload[1],
            });
        }
        let incarnation = u64::from_le_bytes(payload[2..10].try_into().expect("8 bytes"));
        let sequence = u64::from_le_bytes(payload[10..18].try_into().expect("8 bytes"));
        if incarnation == 0 {
            return Err(DecodeError::IncarnationZero);
        }
        Ok(Heartbeat {
            incarnation,
            sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_encodes_to_the_documented_bytes() {
        // Checks the exact byte layout, so a change to it is a visible, deliberate act.
        let bytes = Heartbeat {
            incarnation: 2,
            sequence: 0x0102,
        }
        .encode();
        assert_eq!(
            bytes.as_ref(),
            &[1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Heartbeat::decode(&bytes),
            Ok(Heartbeat {
                incarnation: 2,
                sequence: 0x0102
            })
        );
    }

    #[test]
    fn malformed_heartbeats_are_refused_with_a_reason() {
        // Checks each way a payload can be wrong gives its own error instead of a panic.
        let good = Heartbeat {
            incarnation: 1,
            sequence: 1,
        }
        .encode()
        .to_vec();
        let mut wrong_kind = good.clone();
        wrong_kind[0] = 9;
        let mut wrong_version = good.clone();
        wrong_version[1] = 7;
        let mut zero = good.clone();
        zero[2] = 0;
        let table: Vec<(Vec<u8>, DecodeError)> = vec![
            (Vec::new(), DecodeError::Size { size: 0 }),
            (good[..17].to_vec(), DecodeError::Size { size: 17 }),
            (
                [good.clone(), vec![0]].concat(),
                DecodeError::Size { size: 19 },
            ),
            (wrong_kind, DecodeError::Kind { kind: 9 }),
            (wrong_version, DecodeError::Version { version: 7 }),
            (zero, DecodeError::IncarnationZero),
        ];
        for (payload, error) in table {
            assert_eq!(Heartbeat::decode(&payload), Err(error));
        }
    }
}
