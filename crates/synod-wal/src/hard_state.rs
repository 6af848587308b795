//! The durable term and vote, in two checksummed slots of the file `hardstate`.
//!
//! Every save writes the slot that does not hold the newest valid value, with a write
//! counter one above the newest, then syncs the file (and the directory the first time in
//! the store's life, since an earlier life may have created the file without syncing its
//! name). A torn or failed write can only damage the slot being written, so the previous
//! value survives in the other: a crash never leaves a half-written term and vote.
//!
//! A slot that holds bytes but fails its checksum cannot come from a torn write (a slot lies
//! inside one sector, and a torn write leaves a sector all old or all new), so it is damage
//! on the media, and it may have held the newest term and vote. Forgetting a vote could let
//! the node vote twice in one term, so recovery refuses to guess and reports the slot.
//!
//! ```text
//! slot 0 at offset 0, slot 1 at offset 4096
//! offset size field
//! 0      4    magic "SYNH"
//! 4      1    version (1)
//! 5      1    vote present (0 or 1)
//! 6      2    zero
//! 8      8    write counter, u64 LE
//! 16     8    term, u64 LE
//! 24     8    vote (node id, 0 when absent), u64 LE
//! 32     4    crc32c of bytes 0..32, u32 LE
//! ```

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use synod_core::disk::{DiskError, DiskOp, DiskReply};
use synod_core::{NodeId, Term};
use thiserror::Error;

use crate::wal::{IoTag, WalFatal};

pub const HARD_STATE_FILE: &str = "hardstate";
pub const SLOT_STRIDE: u64 = 4096;
pub const SLOT_SIZE: usize = 36;
/// The bytes to read at start: both slots.
pub const HARD_STATE_READ_LEN: u32 = SLOT_STRIDE as u32 + SLOT_SIZE as u32;
const MAGIC: &[u8; 4] = b"SYNH";
const VERSION: u8 = 1;

/// Raft's hard state: the current term and the vote cast in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
}

/// Encodes one slot.
pub fn encode_slot(counter: u64, state: HardState) -> Bytes {
    let mut buffer = BytesMut::with_capacity(SLOT_SIZE);
    buffer.put_slice(MAGIC);
    buffer.put_u8(VERSION);
    buffer.put_u8(u8::from(state.vote.is_some()));
    buffer.put_u16_le(0);
    buffer.put_u64_le(counter);
    buffer.put_u64_le(state.term.get());
    buffer.put_u64_le(state.vote.map_or(0, NodeId::get));
    let checksum = crc32c::crc32c(&buffer);
    buffer.put_u32_le(checksum);
    buffer.freeze()
}

/// What one slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    Empty,
    Valid { counter: u64, state: HardState },
    Corrupt,
}

/// Reads slot `index` out of the file's bytes (which may be short or empty).
pub fn slot_state(file: &[u8], index: u64) -> SlotState {
    let start = (index * SLOT_STRIDE) as usize;
    let bytes = file.get(start..).unwrap_or(&[]);
    let slot = &bytes[..bytes.len().min(SLOT_SIZE)];
    if slot.iter().all(|byte| *byte == 0) {
        return SlotState::Empty;
    }
    if slot.len() < SLOT_SIZE || &slot[..4] != MAGIC || slot[4] != VERSION || slot[5] > 1 {
        return SlotState::Corrupt;
    }
    let word = |offset: usize| u64::from_le_bytes(slot[offset..offset + 8].try_into().expect("8"));
    let stored = u32::from_le_bytes(slot[32..36].try_into().expect("4 bytes"));
    if crc32c::crc32c(&slot[..32]) != stored {
        return SlotState::Corrupt;
    }
    let vote = (slot[5] == 1).then(|| NodeId(word(24)));
    SlotState::Valid {
        counter: word(8),
        state: HardState {
            term: Term(word(16)),
            vote,
        },
    }
}

/// Why the hard state cannot be recovered.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HardStateError {
    #[error(
        "{HARD_STATE_FILE}: slot {slot} at offset {offset} fails its checksum, so the newest \
         term and vote may be lost and the node could vote twice; restore the file from a \
         backup, or remove the node's data and re-add it to the cluster as a new member"
    )]
    SlotCorrupt { slot: u64, offset: u64 },
}

/// What the store reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HardStateOutput {
    /// The state is durable: messages that depend on it (votes, appends in its term) may go.
    Saved(HardState),
    Failed(WalFatal),
}

/// The sans-IO store of the hard state: `save`, then `poll_io`/`complete` like the WAL.
#[derive(Debug)]
pub struct HardStateStore {
    counter: u64,
    slot_next: u64,
    directory_synced: bool,
    pending: Option<HardState>,
    in_flight: Option<(HardState, usize)>,
    ops_ready: VecDeque<DiskOp>,
    ops_in_flight: VecDeque<IoTag>,
    tag_next: u64,
    failure: Option<WalFatal>,
    outputs: VecDeque<HardStateOutput>,
}

impl HardStateStore {
    /// Recovers from the file's bytes (empty if it does not exist): the newest valid state.
    pub fn recover(file: &[u8]) -> Result<(HardStateStore, Option<HardState>), HardStateError> {
        let states = [slot_state(file, 0), slot_state(file, 1)];
        for (slot, state) in states.iter().enumerate() {
            if *state == SlotState::Corrupt {
                let slot = slot as u64;
                return Err(HardStateError::SlotCorrupt {
                    slot,
                    offset: slot * SLOT_STRIDE,
                });
            }
        }
        let valid = |index: usize| match states[index] {
            SlotState::Valid { counter, state } => Some((counter, state)),
            _ => None,
        };
        let (newest, newest_slot) = match (valid(0), valid(1)) {
            (Some(first), Some(second)) if second.0 > first.0 => (Some(second), 1),
            (Some(first), _) => (Some(first), 0),
            (None, Some(second)) => (Some(second), 1),
            (None, None) => (None, 1),
        };
        let store = HardStateStore {
            counter: newest.map_or(0, |(counter, _)| counter),
            slot_next: 1 - newest_slot,
            directory_synced: false,
            pending: None,
            in_flight: None,
            ops_ready: VecDeque::new(),
            ops_in_flight: VecDeque::new(),
            tag_next: 0,
            failure: None,
            outputs: VecDeque::new(),
        };
        Ok((store, newest.map(|(_, state)| state)))
    }

    /// Asks for `state` to be made durable; a newer save replaces one not yet started.
    pub fn save(&mut self, state: HardState) {
        self.pending = Some(state);
    }

    pub fn poll_io(&mut self) -> Option<(IoTag, DiskOp)> {
        if self.failure.is_some() {
            return None;
        }
        if self.in_flight.is_none()
            && let Some(state) = self.pending.take()
        {
            self.begin_write(state);
        }
        let op = self.ops_ready.pop_front()?;
        let tag = IoTag(self.tag_next);
        self.tag_next += 1;
        self.ops_in_flight.push_back(tag);
        self.invariants();
        Some((tag, op))
    }

    fn begin_write(&mut self, state: HardState) {
        self.counter = self.counter.checked_add(1).expect("write counter overflow");
        let path = HARD_STATE_FILE.to_string();
        let data = encode_slot(self.counter, state);
        let offset = self.slot_next * SLOT_STRIDE;
        self.slot_next = 1 - self.slot_next;
        self.ops_ready.push_back(DiskOp::Write {
            path: path.clone(),
            offset,
            data,
        });
        self.ops_ready.push_back(DiskOp::Sync { path });
        if !self.directory_synced {
            self.ops_ready.push_back(DiskOp::SyncDir);
        }
        self.in_flight = Some((state, self.ops_ready.len()));
    }

    pub fn complete(&mut self, tag: IoTag, result: Result<DiskReply, DiskError>) {
        let expected = self.ops_in_flight.pop_front();
        assert_eq!(
            expected,
            Some(tag),
            "hard state completions must come back in order"
        );
        if self.failure.is_some() {
            return;
        }
        if let Err(error) = result {
            let fatal = WalFatal {
                op: "hard state",
                error,
            };
            self.failure = Some(fatal.clone());
            self.ops_ready.clear();
            self.outputs.push_back(HardStateOutput::Failed(fatal));
            return;
        }
        let (state, remaining) = self.in_flight.take().expect("a write in flight");
        if remaining > 1 {
            self.in_flight = Some((state, remaining - 1));
        } else {
            self.directory_synced = true;
            self.outputs.push_back(HardStateOutput::Saved(state));
        }
        self.invariants();
    }

    pub fn poll_output(&mut self) -> Option<HardStateOutput> {
        self.outputs.pop_front()
    }

    pub fn invariants(&self) {
        assert!(self.slot_next <= 1, "two slots");
        assert!(self.ops_ready.len() <= 3, "one write in flight");
        assert!(
            self.in_flight.is_some() || self.ops_ready.is_empty(),
            "ops without a write"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_storage::MemStorage;
    use crate::storage::Storage;

    fn run(store: &mut HardStateStore, storage: &mut MemStorage) -> Vec<DiskOp> {
        let mut ops = Vec::new();
        while let Some((tag, op)) = store.poll_io() {
            let result = storage.execute(&op);
            ops.push(op);
            store.complete(tag, result);
        }
        ops
    }

    #[test]
    fn saves_alternate_slots_and_recover_the_newest() {
        // Checks the exact ops of the first two saves and that recovery after a crash
        // returns the newest durable state.
        let mut storage = MemStorage::new();
        let (mut store, recovered) = HardStateStore::recover(&[]).unwrap();
        assert_eq!(recovered, None);
        let first = HardState {
            term: Term(3),
            vote: Some(NodeId(2)),
        };
        store.save(first);
        let ops = run(&mut store, &mut storage);
        let path = HARD_STATE_FILE.to_string();
        assert_eq!(
            ops,
            vec![
                DiskOp::Write {
                    path: path.clone(),
                    offset: 0,
                    data: encode_slot(1, first)
                },
                DiskOp::Sync { path: path.clone() },
                DiskOp::SyncDir,
            ]
        );
        assert_eq!(store.poll_output(), Some(HardStateOutput::Saved(first)));
        let second = HardState {
            term: Term(4),
            vote: None,
        };
        store.save(second);
        let ops = run(&mut store, &mut storage);
        assert_eq!(
            ops[0],
            DiskOp::Write {
                path: path.clone(),
                offset: 4096,
                data: encode_slot(2, second)
            }
        );
        assert_eq!(ops.len(), 2);
        storage.crash();
        let file = storage
            .read(HARD_STATE_FILE, 0, HARD_STATE_READ_LEN)
            .unwrap();
        let (_, recovered) = HardStateStore::recover(&file).unwrap();
        assert_eq!(recovered, Some(second));
    }

    #[test]
    fn a_corrupt_slot_is_refused_with_its_offset() {
        // Checks that a damaged slot is reported (it may have held the newest vote) and that
        // every single-bit flip of a slot is caught.
        let state = HardState {
            term: Term(9),
            vote: Some(NodeId(1)),
        };
        let slot = encode_slot(5, state);
        for bit in 0..SLOT_SIZE * 8 {
            let mut file = vec![0u8; HARD_STATE_READ_LEN as usize];
            file[4096..4096 + SLOT_SIZE].copy_from_slice(&slot);
            file[4096 + bit / 8] ^= 1 << (bit % 8);
            let error = HardStateStore::recover(&file).unwrap_err();
            assert_eq!(
                error,
                HardStateError::SlotCorrupt {
                    slot: 1,
                    offset: 4096
                },
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_failed_sync_latches_the_store() {
        // Checks that a failed sync reports a fatal error and no further IO is handed out.
        let (mut store, _) = HardStateStore::recover(&[]).unwrap();
        store.save(HardState::default());
        let (tag, _) = store.poll_io().unwrap();
        store.complete(tag, Ok(DiskReply::Done));
        let (tag, _) = store.poll_io().unwrap();
        let error = DiskError::Io {
            op: "sync",
            path: "hardstate".into(),
            message: "EIO".into(),
        };
        store.complete(tag, Err(error));
        assert!(matches!(
            store.poll_output(),
            Some(HardStateOutput::Failed(_))
        ));
        store.save(HardState::default());
        assert_eq!(store.poll_io(), None);
    }
}
