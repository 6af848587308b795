//! Shared by the integration tests: a model of what was appended and acknowledged, the
//! check that a recovered log is consistent with it, and a seeded workload.

#![allow(dead_code)]

use bytes::Bytes;
use synod_core::Prng;
use synod_wal::{AppendError, Storage, SyncWal, WalConfig, WalEntry, WalOutput};

/// One state of the log: entry `base + i` is `entries[i]`. A reset starts a new epoch.
#[derive(Clone, Debug)]
struct Version {
    epoch: usize,
    base: u64,
    entries: Vec<Bytes>,
}

impl Version {
    fn get(&self, sequence: u64) -> Option<&Bytes> {
        let index = sequence.checked_sub(self.base)?;
        self.entries.get(usize::try_from(index).ok()?)
    }
}

/// The log a recovered one stands for, as [`Model::check`] found it.
#[derive(Clone, Debug)]
pub struct Matched {
    /// Its first sequence (before any compaction) and its entries from there.
    pub base: u64,
    pub log: Vec<Bytes>,
    /// Whether it is of the epoch of the last acknowledgement (no newer reset recovered).
    pub acknowledged_epoch: bool,
    /// The compaction point asked for in its epoch.
    pub compaction: u64,
}

/// Every version the log went through since the last restart, and what was acknowledged.
#[derive(Clone, Debug)]
pub struct Model {
    versions: Vec<Version>,
    /// The last `Durable` or `Reset` output: (the version it described, its sequence).
    ack: (usize, u64),
    /// Truncations: (the version they produced, their first removed sequence).
    truncations: Vec<(usize, u64)>,
    /// Per epoch, the highest compaction point asked for.
    compactions: Vec<u64>,
    resets_count: usize,
}

impl Model {
    pub fn new() -> Model {
        Model::from_log(1, Vec::new(), 0)
    }

    /// A model whose log is `log` from sequence `base`, durable up to `durable`.
    pub fn from_log(base: u64, log: Vec<Bytes>, durable: u64) -> Model {
        Model {
            versions: vec![Version {
                epoch: 0,
                base,
                entries: log,
            }],
            ack: (0, durable),
            truncations: Vec::new(),
            compactions: vec![0],
            resets_count: 0,
        }
    }

    pub fn truncations_count(&self) -> usize {
        self.truncations.len()
    }

    pub fn resets_count(&self) -> usize {
        self.resets_count
    }

    pub fn compaction_max(&self) -> u64 {
        self.compactions.iter().copied().max().unwrap_or(0)
    }

    fn current(&self) -> &Version {
        self.versions.last().expect("a version")
    }

    /// The sequence the next append gets.
    pub fn next_sequence(&self) -> u64 {
        self.current().base + self.current().entries.len() as u64
    }

    pub fn append(&mut self, payload: Bytes) {
        let mut next = self.current().clone();
        next.entries.push(payload);
        self.versions.push(next);
    }

    pub fn truncate(&mut self, from: u64) {
        let mut next = self.current().clone();
        next.entries.truncate((from - next.base) as usize);
        self.versions.push(next);
        self.truncations.push((self.versions.len() - 1, from));
    }

    /// The log was reset: empty, starting at `next_sequence`.
    pub fn reset(&mut self, next_sequence: u64) {
        let epoch = self.current().epoch + 1;
        self.versions.push(Version {
            epoch,
            base: next_sequence,
            entries: Vec::new(),
        });
        self.compactions.push(0);
        self.resets_count += 1;
    }

    /// Entries below `below` may have been removed by compaction.
    pub fn compacted_below(mut self, below: u64) -> Model {
        self.compact(below);
        self
    }

    pub fn compact(&mut self, below: u64) {
        let epoch = self.current().epoch;
        self.compactions[epoch] = self.compactions[epoch].max(below);
    }

    pub fn on_output(&mut self, output: &WalOutput) {
        let latest = self.versions.len() - 1;
        match output {
            WalOutput::Durable { up_to_sequence } => self.ack = (latest, *up_to_sequence),
            WalOutput::Reset { next_sequence } => {
                // A reset is reported only when no later one was asked for: it is the
                // current epoch's.
                assert_eq!(self.current().base, *next_sequence, "Reset of an old epoch");
                let epoch_start = (self.versions.iter())
                    .rposition(|version| version.epoch < self.current().epoch)
                    .map_or(0, |position| position + 1);
                self.ack = (epoch_start, next_sequence - 1);
            }
            WalOutput::Compacted { .. } | WalOutput::Failed(_) => {}
        }
    }

    /// The acknowledged sequence, lowered by any truncation since the acknowledgement.
    pub fn acknowledged(&self) -> u64 {
        let (version, sequence) = self.ack;
        let epoch = self.versions[version].epoch;
        let after = self
            .truncations
            .iter()
            .filter(|(index, _)| *index > version && self.versions[*index].epoch == epoch);
        after.fold(sequence, |acked, (_, from)| acked.min(from - 1))
    }

    /// Checks a recovered log (`first` and its entries): it is a prefix of some version
    /// not older than the acknowledged reset (nothing invented, nothing reordered, no mix
    /// of the logs before and after a reset), and it holds every acknowledged entry of its
    /// epoch. Returns the log it stands for: its base and entries (compacted entries taken
    /// from the model).
    pub fn check(&self, first: u64, entries: &[WalEntry]) -> Result<Matched, String> {
        for (index, entry) in entries.iter().enumerate() {
            if entry.sequence != first + index as u64 {
                return Err(format!("entry {index} has sequence {}", entry.sequence));
            }
        }
        let ack_epoch = self.versions[self.ack.0].epoch;
        let mut problem = format!(
            "entries {first}..{} are not a prefix of any log appended since the last \
             acknowledged reset",
            first + entries.len() as u64
        );
        for version in self.versions.iter().rev() {
            if version.epoch < ack_epoch {
                break;
            }
            match self.fits(version, first, entries) {
                Ok(()) => {
                    let kept = (first - version.base) as usize;
                    let mut log = version.entries[..kept.min(version.entries.len())].to_vec();
                    log.extend(entries.iter().map(|entry| entry.payload.clone()));
                    return Ok(Matched {
                        base: version.base,
                        log,
                        acknowledged_epoch: version.epoch == ack_epoch,
                        compaction: self.compactions[version.epoch],
                    });
                }
                Err(why) if version.epoch == ack_epoch => problem = why,
                Err(_) => {}
            }
        }
        Err(problem)
    }

    /// Whether the recovered log is a prefix of `version` holding what it must.
    fn fits(&self, version: &Version, first: u64, entries: &[WalEntry]) -> Result<(), String> {
        let version_end = version.base + version.entries.len() as u64;
        if first < version.base || first > version_end {
            return Err(format!(
                "log starts at {first}, outside {}..={version_end}",
                version.base
            ));
        }
        let compaction = self.compactions[version.epoch];
        if first > version.base && first > compaction {
            return Err(format!(
                "log starts at {first}, compaction asked for {compaction}"
            ));
        }
        if !entries
            .iter()
            .all(|entry| version.get(entry.sequence) == Some(&entry.payload))
        {
            return Err(format!(
                "entries {first}..{} are not a prefix of any appended log",
                first + entries.len() as u64
            ));
        }
        if version.epoch != self.versions[self.ack.0].epoch {
            return Ok(());
        }
        let end = first + entries.len() as u64;
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
            if acked_version.get(entry.sequence) != Some(&entry.payload) {
                return Err(format!("acknowledged entry {} differs", entry.sequence));
            }
        }
        Ok(())
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
                        Ok(sequence) => {
                            assert_eq!(sequence, model.next_sequence(), "append's sequence");
                            model.append(data);
                        }
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
            10 if prng.below(4) == 0 => reset(wal, model, prng),
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

/// Resets the log past its end, inside it, or anywhere below it (Raft installing a
/// snapshot that ends past the log or conflicts with it).
pub fn reset<S: Storage>(wal: &mut SyncWal<S>, model: &mut Model, prng: &mut Prng) {
    let first = wal.wal().first_sequence();
    let next = wal.wal().next_sequence();
    let next_sequence = match prng.below(3) {
        0 => next + prng.below(50),
        1 => first + prng.below(next - first + 1),
        _ => 1 + prng.below(next + 10),
    };
    if wal.reset(next_sequence).is_ok() {
        model.reset(next_sequence);
    }
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
    let matched = model.check(first, &entries)?;
    let (base, log) = (matched.base, matched.log);
    let end = base + log.len() as u64;
    if end != next {
        return Err(format!(
            "recovered {first}..{next}, which the model reads as {base}..{end} ({:?})",
            wal.wal().first_sequence()
        ));
    }
    // What was acknowledged stays so in the recovered log when it is of the acknowledged
    // epoch; a newer reset that was recovered acknowledged nothing yet.
    let acknowledged = match matched.acknowledged_epoch {
        true => model.acknowledged().min(end - 1),
        false => base - 1,
    };
    let compacted = first.max(matched.compaction);
    Ok((
        wal,
        Model::from_log(base, log, acknowledged).compacted_below(compacted),
    ))
}
