//! `synod bench kv`: the key-value state machine's memory per key, Put apply throughput, and
//! snapshot and restore time, printed as JSON.
//!
//! Memory is the growth of the process's resident set (from `/proc/self/statm`) while the
//! store is filled, divided by the number of keys: it includes the allocator's overhead and
//! the B-tree's slack, which is what a replica actually pays. Keys are `key:` and 16 hex
//! digits of a bijective mix of the key number, so they are distinct and arrive in no
//! particular order (as a real workload's would), and 20 bytes long.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use serde_json::json;
use synod_core::{LogIndex, Term};
use synod_kv::{ApplyContext, Command, KvConfig, KvStore, Operation, PutCondition, Response};

/// Fills a store with `keys` Puts of `value_size`-byte values and measures it.
pub fn run(keys: u64, value_size: usize) -> Result<String> {
    if keys == 0 {
        bail!("--keys must be at least 1");
    }
    let config = KvConfig::default();
    if value_size > config.value_size_max {
        bail!(
            "--value-size must be at most value_size_max ({})",
            config.value_size_max
        );
    }
    let rss_bytes_before = rss_bytes()?;
    let mut store = KvStore::new(config.clone()).map_err(|error| anyhow::anyhow!("{error}"))?;
    let mut apply_seconds = 0.0;
    let fill_started = Instant::now();
    for number in 0..keys {
        let payload = put_payload(number, value_size);
        let ctx = ApplyContext {
            index: LogIndex(number + 1),
            term: Term(1),
            time_ns: number * 1_000,
        };
        let started = Instant::now();
        let response = store.apply(ctx, &payload);
        apply_seconds += started.elapsed().as_secs_f64();
        if !matches!(response, Response::Put { written: true, .. }) {
            bail!("put {number} was not applied: {response:?}");
        }
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let rss_bytes_after = rss_bytes()?;
    if store.len() != keys {
        bail!("the store holds {} keys, not {keys}", store.len());
    }
    let started = Instant::now();
    let snapshot = store.snapshot();
    let snapshot_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let restored = KvStore::restore(config, &snapshot).context("restore the snapshot")?;
    let restore_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let digest = store.digest();
    let digest_seconds = started.elapsed().as_secs_f64();
    if restored.digest() != digest {
        bail!("the restored store's digest differs from the original's");
    }
    let grown = rss_bytes_after.saturating_sub(rss_bytes_before);
    let report = json!({
        "keys": keys,
        "value_size": value_size,
        "key_size": key(0).len(),
        "rss_bytes_before": rss_bytes_before,
        "rss_bytes_after": rss_bytes_after,
        "bytes_per_key": (grown as f64 / keys as f64).round(),
        "applies_per_second": (keys as f64 / apply_seconds.max(1e-9)).round(),
        "fill_seconds_with_encoding": round3(fill_seconds),
        "snapshot_bytes": snapshot.len(),
        "snapshot_seconds": round3(snapshot_seconds),
        "restore_seconds": round3(restore_seconds),
        "digest_seconds": round3(digest_seconds),
    });
    Ok(serde_json::to_string_pretty(&report)?)
}

fn round3(seconds: f64) -> f64 {
    (seconds * 1_000.0).round() / 1_000.0
}

/// A bijective 64-bit mix (the SplitMix64 finalizer), so distinct numbers give distinct keys.
fn mix(mut number: u64) -> u64 {
    number = (number ^ (number >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    number = (number ^ (number >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    number ^ (number >> 31)
}

fn key(number: u64) -> String {
    format!("key:{:016x}", mix(number))
}

/// The encoded Put of key `number`, as a client would propose it.
fn put_payload(number: u64, value_size: usize) -> Vec<u8> {
    let fill = b'a' + (number % 26) as u8;
    let command = Command {
        session: None,
        op: Operation::Put {
            key: Bytes::from(key(number)),
            value: Bytes::from(vec![fill; value_size]),
            condition: PutCondition::Always,
            return_previous: false,
        },
    };
    command.encode()
}

/// The process's resident set size: pages from `/proc/self/statm` times the page size.
fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("read /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("/proc/self/statm has no resident field")?
        .parse()
        .context("parse the resident pages in /proc/self/statm")?;
    Ok(pages * page_size()?)
}

/// The page size from the auxiliary vector (`AT_PAGESZ`), which std does not expose.
fn page_size() -> Result<u64> {
    const AT_PAGESZ: u64 = 6;
    let auxv = std::fs::read("/proc/self/auxv").context("read /proc/self/auxv")?;
    let words: Vec<u64> = auxv
        .chunks_exact(8)
        .map(|chunk| u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")))
        .collect();
    words
        .chunks_exact(2)
        .find(|pair| pair[0] == AT_PAGESZ)
        .map(|pair| pair[1])
        .context("/proc/self/auxv has no AT_PAGESZ entry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_the_page_size_is_found() {
        // Checks the key generator gives distinct fixed-length keys and that the RSS
        // reading works on this machine.
        let keys: std::collections::BTreeSet<String> = (0..10_000).map(key).collect();
        assert_eq!(keys.len(), 10_000);
        assert!(keys.iter().all(|key| key.len() == 20));
        assert!(page_size().unwrap().is_power_of_two());
        assert!(rss_bytes().unwrap() > 0);
    }
}
