//! The raw limit of this disk for a write-ahead log: a loop of one 4 KiB write plus
//! fdatasync on a preallocated file. synod's WAL figures are measured against it, side by
//! side, in the same run.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};

/// Bytes per raw append: one 4 KiB page.
pub const RAW_WRITE_SIZE: usize = 4_096;

/// What the raw loop measured.
#[derive(Clone, Copy, Debug)]
pub struct RawFigures {
    pub appends_count: u64,
    pub appends_per_second: f64,
    pub latency_mean_micros: f64,
    pub latency_p99_micros: f64,
}

/// Writes `appends_count` 4 KiB pages in order into a file preallocated (and synced) in
/// `dir`, each followed by fdatasync, and times every append.
pub fn raw_fsync_loop(dir: &Path, appends_count: u64) -> Result<RawFigures> {
    let path = dir.join("raw-fsync-loop.dat");
    let file = preallocate(&path, appends_count)?;
    let page = vec![0xA5u8; RAW_WRITE_SIZE];
    let mut latencies = Vec::with_capacity(usize::try_from(appends_count).unwrap_or(0));
    let started = Instant::now();
    for index in 0..appends_count {
        let begun = Instant::now();
        file.write_all_at(&page, index * RAW_WRITE_SIZE as u64)
            .with_context(|| format!("raw loop: write to {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("raw loop: fdatasync {}", path.display()))?;
        latencies.push(begun.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    latencies.sort_by(f64::total_cmp);
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or(0.0);
    Ok(RawFigures {
        appends_count,
        appends_per_second: appends_count as f64 / elapsed.max(1e-9),
        latency_mean_micros: mean,
        latency_p99_micros: p99,
    })
}

/// Creates the file at its full size with real blocks (not a sparse hole), synced, so the
/// loop measures overwrites as a preallocated WAL segment would see them.
fn preallocate(path: &Path, appends_count: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    let total = appends_count * RAW_WRITE_SIZE as u64;
    let mut offset = 0;
    while offset < total {
        let length = (total - offset).min(chunk.len() as u64) as usize;
        file.write_all_at(&chunk[..length], offset)
            .with_context(|| format!("preallocate {}", path.display()))?;
        offset += length as u64;
    }
    file.sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    Ok(file)
}
