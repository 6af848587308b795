//! The run's report (Markdown): operations, faults with their times, availability around
//! each fault, the longest stretch without a successful write, and the checker's verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use synod_check::{Report, Verdict};

use super::faults::{Fault, FaultKind};
use super::workload::Event;

/// How long after a fault heals its recovery window lasts.
const RECOVERY_WINDOW_NANOS: u64 = 3_000_000_000;

/// One fault as it happened, in nanoseconds since the run's origin.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub fault: Fault,
    pub start: u64,
    pub end: u64,
}

/// Everything the report says.
#[derive(Debug)]
pub struct RunSummary<'a> {
    pub command: String,
    pub seed: u64,
    pub nodes: u64,
    pub clients: u64,
    pub keys: u64,
    pub events: &'a [Event],
    pub faults: &'a [FaultRecord],
    /// Nodes that exited without being killed by the harness: (id, time, status).
    pub crashes: &'a [(u64, u64, String)],
    pub workload_end: u64,
    pub check: &'a Report,
    pub check_seconds: f64,
    pub history_path: String,
}

impl RunSummary<'_> {
    pub fn lost_writes_count(&self) -> usize {
        self.check
            .lost_writes
            .as_ref()
            .map_or(0, |lost| lost.lost.len())
    }

    /// Whether the run passed: a valid verdict, nothing lost, no node crashed.
    pub fn passed(&self) -> bool {
        self.check.verdict == Verdict::Valid
            && self.lost_writes_count() == 0
            && self.crashes.is_empty()
    }

    pub fn fault_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for kind in [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition] {
            counts.insert(kind.name(), 0);
        }
        for record in self.faults {
            *counts.entry(record.fault.kind().name()).or_insert(0) += 1;
        }
        counts
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Completions as (time, kind, function).
fn completions<'a>(events: &'a [Event]) -> impl Iterator<Item = &'a Event> + 'a {
    events.iter().filter(|event| event.kind != "invoke")
}

/// The fraction of reads and writes completed in `[start, end)` that succeeded, and their
/// count. Compare-and-sets are left out: a refused compare is a `fail` that the cluster
/// answered, so it says nothing about availability.
fn availability(events: &[Event], start: u64, end: u64) -> (f64, usize) {
    let mut ok = 0usize;
    let mut total = 0usize;
    let in_window =
        |event: &&Event| event.time >= start && event.time < end && event.function != "cas";
    for event in completions(events).filter(in_window) {
        total += 1;
        if event.kind == "ok" {
            ok += 1;
        }
    }
    let fraction = if total == 0 {
        0.0
    } else {
        ok as f64 / total as f64
    };
    (fraction, total)
}

/// The longest interval in `[0, end]` with no successful write or cas: (start, length).
fn longest_write_gap(events: &[Event], end: u64) -> (u64, u64) {
    let mut previous = 0u64;
    let mut longest = (0u64, 0u64);
    let writes = completions(events)
        .filter(|event| event.kind == "ok" && event.function != "read")
        .map(|event| event.time)
        .chain(std::iter::once(end));
    for time in writes {
        let time = time.min(end);
        if time.saturating_sub(previous) > longest.1 {
            longest = (previous, time - previous);
        }
        previous = previous.max(time);
    }
    longest
}

fn operation_counts(events: &[Event]) -> BTreeMap<(&'static str, &'static str), usize> {
    let mut counts = BTreeMap::new();
    for event in completions(events) {
        *counts.entry((event.function, event.kind)).or_insert(0) += 1;
    }
    counts
}

/// The report as Markdown.
pub fn markdown(summary: &RunSummary<'_>) -> String {
    let mut text = String::new();
    let _ = write_header(&mut text, summary);
    let _ = write_operations(&mut text, summary);
    let _ = write_faults(&mut text, summary);
    let _ = write_verdict(&mut text, summary);
    text
}

fn write_header(text: &mut String, summary: &RunSummary<'_>) -> std::fmt::Result {
    let outcome = if summary.passed() { "PASS" } else { "FAIL" };
    writeln!(text, "# synod nemesis: {outcome}\n")?;
    writeln!(text, "- command: `{}`", summary.command)?;
    writeln!(
        text,
        "- seed: {} (rerun with `--seed {}`)",
        summary.seed, summary.seed
    )?;
    writeln!(
        text,
        "- cluster: {} nodes, {} clients, {} keys, workload {:.1} s",
        summary.nodes,
        summary.clients,
        summary.keys,
        seconds(summary.workload_end)
    )?;
    writeln!(text, "- history: {}", summary.history_path)?;
    let counts = summary.fault_counts();
    let listed: Vec<String> = counts
        .iter()
        .map(|(kind, count)| format!("{kind}={count}"))
        .collect();
    writeln!(text, "- faults: {}", listed.join(" "))?;
    writeln!(text, "- verdict: {}", summary.check.verdict.name())?;
    writeln!(
        text,
        "- lost acknowledged writes: {}",
        summary.lost_writes_count()
    )?;
    writeln!(
        text,
        "- nodes that crashed on their own: {}",
        summary.crashes.len()
    )?;
    for (node, time, status) in summary.crashes {
        writeln!(text, "  - node {node} at {:.2} s: {status}", seconds(*time))?;
    }
    Ok(())
}

fn write_operations(text: &mut String, summary: &RunSummary<'_>) -> std::fmt::Result {
    writeln!(text, "\n## Operations\n")?;
    writeln!(text, "| function | ok | fail | info |")?;
    writeln!(text, "|---|---:|---:|---:|")?;
    let counts = operation_counts(summary.events);
    let mut total = 0usize;
    for function in ["read", "write", "cas"] {
        let count = |kind| counts.get(&(function, kind)).copied().unwrap_or(0);
        total += count("ok") + count("fail") + count("info");
        writeln!(
            text,
            "| {function} | {} | {} | {} |",
            count("ok"),
            count("fail"),
            count("info")
        )?;
    }
    writeln!(text, "\noperations: {total}")?;
    let (start, length) = longest_write_gap(summary.events, summary.workload_end);
    writeln!(
        text,
        "longest stretch with no successful write: {:.2} s (from {:.2} s)",
        seconds(length),
        seconds(start)
    )?;
    Ok(())
}

fn write_faults(text: &mut String, summary: &RunSummary<'_>) -> std::fmt::Result {
    writeln!(text, "\n## Faults\n")?;
    writeln!(
        text,
        "Availability is the fraction of reads and writes completed in the window that \
         succeeded (during: from injection to heal; after: the {} s after the heal).\n",
        RECOVERY_WINDOW_NANOS / 1_000_000_000
    )?;
    writeln!(text, "| # | start s | end s | fault | during | after |")?;
    writeln!(text, "|---:|---:|---:|---|---:|---:|")?;
    for (index, record) in summary.faults.iter().enumerate() {
        let (during, during_count) = availability(summary.events, record.start, record.end);
        let after_end = record.end + RECOVERY_WINDOW_NANOS;
        let (after, after_count) = availability(summary.events, record.end, after_end);
        writeln!(
            text,
            "| {} | {:.2} | {:.2} | {} | {:.0}% of {during_count} | {:.0}% of {after_count} |",
            index + 1,
            seconds(record.start),
            seconds(record.end),
            record.fault,
            during * 100.0,
            after * 100.0
        )?;
    }
    Ok(())
}

fn write_verdict(text: &mut String, summary: &RunSummary<'_>) -> std::fmt::Result {
    let check = summary.check;
    writeln!(text, "\n## Checker\n")?;
    writeln!(
        text,
        "verdict: {} ({} operations on {} keys, checked in {:.1} s)",
        check.verdict.name(),
        check.operations,
        check.keys,
        summary.check_seconds
    )?;
    if let Some(model) = &check.linearizable {
        writeln!(
            text,
            "- linearizable: {} ({} keys valid, {} violations, {} unknown)",
            model.verdict.name(),
            model.keys_valid,
            model.violations.len(),
            model.unknown.len()
        )?;
    }
    if let Some(model) = &check.sequential {
        writeln!(text, "- sequential: {}", model.verdict.name())?;
    }
    if let Some(model) = &check.session {
        writeln!(text, "- session guarantees: {}", model.verdict.name())?;
    }
    if let Some(model) = &check.lost_writes {
        writeln!(
            text,
            "- lost writes: {} ({} keys checked, {} without a final read)",
            model.verdict.name(),
            model.keys_checked,
            model.keys_without_final_read
        )?;
        for lost in model.lost.iter().take(10) {
            writeln!(text, "  - {}: {}", lost.key, lost.explanation)?;
        }
    }
    if check.verdict != Verdict::Valid {
        writeln!(
            text,
            "\nRun `synod check {}` for the full explanation and an HTML timeline.",
            summary.history_path
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn event(kind: &'static str, function: &'static str, time: u64) -> Event {
        Event {
            process: 0,
            kind,
            function,
            key: 0,
            value: Json::Null,
            time,
        }
    }

    #[test]
    fn longest_write_gap_spans_the_idle_stretch() {
        // Checks that the gap counts ok writes and cas only, and includes the run's end.
        let events = [
            event("ok", "write", 10),
            event("ok", "read", 50),
            event("info", "write", 60),
            event("ok", "cas", 30),
        ];
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|event| event.time);
        assert_eq!(longest_write_gap(&sorted, 100), (30, 70));
        assert_eq!(longest_write_gap(&[], 100), (0, 100));
    }

    #[test]
    fn availability_counts_completions_in_the_window() {
        // Checks that invokes are ignored and the window is half-open.
        let events = [
            event("invoke", "read", 5),
            event("ok", "read", 10),
            event("fail", "write", 15),
            event("ok", "write", 20),
        ];
        let (fraction, count) = availability(&events, 10, 20);
        assert_eq!(count, 2);
        assert!((fraction - 0.5).abs() < 1e-9);
    }
}
