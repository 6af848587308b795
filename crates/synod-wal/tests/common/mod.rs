//! Shared by the integration tests: a model of what was appended and acknowledged, the
//! check that a recovered log is consistent with it, and a seeded workload.

#![allow(dead_code)]

use bytes::Bytes;
use synod_core::Prng;
use synod_wal::{AppendError, Storage, SyncWal, WalConfig, WalEntry, WalOutput};

/// Every version the log went through since the last restart, and what was acknowledged.
#[derive(Clone, Debug)]
pub struct Model {
    /// `versions[i][s - 1]` is entry `s` of the log after the i-th change.
    versions: Vec<Vec<Bytes>>,
    /// The last `Durable` output: (the version it described, its sequence).
    ack: (usize, u64),
    /// Truncations: (the version they produced, their first removed sequence).
    truncations: Vec<(usize, u64)>,
    compaction_max: u64,
}

impl Model {
    pub fn new() -> Model {
        Model::from_log(Vec::new(), 0)
    }

    /// A model whose log is `log` (from sequence 1), durable up to `durable`.
    pub fn from_log(log: Vec<Bytes>, durable: u64) -> Model {
        Model {
            versions: vec![log],
            ack: (0, durable),
            truncations: Vec::new(),
            compaction_max: 0,
        }
    }

    pub fn truncations_count(&self) -> usize {
        self.truncations.len()
    }

    pub fn compaction_max(&self) -> u64 {
        self.compaction_max
    }

    pub fn current(&self) -> &Vec<Bytes> {
        self.versions.last().expect("a version")
    }

    pub fn append(&mut self, payload: Bytes) {
        let mut next = self.current().clone();
        next.push(payload);
        self.versions.push(next);
    }

    pub fn truncate(&mut self, from: u64) {
        let mut next = self.current().clone();
        next.truncate(from as usize - 1);
        self.versions.push(next);
        self.truncations.push((self.versions.len() - 1, from));
    }

    /// Entries below `below` may have been removed by compaction.
    pub fn compacted_below(mut self, below: u64) -> Model {
        self.compaction_max = self.compaction_max.max(below);
        self
    }

    pub fn compact(&mut self, below: u64) {
        self.compaction_max = self.compaction_max.max(below);
    }

    pub fn on_output(&mut self, output: &WalOutput) {
        if let WalOutput::Durable { up_to_sequence } = output {
            self.ack = (self.versions.len() - 1, *up_to_sequence);
        }
    }

    /// The acknowledged sequence, lowered by any truncation since the acknowledgement.
    pub fn acknowledged(&self) -> u64 {
        let (version, sequence) = self.ack;
        let after = self
            .truncations
            .iter()
            .filter(|(index, _)| *index > version);
        after.fold(sequence, |acked, (_, from)| acked.min(from - 1))
    }

    /// Checks a recovered log (`first` and its entries): it is a prefix of some version
    /// (nothing invented, nothing reordered), and it holds every acknowledged entry.
    /// Returns the full log it stands for (compacted entries taken from the model).
    pub fn check(&self, first: u64, entries: &[WalEntry]) -> Result<Vec<Bytes>, String> {
        for (index, entry) in entries.iter().enumerate() {
            if entry.sequence != first + index as u64 {
                return Err(format!("entry {index} has sequence {}", entry.sequence));
            }
        }
        let end = first + entries.len() as u64;
        if first > 1 && first > self.compaction_max {
            return Err(format!(
                "log starts at {first}, compaction asked for {}",
                self.compaction_max
            ));
        }
        let acknowledged = self.acknowledged();
        if end <= acknowledged {
            return Err(format!(
                "acknowledged up to {acknowledged}, recovered up to {}",
                end - 1
            ));
        }
        let acked_version = &self.versions[self.ack.0];
        for entry in entries
            .iter()
            .take_while(|entry| entry.sequence <= acknowledged)
        {
            if acked_version.get(entry.sequence as usize - 1) != Some(&entry.payload) {
                return Err(format!("acknowledged entry {} differs", entry.sequence));
            }
        }
        let matches = |version: &Vec<Bytes>| {
            entries
                .iter()
                .all(|entry| version.get(entry.sequence as usize - 1) == Some(&entry.payload))
        };
        let Some(version) = self.versions.iter().rev().find(|version| matches(version)) else {
            return Err(format!(
                "entries {first}..{end} are not a prefix of any appended log"
            ));
        };
        let mut log = version[..(first as usize - 1).min(version.len())].to_vec();
        log.extend(entries.iter().map(|entry| entry.payload.clone()));
        Ok(log)
    }
}

/// A payload of non-zero bytes, so that no 512-byte piece of it is ever all zeros.
pub fn payload(prng: &mut Prng, size_max: u64) -> Bytes {
    let size = 1 + prng.below(size_max) as usize;
    Bytes::from(
        (0..size)
            .map(|_| 1 + prng.below(255) as u8)
            .collect::<Vec<u8>>(),
    )
}

pub fn config() -> WalConfig {
    let mut config = WalConfig::small_for_tests();
    config.segment_size = 8 << 10;
    config.batch_size_max = 2 << 10;
    config.record_size_max = 700;
    config.read_size_max = 8 << 10;
    config
}

fn collect<S: Storage>(wal: &mut SyncWal<S>, model: &mut Model) -> bool {
    let mut failed = false;
    for output in wal.take_outputs() {
        failed |= matches!(output, WalOutput::Failed(_));
        model.on_output(&output);
    }
    !failed && wal.wal().failure().is_none()
}

/// Runs `steps` seeded steps of appends, partial IO, truncations, compactions and flushes.
/// Returns false once the log has failed.
pub fn run_workload<S: Storage>(
    wal: &mut SyncWal<S>,
    model: &mut Model,
    prng: &mut Prng,
    steps: usize,
) -> bool {
    for _ in 0..steps {
        match prng.below(12) {
            0..=5 => {
                for _ in 0..1 + prng.below(4) {
                    let data = payload(prng, 600);
                    match wal.append(data.clone()) {
                        Ok(_) => model.append(data),
                        Err(AppendError::PendingFull { .. }) => break,
                        Err(_) => return false,
                    }
                }
            }
            6..=7 => {
                for _ in 0..prng.below(6) {
                    wal.step_io();
                }
            }
            8 => {
                let first = wal.wal().first_sequence();
                let next = wal.wal().next_sequence();
                let from = first + prng.below(next - first + 1);
                if wal.truncate_suffix(from).is_ok() && from < next {
                    model.truncate(from);
                }
            }
            9 => {
                let below = wal.durable_sequence().saturating_sub(prng.below(8));
                wal.compact_prefix(below);
                model.compact(below);
            }
            _ => {
                let _ = wal.flush();
            }
        }
        if !collect(wal, model) {
            return false;
        }
    }
    let _ = wal.flush();
    collect(wal, model)
}

/// Opens the log in `storage` and checks it against the model; returns the log and the
/// model of its recovered state.
pub fn recover_and_check<S: Storage>(
    storage: S,
    model: &Model,
) -> Result<(SyncWal<S>, Model), String> {
    let (mut wal, _) = SyncWal::open(storage, config()).map_err(|e| e.to_string())?;
    let first = wal.wal().first_sequence();
    let next = wal.wal().next_sequence();
    let entries = if next > first {
        wal.read_range(first, next).map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let log = model.check(first, &entries)?;
    let acknowledged = model.acknowledged().min(log.len() as u64);
    let compacted = model.compaction_max.max(first);
    Ok((
        wal,
        Model::from_log(log, acknowledged).compacted_below(compacted),
    ))
}
