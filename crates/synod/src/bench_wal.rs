//! `synod bench wal`: the write-ahead log against the raw limit of the same disk, in one run.
//!
//! Writers are threads; each appends a 256-byte record and waits for its acknowledgement,
//! which arrives only after the fdatasync covering it. One log thread runs the WAL engine:
//! it takes every append waiting in its bounded queue, appends them, and flushes them as one
//! batch (one write, one fdatasync) — group commit — before acknowledging them all.
//! Each run starts on a log whose first segment already exists (preallocation is a one-time
//! cost per 64 MiB segment). The roll-over runs measure that cost: one writer of 4 KiB
//! records over small segments, with the spare segment prepared in the background and with
//! it turned off (every roll-over then creates and preallocates its segment on the commit
//! path).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use synod_wal::{CheckedStorage, FileStorage, SyncWal, WalConfig};

use crate::raw_disk::{RawFigures, raw_fsync_loop};

/// Bytes per record in the writer runs, as the workload specifies.
pub const RECORD_SIZE: usize = 256;
/// The most appends the log thread takes into one batch.
const BATCH_APPENDS_MAX: usize = 4_096;

type Request = (Bytes, SyncSender<u64>);

/// One writer-count run.
#[derive(Clone, Copy, Debug)]
pub struct WriterFigures {
    pub writers: usize,
    pub appends_count: u64,
    pub appends_per_second: f64,
    pub latency_mean_micros: f64,
    pub latency_p99_micros: f64,
    pub batches_count: u64,
}

/// Opens a fresh log and makes its first segment exist (preallocated and synced) with one
/// warm-up append, so the runs measure appends rather than the one-time segment creation.
fn open_warm(dir: &Path) -> Result<SyncWal<CheckedStorage<FileStorage>>> {
    let storage = FileStorage::open(dir).map_err(|e| anyhow!("{e}"))?;
    let (mut wal, _) = SyncWal::open(CheckedStorage::new(storage), WalConfig::default())
        .map_err(|e| anyhow!("open the log: {e}"))?;
    wal.append(Bytes::from_static(b"warm-up"))
        .map_err(|e| anyhow!("append: {e}"))?;
    wal.flush().map_err(|e| anyhow!("flush: {e}"))?;
    Ok(wal)
}

/// Runs the log thread: batches whatever is queued, flushes, acknowledges. Returns the
/// number of batches.
fn log_thread(dir: &Path, requests: Receiver<Request>, ready: SyncSender<()>) -> Result<u64> {
    let mut wal = open_warm(dir)?;
    ready.send(()).context("the benchmark stopped")?;
    let mut batches = 0;
    let mut waiting: Vec<(u64, SyncSender<u64>)> = Vec::with_capacity(BATCH_APPENDS_MAX);
    while let Ok(first) = requests.recv() {
        let mut next = Some(first);
        while let Some((payload, reply)) = next.take() {
            let sequence = wal.append(payload).map_err(|e| anyhow!("append: {e}"))?;
            waiting.push((sequence, reply));
            if waiting.len() < BATCH_APPENDS_MAX {
                next = requests.try_recv().ok();
            }
        }
        let durable = wal.flush().map_err(|e| anyhow!("flush: {e}"))?;
        batches += 1;
        for (sequence, reply) in waiting.drain(..) {
            assert!(
                sequence <= durable,
                "acknowledging {sequence} before it is durable"
            );
            // A writer that has gone away no longer needs its acknowledgement.
            let _ = reply.send(sequence);
        }
    }
    Ok(batches)
}

/// `writers` threads append `appends_per_writer` records each, one at a time.
pub fn writers_run(dir: &Path, writers: usize, appends_per_writer: u64) -> Result<WriterFigures> {
    let (sender, receiver) = sync_channel::<Request>(writers.max(1) * 2);
    let log_dir = dir.to_path_buf();
    let (ready_sender, ready) = sync_channel(1);
    let log = std::thread::spawn(move || log_thread(&log_dir, receiver, ready_sender));
    if ready.recv().is_err() {
        return match log.join() {
            Ok(Err(error)) => Err(error),
            _ => Err(anyhow!("the log thread stopped before it was ready")),
        };
    }
    let started = Instant::now();
    let mut handles = Vec::with_capacity(writers);
    for writer in 0..writers {
        let sender = sender.clone();
        handles.push(std::thread::spawn(move || -> Result<Vec<f64>> {
            let payload = Bytes::from(vec![writer as u8; RECORD_SIZE]);
            let mut latencies = Vec::with_capacity(appends_per_writer as usize);
            for _ in 0..appends_per_writer {
                let (reply, acknowledged) = sync_channel(1);
                let begun = Instant::now();
                sender
                    .send((payload.clone(), reply))
                    .context("the log thread stopped")?;
                acknowledged
                    .recv()
                    .context("the log thread stopped before acknowledging")?;
                latencies.push(begun.elapsed().as_secs_f64() * 1e6);
            }
            Ok(latencies)
        }));
    }
    drop(sender);
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.join().map_err(|_| anyhow!("a writer panicked"))??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let batches_count = log
        .join()
        .map_err(|_| anyhow!("the log thread panicked"))??;
    latencies.sort_by(f64::total_cmp);
    let appends_count = latencies.len() as u64;
    Ok(WriterFigures {
        writers,
        appends_count,
        appends_per_second: appends_count as f64 / elapsed.max(1e-9),
        latency_mean_micros: latencies.iter().sum::<f64>() / appends_count.max(1) as f64,
        latency_p99_micros: latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or(0.0),
        batches_count,
    })
}

/// `writers` closed-loop clients served by one thread: each has one append outstanding and
/// issues its next as soon as the previous is acknowledged, so every batch carries one
/// append per writer. This is how writers that are actors (or requests multiplexed over a
/// few connections) load the log, without the cost of waking one OS thread per writer.
pub fn clients_run(dir: &Path, writers: usize, appends_total: u64) -> Result<WriterFigures> {
    let mut wal = open_warm(dir)?;
    let payload = Bytes::from(vec![0x42u8; RECORD_SIZE]);
    let rounds = (appends_total / writers as u64).max(20);
    let mut latencies = Vec::with_capacity(rounds as usize);
    let started = Instant::now();
    for _ in 0..rounds {
        let begun = Instant::now();
        let mut last = 0;
        for _ in 0..writers {
            last = wal
                .append(payload.clone())
                .map_err(|e| anyhow!("append: {e}"))?;
        }
        let durable = wal.flush().map_err(|e| anyhow!("flush: {e}"))?;
        assert!(last <= durable, "acknowledging {last} before it is durable");
        latencies.push(begun.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let appends_count = rounds * writers as u64;
    Ok(WriterFigures {
        writers,
        appends_count,
        appends_per_second: appends_count as f64 / elapsed.max(1e-9),
        latency_mean_micros: latencies.iter().sum::<f64>() / rounds as f64,
        latency_p99_micros: latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or(0.0),
        batches_count: rounds,
    })
}

/// Segments of the roll-over runs: small, so a run rolls over several times.
const ROLL_SEGMENT_SIZE: u64 = 4 << 20;
/// The record payload of the roll-over runs.
const ROLL_RECORD_SIZE: usize = 4_096;

/// One roll-over run: latencies of single appends across segment roll-overs.
#[derive(Clone, Copy, Debug)]
pub struct RollFigures {
    pub spare_prepare_at_percent: u32,
    pub appends_count: u64,
    pub segments_count: u64,
    pub latency_mean_micros: f64,
    pub latency_p99_micros: f64,
    pub latency_p999_micros: f64,
    pub latency_max_micros: f64,
}

/// One writer appends `appends_count` 4 KiB records, each flushed alone, over 4 MiB
/// segments, with the spare prepared from `spare_prepare_at_percent` (0: no spare).
pub fn roll_run(
    dir: &Path,
    spare_prepare_at_percent: u32,
    appends_count: u64,
) -> Result<RollFigures> {
    let config = WalConfig {
        segment_size: ROLL_SEGMENT_SIZE,
        // A batch must fit a fresh segment with its header, and a record a batch.
        batch_size_max: 1 << 20,
        record_size_max: 64 << 10,
        spare_prepare_at_percent,
        ..WalConfig::default()
    };
    let storage = FileStorage::open(dir).map_err(|e| anyhow!("{e}"))?;
    let (mut wal, _) = SyncWal::open(CheckedStorage::new(storage), config)
        .map_err(|e| anyhow!("open the log: {e}"))?;
    let payload = Bytes::from(vec![0x17u8; ROLL_RECORD_SIZE]);
    let mut latencies = Vec::with_capacity(appends_count as usize);
    for _ in 0..appends_count {
        let begun = Instant::now();
        let sequence = wal
            .append(payload.clone())
            .map_err(|e| anyhow!("append: {e}"))?;
        let durable = wal.flush().map_err(|e| anyhow!("flush: {e}"))?;
        assert!(
            sequence <= durable,
            "acknowledging {sequence} before it is durable"
        );
        latencies.push(begun.elapsed().as_secs_f64() * 1e6);
    }
    let segments_count = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .count() as u64;
    latencies.sort_by(f64::total_cmp);
    let at = |per_mille: usize| {
        let index = (latencies.len() * per_mille / 1000).min(latencies.len() - 1);
        latencies[index]
    };
    Ok(RollFigures {
        spare_prepare_at_percent,
        appends_count,
        segments_count,
        latency_mean_micros: latencies.iter().sum::<f64>() / appends_count.max(1) as f64,
        latency_p99_micros: at(990),
        latency_p999_micros: at(999),
        latency_max_micros: latencies.last().copied().unwrap_or(0.0),
    })
}

/// Writes about `megabytes` of 4 KiB records, then times recovery (opening the log).
/// Returns (bytes of segment files read, seconds).
pub fn recovery_run(dir: &Path, megabytes: u64) -> Result<(u64, f64)> {
    {
        let storage = FileStorage::open(dir).map_err(|e| anyhow!("{e}"))?;
        let (mut wal, _) = SyncWal::open(storage, WalConfig::default())
            .map_err(|e| anyhow!("open the log: {e}"))?;
        let payload = Bytes::from(vec![0x5Au8; 4_096]);
        for round in 0..megabytes * 256 {
            wal.append(payload.clone())
                .map_err(|e| anyhow!("append: {e}"))?;
            if round % 1_024 == 1_023 {
                wal.flush().map_err(|e| anyhow!("flush: {e}"))?;
            }
        }
        wal.flush().map_err(|e| anyhow!("flush: {e}"))?;
    }
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".log") {
            bytes += entry.metadata()?.len();
        }
    }
    let started = Instant::now();
    let storage = FileStorage::open(dir).map_err(|e| anyhow!("{e}"))?;
    let (wal, report) = SyncWal::open(storage, WalConfig::default())
        .map_err(|e| anyhow!("recover the log: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if wal.wal().next_sequence() != megabytes * 256 + 1 {
        bail!(
            "recovery found {} entries, expected {}",
            wal.wal().next_sequence() - 1,
            megabytes * 256
        );
    }
    drop(report);
    Ok((bytes, seconds))
}

fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf> {
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// The whole comparison, printed as one JSON object.
pub fn run(base: &Path, appends_total: u64, recovery_megabytes: u64) -> Result<String> {
    std::fs::create_dir_all(base).with_context(|| format!("create {}", base.display()))?;
    let raw: RawFigures = raw_fsync_loop(&fresh_dir(base, "raw")?, appends_total.min(5_000))?;
    let mut runs = Vec::new();
    let mut threads = Vec::new();
    for writers in [1usize, 16, 64, 256] {
        let dir = fresh_dir(base, &format!("wal-{writers}"))?;
        let figures = clients_run(&dir, writers, appends_total)?;
        std::fs::remove_dir_all(&dir).ok();
        report_line("clients", &figures);
        runs.push(figures);
        let per_writer = (appends_total / writers as u64).max(20);
        let dir = fresh_dir(base, &format!("wal-threads-{writers}"))?;
        let figures = writers_run(&dir, writers, per_writer)?;
        std::fs::remove_dir_all(&dir).ok();
        report_line("threads", &figures);
        threads.push(figures);
    }
    let mut rolls = Vec::new();
    for spare_prepare_at_percent in [0, 50] {
        let dir = fresh_dir(base, &format!("wal-roll-{spare_prepare_at_percent}"))?;
        let figures = roll_run(&dir, spare_prepare_at_percent, (appends_total / 2).max(100))?;
        std::fs::remove_dir_all(&dir).ok();
        eprintln!(
            "roll    spare {:>2}%: {} segments, mean {:>8.1}us, p99 {:>8.1}us, p99.9 {:>8.1}us, \
             max {:>8.1}us",
            figures.spare_prepare_at_percent,
            figures.segments_count,
            figures.latency_mean_micros,
            figures.latency_p99_micros,
            figures.latency_p999_micros,
            figures.latency_max_micros
        );
        rolls.push(figures);
    }
    let recovery_dir = fresh_dir(base, "recovery")?;
    let (recovery_bytes, recovery_seconds) = recovery_run(&recovery_dir, recovery_megabytes)?;
    std::fs::remove_dir_all(&recovery_dir).ok();
    std::fs::remove_dir_all(base.join("raw")).ok();
    Ok(render_json(
        &raw,
        &runs,
        &threads,
        &rolls,
        recovery_bytes,
        recovery_seconds,
    ))
}

fn report_line(model: &str, figures: &WriterFigures) {
    eprintln!(
        "{model:<7} writers {:>3}: {:>10.0} appends/s, mean {:>8.1}us, p99 {:>8.1}us, {:.1}/batch",
        figures.writers,
        figures.appends_per_second,
        figures.latency_mean_micros,
        figures.latency_p99_micros,
        figures.appends_count as f64 / figures.batches_count.max(1) as f64
    );
}

fn runs_json(name: &str, runs: &[WriterFigures]) -> String {
    let mut text = format!("  \"{name}\": [\n");
    for (index, run) in runs.iter().enumerate() {
        let comma = if index + 1 < runs.len() { "," } else { "" };
        text.push_str(&format!(
            "    {{\"writers\": {}, \"appends\": {}, \"appends_per_second\": {:.0}, \
             \"latency_mean_us\": {:.1}, \"latency_p99_us\": {:.1}, \"batches\": {}, \
             \"appends_per_batch\": {:.1}}}{comma}\n",
            run.writers,
            run.appends_count,
            run.appends_per_second,
            run.latency_mean_micros,
            run.latency_p99_micros,
            run.batches_count,
            run.appends_count as f64 / run.batches_count.max(1) as f64
        ));
    }
    text.push_str("  ],\n");
    text
}

fn rolls_json(rolls: &[RollFigures]) -> String {
    let mut text = String::from("  \"wal_4k_segment_roll\": [\n");
    for (index, roll) in rolls.iter().enumerate() {
        let comma = if index + 1 < rolls.len() { "," } else { "" };
        text.push_str(&format!(
            "    {{\"spare_prepare_at_percent\": {}, \"segment_size\": {ROLL_SEGMENT_SIZE}, \
             \"appends\": {}, \"segments\": {}, \"latency_mean_us\": {:.1}, \
             \"latency_p99_us\": {:.1}, \"latency_p999_us\": {:.1}, \
             \"latency_max_us\": {:.1}}}{comma}\n",
            roll.spare_prepare_at_percent,
            roll.appends_count,
            roll.segments_count,
            roll.latency_mean_micros,
            roll.latency_p99_micros,
            roll.latency_p999_micros,
            roll.latency_max_micros
        ));
    }
    text.push_str("  ],\n");
    text
}

fn render_json(
    raw: &RawFigures,
    runs: &[WriterFigures],
    threads: &[WriterFigures],
    rolls: &[RollFigures],
    bytes: u64,
    seconds: f64,
) -> String {
    let one = runs.first().copied();
    let sixty_four = runs.iter().find(|run| run.writers == 64).copied();
    let mut text = String::from("{\n");
    text.push_str(&format!(
        "  \"raw_4k_write_fdatasync\": {{\"appends\": {}, \"appends_per_second\": {:.0}, \
         \"latency_mean_us\": {:.1}, \"latency_p99_us\": {:.1}}},\n",
        raw.appends_count, raw.appends_per_second, raw.latency_mean_micros, raw.latency_p99_micros
    ));
    text.push_str(&runs_json("wal_256b_clients", runs));
    text.push_str(&runs_json("wal_256b_threads", threads));
    text.push_str(&rolls_json(rolls));
    if let (Some(one), Some(sixty_four)) = (one, sixty_four) {
        text.push_str(&format!(
            "  \"one_writer_latency_vs_raw\": {:.2},\n  \
             \"sixty_four_writers_throughput_vs_raw\": {:.1},\n",
            one.latency_mean_micros / raw.latency_mean_micros.max(1e-9),
            sixty_four.appends_per_second / raw.appends_per_second.max(1e-9)
        ));
    }
    text.push_str(&format!(
        "  \"recovery\": {{\"bytes\": {bytes}, \"seconds\": {seconds:.3}, \
         \"megabytes_per_second\": {:.0}}}\n}}",
        bytes as f64 / 1e6 / seconds.max(1e-9)
    ));
    text
}
