//! The node's incarnation (boot generation), kept durably in two checksummed slots.
//!
//! Every boot reads both slots, takes the highest valid incarnation, and writes the next
//! one into the slot it did not come from, then syncs the file (and the directory on first
//! creation) before the node uses it. Writing the other slot means a torn or failed write
//! can only damage the slot being written: the previous value survives in the other one.
//!
//! A slot that holds bytes but fails its checksum may have held the newest incarnation (a
//! write that reached the media corrupted). Every write stores the highest valid value plus
//! one, so a corrupt slot held at most the surviving value plus one: recovery then skips
//! one number. Both slots corrupt means the incarnation is unknown, and the node refuses to
//! start rather than risk reusing one.
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

/// What one slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Never written: absent or all zeros.
    Empty,
    Valid(u64),
    /// Bytes that fail the checksum: a torn write or corruption on the media.
    Corrupt,
}

/// Reads the slot at `index` out of the file's bytes (which may be short or empty).
pub fn slot_state(file: &[u8], index: u64) -> SlotState {
    let start = usize::try_from(index * SLOT_STRIDE).unwrap_or(usize::MAX);
    let bytes = file.get(start..).unwrap_or(&[]);
    let bytes = &bytes[..bytes.len().min(SLOT_SIZE)];
    if bytes.iter().all(|byte| *byte == 0) {
        return SlotState::Empty;
    }
    match decode_slot(bytes) {
        Some(incarnation) => SlotState::Valid(incarnation),
        None => SlotState::Corrupt,
    }
}

/// What the file says about the next boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The incarnation to use next.
    pub next: u64,
    /// The slot to write it into: never the one holding the highest valid value.
    pub slot: u64,
}

/// Why no incarnation can be chosen safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "both slots of the incarnation file fail their checksum, so the last incarnation is \
         unknown; restore the file from a backup, or remove the node's data directory and \
         add it to the cluster as a new node"
    )]
    BothSlotsCorrupt,
    #[error("the incarnation counter is exhausted")]
    Overflow,
}

/// Chooses the next incarnation and its slot from the file's bytes.
pub fn recover(file: &[u8]) -> Result<Recovered, RecoverError> {
    let states = [slot_state(file, 0), slot_state(file, 1)];
    if states == [SlotState::Corrupt, SlotState::Corrupt] {
        return Err(RecoverError::BothSlotsCorrupt);
    }
    let valid = |index: usize| match states[index] {
        SlotState::Valid(value) => Some(value),
        _ => None,
    };
    // The slot to keep: the one holding the highest valid value; with nothing valid, a
    // corrupt slot 0 is kept (write slot 1), otherwise slot 1 is (write slot 0).
    let (highest, kept_slot) = match (valid(0), valid(1)) {
        (Some(first), Some(second)) if second > first => (second, 1),
        (Some(first), _) => (first, 0),
        (None, Some(second)) => (second, 1),
        (None, None) => (0, u64::from(states[0] != SlotState::Corrupt)),
    };
    let skip = u64::from(states.contains(&SlotState::Corrupt));
    let next = highest
        .checked_add(1 + skip)
        .ok_or(RecoverError::Overflow)?;
    Ok(Recovered {
        next,
        slot: 1 - kept_slot,
    })
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

    fn corrupt() -> Bytes {
        let mut bytes = encode_slot(99).to_vec();
        bytes[9] ^= 0x10;
        Bytes::from(bytes)
    }

    #[test]
    fn recovery_takes_the_highest_valid_slot_and_writes_the_other() {
        // Checks the next incarnation and its slot: one past the highest valid value, in the
        // other slot; two past it when a slot is corrupt (it may have held one more); an
        // empty or short file starts at 1 in slot 0; two corrupt slots refuse to guess.
        let table = [
            (
                file_with(&[(0, encode_slot(4)), (1, encode_slot(5))]),
                (6, 0),
            ),
            (
                file_with(&[(0, encode_slot(6)), (1, encode_slot(5))]),
                (7, 1),
            ),
            (file_with(&[(1, encode_slot(9))]), (10, 0)),
            (Vec::new(), (1, 0)),
            (encode_slot(3).to_vec(), (4, 1)),
            (file_with(&[(0, encode_slot(4)), (1, corrupt())]), (6, 1)),
            (file_with(&[(0, corrupt()), (1, encode_slot(8))]), (10, 0)),
            (file_with(&[(0, corrupt())]), (2, 1)),
            (file_with(&[(1, corrupt())]), (2, 0)),
        ];
        for (file, (next, slot)) in table {
            assert_eq!(recover(&file), Ok(Recovered { next, slot }));
        }
        let both = file_with(&[(0, corrupt()), (1, corrupt())]);
        assert_eq!(recover(&both), Err(RecoverError::BothSlotsCorrupt));
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
