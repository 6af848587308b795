//! Fuzzes recovery with well-formed material: the input is a small program that builds
//! segment files out of valid, checksummed records (segment and reset headers, entries,
//! truncates, batches), then damages them (bit flips, holes, cut files). Random bytes
//! rarely pass a CRC32C, so this reaches what `record_decoder` cannot: continuity between
//! segments, torn tails against proof of corruption, reset segments discarding the log
//! before them. Recovery must never panic; a log it accepts must read back, and after its
//! repair and a power loss it must recover to exactly the same log.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use synod_wal::record::{encode_record, encode_reset_header, encode_segment_header};
use synod_wal::{MemStorage, RecordType, Storage, SyncWal, WalConfig, WalEntry};

const SEGMENTS_MAX: usize = 6;
const INSTRUCTIONS_MAX: usize = 400;

fn config() -> WalConfig {
    let mut config = WalConfig::small_for_tests();
    config.segment_size = 8 << 10;
    config.batch_size_max = 2 << 10;
    config.record_size_max = 700;
    config.read_size_max = 8 << 10;
    config
}

/// Builds segment files from the program in `data`.
struct Builder<'a> {
    data: &'a [u8],
    files: Vec<(String, Vec<u8>)>,
    next_lsn: u64,
    next_sequence: u64,
    batch_offset: u16,
}

impl Builder<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        *first
    }

    fn start_segment(&mut self, reset: bool) {
        if self.files.len() >= SEGMENTS_MAX {
            return;
        }
        let lsn = self.next_lsn;
        if reset {
            self.next_sequence = 1 + u64::from(self.byte());
        }
        let header = match reset {
            true => encode_reset_header(lsn, self.next_sequence),
            false => encode_segment_header(lsn, self.next_sequence),
        };
        // Now and then the file is named for another lsn than its header's.
        let named = lsn + u64::from(self.byte() == 0xff);
        self.files
            .push((format!("wal-{named:020}.log"), header.to_vec()));
        self.next_lsn += 1;
        self.batch_offset = 0;
    }

    fn record(&mut self, record_type: RecordType, sequence: u64, payload: &[u8]) {
        let Some((_, bytes)) = self.files.last_mut() else {
            return;
        };
        let mut out = BytesMut::new();
        let offset = self.batch_offset.min((self.next_lsn - 1) as u16);
        encode_record(
            &mut out,
            record_type,
            offset,
            self.next_lsn,
            sequence,
            payload,
        );
        if bytes.len() + out.len() > config().segment_size as usize {
            return;
        }
        bytes.extend_from_slice(&out);
        self.next_lsn += 1;
        self.batch_offset = self.batch_offset.saturating_add(1);
    }

    fn step(&mut self) {
        match self.byte() % 9 {
            0 => self.start_segment(false),
            1 => self.start_segment(true),
            2 | 3 => {
                let size = usize::from(self.byte()) * 2;
                let fill = self.byte() | 1;
                let sequence = self.next_sequence;
                self.record(RecordType::Entry, sequence, &vec![fill; size]);
                self.next_sequence += 1;
            }
            4 => {
                let back = u64::from(self.byte() % 4).min(self.next_sequence - 1);
                let from = self.next_sequence - back;
                self.record(RecordType::Truncate, from, &[]);
                self.next_sequence = from;
            }
            5 => self.batch_offset = 0,
            6 => self.damage(|bytes, at| bytes[at] ^= 1 << (at % 8)),
            7 => self.damage(|bytes, at| bytes.truncate(at)),
            _ => {
                // A hole: a record's worth of zeros where the next record should be.
                self.next_lsn += u64::from(self.byte() % 2);
                if let Some((_, bytes)) = self.files.last_mut() {
                    bytes.extend_from_slice(&[0; 32]);
                }
            }
        }
    }

    fn damage(&mut self, change: fn(&mut Vec<u8>, usize)) {
        let position = usize::from(self.byte()) << 8 | usize::from(self.byte());
        let Some((_, bytes)) = self.files.last_mut() else {
            return;
        };
        if !bytes.is_empty() {
            let at = position % bytes.len();
            change(bytes, at);
        }
    }
}

/// The whole recovered log, or why it could not be recovered.
fn recover(storage: MemStorage) -> Result<(SyncWal<MemStorage>, u64, Vec<WalEntry>), String> {
    let (mut wal, _) = SyncWal::open(storage, config()).map_err(|error| error.to_string())?;
    let (first, next) = (wal.wal().first_sequence(), wal.wal().next_sequence());
    let entries = match next > first {
        true => wal
            .read_range(first, next)
            .expect("a recovered log reads back"),
        false => Vec::new(),
    };
    assert_eq!(
        entries.len() as u64,
        next - first,
        "every recovered entry reads back"
    );
    Ok((wal, first, entries))
}

fuzz_target!(|data: &[u8]| {
    let mut builder = Builder {
        data,
        files: Vec::new(),
        next_lsn: 1,
        next_sequence: 1,
        batch_offset: 0,
    };
    for _ in 0..INSTRUCTIONS_MAX {
        if builder.data.is_empty() {
            break;
        }
        builder.step();
    }
    let mut storage = MemStorage::new();
    for (name, bytes) in &builder.files {
        storage
            .write(name, 0, bytes)
            .expect("memory takes any write");
        storage.sync(name).expect("memory syncs");
    }
    storage.sync_dir().expect("memory syncs");
    let Ok((mut wal, first, entries)) = recover(storage) else {
        return;
    };
    wal.settle()
        .expect("the repair of a recovered log runs on a working disk");
    let mut storage = wal.into_storage();
    storage.crash();
    let (_, first_again, entries_again) =
        recover(storage).unwrap_or_else(|error| panic!("a repaired log fails recovery: {error}"));
    assert_eq!(first_again, first, "the repaired log starts where it did");
    let payloads = |entries: &[WalEntry]| -> Vec<Bytes> {
        entries.iter().map(|entry| entry.payload.clone()).collect()
    };
    assert_eq!(
        payloads(&entries_again),
        payloads(&entries),
        "the repair changed the log"
    );
});
