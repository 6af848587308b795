//! The node's incarnation (boot generation), kept durably in two checksummed slots.
//!
//! Every boot reads both slots, takes the highest valid incarnation, and writes the next
//! one into the slot it did not come from, then syncs the file (and the directory on first
//! creation) before the node uses it. Writing the other slot means a torn or failed write
//! can only damage the slot being written: the previous value survives in the other one.
//!
//! ```text
//! slot 0 at offset 0, slot 1 at offset 4096 (one sector each, so slots never share one)
//! offset size field
//! 0      4    magic "SYNI"
//! 4      1    version (1)
//! 5      3    zero
//! 8      8    incarnation, u64 LE
//! 16     4    crc32c of bytes 0..16, u32 LE
//! ```

use bytes::{BufMut, Bytes, BytesMut};

pub const INCARNATION_FILE: &str = "incarnation";
pub const SLOT_STRIDE: u64 = 4096;
pub const SLOT_SIZE: usize = 20;
const MAGIC: &[u8; 4] = b"SYNI";
const VERSION: u8 = 1;

/// Encodes one slot.
pub fn encode_slot(incarnation: u64) -> Bytes {
    let mut buffer = BytesMut::with_capacity(SLOT_SIZE);
    buffer.put_slice(MAGIC);
    buffer.put_u8(VERSION);
    buffer.put_slice(&[0, 0, 0]);
    buffer.put_u64_le(incarnation);
    let checksum = crc32c::crc32c(&buffer);
    buffer.put_u32_le(checksum);
    buffer.freeze()
}

/// Decodes one slot; `None` if it is absent, torn or corrupt.
pub fn decode_slot(bytes: &[u8]) -> Option<u64> {
    let slot = bytes.get(..SLOT_SIZE)?;
    if &slot[0..4] != MAGIC || slot[4] != VERSION {
        return None;
    }
    let stored = u32::from_le_bytes(slot[16..20].try_into().expect("4 bytes"));
    if crc32c::crc32c(&slot[..16]) != stored {
        return None;
    }
    Some(u64::from_le_bytes(slot[8..16].try_into().expect("8 bytes")))
}

/// What the file says: the highest valid incarnation and the slot it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub incarnation: u64,
    pub slot: u64,
}

/// Reads both slots out of the file's bytes (which may be short or empty).
pub fn recover(file: &[u8]) -> Option<Recovered> {
    let slot_of = |index: u64| {
        let start = usize::try_from(index * SLOT_STRIDE).ok()?;
        decode_slot(file.get(start..)?).map(|incarnation| Recovered {
            incarnation,
            slot: index,
        })
    };
    match (slot_of(0), slot_of(1)) {
        (Some(first), Some(second)) => Some(if second.incarnation > first.incarnation {
            second
        } else {
            first
        }),
        (first, second) => first.or(second),
    }
}

/// Where the next incarnation goes: never over the slot holding the current one.
pub fn next_slot(recovered: Option<Recovered>) -> u64 {
    match recovered {
        Some(current) => 1 - current.slot,
        None => 0,
    }
}

/// The bytes to read at boot: both slots.
pub const READ_LEN: u32 = (SLOT_STRIDE as u32) + SLOT_SIZE as u32;

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(slots: &[(u64, Bytes)]) -> Vec<u8> {
        let mut file = vec![0u8; READ_LEN as usize];
        for (index, bytes) in slots {
            let start = (*index * SLOT_STRIDE) as usize;
            file[start..start + bytes.len()].copy_from_slice(bytes);
        }
        file
    }

    #[test]
    fn recovery_takes_the_highest_valid_slot_and_writes_the_other() {
        // Checks slot selection: highest valid wins, a corrupt slot is ignored, an empty or
        // short file has no incarnation, and the next write never targets the live slot.
        let table = [
            (
                file_with(&[(0, encode_slot(4)), (1, encode_slot(5))]),
                Some((5, 1)),
                0,
            ),
            (
                file_with(&[(0, encode_slot(6)), (1, encode_slot(5))]),
                Some((6, 0)),
                1,
            ),
            (file_with(&[(1, encode_slot(9))]), Some((9, 1)), 0),
            (Vec::new(), None, 0),
            (encode_slot(3).to_vec(), Some((3, 0)), 1),
        ];
        for (file, expected, slot) in table {
            let recovered = recover(&file);
            assert_eq!(recovered.map(|r| (r.incarnation, r.slot)), expected);
            assert_eq!(next_slot(recovered), slot);
        }
    }

    #[test]
    fn a_flipped_bit_invalidates_a_slot() {
        // Checks every single-bit flip in a slot is caught by the checksum or magic.
        let slot = encode_slot(77);
        for bit in 0..SLOT_SIZE * 8 {
            let mut damaged = slot.to_vec();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_slot(&damaged), None, "bit {bit}");
        }
        assert_eq!(decode_slot(&slot), Some(77));
    }
}
