//! The run's report: operations, faults with their times, availability, latency and
//! recovery around each fault, the recovery figures against their targets, and the
//! checker's verdict, as Markdown (`markdown`) and as a self-contained HTML page with a
//! timeline (`html.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use synod_check::{Report, Verdict};

use super::schedule::{Fault, Kind};
use super::timeline::{self, Completed};
use super::workload::Event;

/// How long after a fault heals its recovery window lasts.
const RECOVERY_WINDOW_NANOS: u64 = 3_000_000_000;
/// The targets: a new leader serves writes within this many election timeouts of a leader
/// kill, and writes succeed within this many of a partition's heal.
pub const LEADER_KILL_TARGET_TIMEOUTS: u64 = 2;
pub const PARTITION_HEAL_TARGET_TIMEOUTS: u64 = 3;

/// One fault as it happened, in nanoseconds since the run's origin.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub fault: Fault,
    pub start: u64,
    pub end: u64,
    /// What the harness saw while injecting and healing it (refusals, disk errors, ...).
    pub note: String,
    /// Why the cluster had not settled when the fault started alone, if it had not (its
    /// recovery then measures the earlier fault's tail too, and is left out of the figure).
    pub unsettled: Option<String>,
}

/// Everything the report says.
#[derive(Debug)]
pub struct RunSummary<'a> {
    pub command: String,
    pub seed: u64,
    /// Voters at the start, and every node the harness ran (the voters and a spare).
    pub nodes: u64,
    pub nodes_total: u64,
    pub clients: u64,
    pub keys: u64,
    pub kinds: Vec<Kind>,
    /// Why selected kinds were left out on this machine.
    pub skipped: &'a [String],
    /// The chance that a fault starts while another is in force.
    pub overlap: f64,
    pub election_timeout_ms: u64,
    pub drift_bound_ppm: u64,
    pub events: &'a [Event],
    pub faults: &'a [FaultRecord],
    /// Nodes that exited without being killed by the harness: (id, time, status).
    pub crashes: &'a [(u64, u64, String)],
    pub workload_end: u64,
    pub check: &'a Report,
    pub check_seconds: f64,
    pub history_path: String,
}

/// The figures of one fault.
#[derive(Debug, Clone, Copy)]
pub struct FaultFigures {
    /// Availability during the fault and after its heal: (fraction, operations).
    pub during: (f64, usize),
    pub after: (f64, usize),
    /// p99 latency of the operations completed during the fault.
    pub p99_during_nanos: u64,
    /// For a leader kill (from its start) or a partition (from its heal): how long until a
    /// write invoked after that moment succeeded; `Some(None)`: never within the run.
    pub recovery_nanos: Option<Option<u64>>,
    /// Another fault was in force at some moment of this one.
    pub overlapped: bool,
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
        for kind in &self.kinds {
            counts.insert(kind.name(), 0);
        }
        for record in self.faults {
            *counts.entry(record.fault.kind().name()).or_insert(0) += 1;
        }
        counts
    }
}

pub fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Completions as (time, kind, function).
fn completions<'a>(events: &'a [Event]) -> impl Iterator<Item = &'a Event> + 'a {
    events.iter().filter(|event| event.kind != "invoke")
}

/// The fraction of reads and writes completed in `[start, end)` that succeeded, and their
/// count. Compare-and-sets are left out: a refused compare is a `fail` that the cluster
/// answered, so it says nothing about availability.
pub fn availability(events: &[Event], start: u64, end: u64) -> (f64, usize) {
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

/// Whether `record` shares a moment with another fault of the run.
fn overlapped(faults: &[FaultRecord], index: usize) -> bool {
    let record = &faults[index];
    faults.iter().enumerate().any(|(other, fault)| {
        other != index && fault.start <= record.end && record.start <= fault.end
    })
}

/// The figures of every fault, in the order of `summary.faults`.
pub fn fault_figures(summary: &RunSummary<'_>, completed: &[Completed]) -> Vec<FaultFigures> {
    let faults = summary.faults;
    (0..faults.len())
        .map(|index| {
            let record = &faults[index];
            let recovery_from = if record.fault.is_leader_kill() {
                Some(record.start)
            } else if record.fault.is_partition() {
                Some(record.end)
            } else {
                None
            };
            FaultFigures {
                during: availability(summary.events, record.start, record.end),
                after: availability(
                    summary.events,
                    record.end,
                    record.end + RECOVERY_WINDOW_NANOS,
                ),
                p99_during_nanos: timeline::window_p99(completed, record.start, record.end).0,
                recovery_nanos: recovery_from.map(|from| timeline::write_recovery(completed, from)),
                overlapped: overlapped(faults, index),
            }
        })
        .collect()
}

/// The report as Markdown.
pub fn markdown(summary: &RunSummary<'_>) -> String {
    let completed = timeline::completed(summary.events);
    let figures = fault_figures(summary, &completed);
    let mut text = String::new();
    let _ = write_header(&mut text, summary);
    let _ = write_operations(&mut text, summary);
    let _ = write_recovery(&mut text, summary, &figures);
    let _ = write_faults(&mut text, summary, &figures);
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
    let spare = match summary.nodes_total > summary.nodes {
        true => format!(" (and {} spare)", summary.nodes_total - summary.nodes),
        false => String::new(),
    };
    writeln!(
        text,
        "- cluster: {} voters{spare}, {} clients, {} keys, workload {:.1} s, election \
         timeout {} ms, lease drift bound {} ppm",
        summary.nodes,
        summary.clients,
        summary.keys,
        seconds(summary.workload_end),
        summary.election_timeout_ms,
        summary.drift_bound_ppm
    )?;
    writeln!(text, "- history: {}", summary.history_path)?;
    let counts = summary.fault_counts();
    let listed: Vec<String> = counts
        .iter()
        .map(|(kind, count)| format!("{kind}={count}"))
        .collect();
    writeln!(text, "- faults: {}", listed.join(" "))?;
    let overlapping = (0..summary.faults.len())
        .filter(|&index| overlapped(summary.faults, index))
        .count();
    writeln!(
        text,
        "- overlap: chance {:.2}; {overlapping} faults shared time with another",
        summary.overlap
    )?;
    for skipped in summary.skipped {
        writeln!(text, "- {skipped}")?;
    }
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

/// The recoveries of the faults a recovery figure measures.
#[derive(Debug, Default)]
struct Recoveries {
    /// Of the faults alone on a settled cluster that recovered, in nanoseconds.
    times: Vec<u64>,
    /// Faults alone on a settled cluster.
    alone: usize,
    /// Whether one of those never recovered before the run ended.
    never: bool,
    /// Left out: they overlapped another fault, or started before the cluster settled.
    overlapping: usize,
    unsettled: usize,
}

/// The recoveries of the faults `select` picks.
fn recoveries(
    summary: &RunSummary<'_>,
    figures: &[FaultFigures],
    select: fn(&Fault) -> bool,
) -> Recoveries {
    let mut found = Recoveries::default();
    for (record, figure) in summary.faults.iter().zip(figures) {
        if !select(&record.fault) {
            continue;
        }
        if figure.overlapped {
            found.overlapping += 1;
            continue;
        }
        if record.unsettled.is_some() {
            found.unsettled += 1;
            continue;
        }
        found.alone += 1;
        match figure.recovery_nanos.flatten() {
            Some(nanos) => found.times.push(nanos),
            None => found.never = true,
        }
    }
    found.times.sort_unstable();
    found
}

/// A recovery figure: its name, the faults it measures, its target in election timeouts,
/// and what the faults are called.
type RecoveryRow = (&'static str, fn(&Fault) -> bool, u64, &'static str);

/// The two recovery figures against their targets.
pub fn recovery_lines(summary: &RunSummary<'_>, figures: &[FaultFigures]) -> Vec<String> {
    let timeout = summary.election_timeout_ms;
    let rows: [RecoveryRow; 2] = [
        (
            "longest unavailability after a leader kill",
            Fault::is_leader_kill,
            LEADER_KILL_TARGET_TIMEOUTS,
            "leader kills",
        ),
        (
            "time to recover after a partition heals (longest)",
            Fault::is_partition,
            PARTITION_HEAL_TARGET_TIMEOUTS,
            "partitions",
        ),
    ];
    let mut lines = Vec::new();
    for (name, select, timeouts, plural) in rows {
        let found = recoveries(summary, figures, select);
        let target_nanos = timeouts * timeout * 1_000_000;
        let left_out = format!(
            "{} overlapped another fault and {} started before the cluster settled are left out",
            found.overlapping, found.unsettled
        );
        let alone = found.alone;
        let figure = match (found.times.last(), found.never) {
            (_, true) => format!(
                "writes did not succeed again before the run ended ({alone} {plural} alone; \
                 {left_out})"
            ),
            (None, false) => format!("none ran alone ({left_out})"),
            (Some(&longest), false) => {
                let met = if longest <= target_nanos {
                    "met"
                } else {
                    "missed"
                };
                let within = found.times.iter().filter(|&&nanos| nanos <= target_nanos);
                format!(
                    "{:.3} s over {alone} {plural} alone (median {:.3} s, {} within the target; \
                     {left_out}); target {timeouts} election timeouts = {:.3} s: {met}",
                    seconds(longest),
                    seconds(found.times[found.times.len() / 2]),
                    within.count(),
                    (timeouts * timeout) as f64 / 1e3
                )
            }
        };
        lines.push(format!("{name}: {figure}"));
    }
    lines
}

/// The fault table's mark: * overlapped another fault, ~ started before the cluster
/// settled.
pub fn fault_mark(record: &FaultRecord, figure: &FaultFigures) -> &'static str {
    match (figure.overlapped, &record.unsettled) {
        (true, _) => "*",
        (false, Some(_)) => "~",
        (false, None) => "",
    }
}

/// A fault's note, with why the cluster had not settled when it started, if it had not.
pub fn fault_note(record: &FaultRecord) -> String {
    match (&record.unsettled, record.note.is_empty()) {
        (None, _) => record.note.clone(),
        (Some(reason), true) => format!("started unsettled: {reason}"),
        (Some(reason), false) => format!("started unsettled: {reason}; {}", record.note),
    }
}

fn write_recovery(
    text: &mut String,
    summary: &RunSummary<'_>,
    figures: &[FaultFigures],
) -> std::fmt::Result {
    writeln!(text, "\n## Recovery\n")?;
    writeln!(
        text,
        "Measured from a leader kill, or from a partition's heal, to the completion of the \
         first write invoked after it that succeeded (client backoff included: a client \
         waits at most {} ms between attempts). Election timeout: {} ms.\n",
        super::workload::BACKOFF_MAX.as_millis(),
        summary.election_timeout_ms
    )?;
    for line in recovery_lines(summary, figures) {
        writeln!(text, "- {line}")?;
    }
    Ok(())
}

fn millis(nanos: u64) -> String {
    format!("{:.0}", nanos as f64 / 1e6)
}

/// An availability cell: the percentage of how many operations, or `-` for none.
pub fn availability_cell((fraction, count): (f64, usize)) -> String {
    match count {
        0 => "-".into(),
        _ => format!("{:.0}% of {count}", fraction * 100.0),
    }
}

/// A fault's p99 latency cell, `-` when no operation completed during it.
pub fn p99_cell(figure: &FaultFigures) -> String {
    match figure.during.1 {
        0 => "-".into(),
        _ => millis(figure.p99_during_nanos),
    }
}

/// A fault's recovery cell: the time, `never`, or empty when it does not apply.
pub fn recovery_cell(figure: &FaultFigures) -> String {
    match figure.recovery_nanos {
        None => String::new(),
        Some(None) => "never".into(),
        Some(Some(nanos)) => format!("{} ms", millis(nanos)),
    }
}

fn write_faults(
    text: &mut String,
    summary: &RunSummary<'_>,
    figures: &[FaultFigures],
) -> std::fmt::Result {
    writeln!(text, "\n## Faults\n")?;
    writeln!(
        text,
        "Availability is the fraction of reads and writes completed in the window that \
         succeeded (during: from injection to heal; after: the {} s after the heal); p99 is \
         the latency of every operation completed during the fault; recovery is for leader \
         kills and partitions (see above); * marks a fault that overlapped another, ~ one \
         that started alone before the cluster had settled from the last (the harness waits \
         up to {} s for every node to be healthy and every voter caught up).\n",
        RECOVERY_WINDOW_NANOS / 1_000_000_000,
        super::injector::SETTLE_TIMEOUT.as_secs()
    )?;
    writeln!(
        text,
        "| # | start s | end s | fault | during | after | p99 ms | recovery | note |"
    )?;
    writeln!(text, "|---:|---:|---:|---|---:|---:|---:|---:|---|")?;
    for (index, (record, figure)) in summary.faults.iter().zip(figures).enumerate() {
        writeln!(
            text,
            "| {}{} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
            index + 1,
            fault_mark(record, figure),
            seconds(record.start),
            seconds(record.end),
            record.fault,
            availability_cell(figure.during),
            availability_cell(figure.after),
            p99_cell(figure),
            recovery_cell(figure),
            fault_note(record).replace('|', "/")
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

    fn summary_of<'a>(
        events: &'a [Event],
        faults: &'a [FaultRecord],
        check: &'a Report,
    ) -> RunSummary<'a> {
        RunSummary {
            command: "synod nemesis".into(),
            seed: 1,
            nodes: 3,
            nodes_total: 4,
            clients: 1,
            keys: 1,
            kinds: vec![Kind::Kill, Kind::Partition, Kind::Clock],
            skipped: &[],
            overlap: 0.25,
            election_timeout_ms: 300,
            drift_bound_ppm: 10_000,
            events,
            faults,
            crashes: &[],
            workload_end: 8_000_000_000,
            check,
            check_seconds: 0.0,
            history_path: "history.jsonl".into(),
        }
    }

    fn record(fault: Fault, start_ms: u64, end_ms: u64) -> FaultRecord {
        FaultRecord {
            fault,
            start: start_ms * 1_000_000,
            end: end_ms * 1_000_000,
            note: String::new(),
            unsettled: None,
        }
    }

    fn timed(process: u64, kind: &'static str, function: &'static str, ms: u64) -> Event {
        Event {
            process,
            time: ms * 1_000_000,
            ..event(kind, function, 0)
        }
    }

    #[test]
    fn recovery_figures_count_faults_alone_against_their_targets() {
        // Checks the two recovery lines: a leader kill recovered in 500 ms (target 600 ms:
        // met), a partition 200 ms after its heal (target 900 ms: met), a partition that
        // overlapped a clock fault and a kill that started before the cluster settled (it
        // never recovered) left out of the figures; and that the HTML page draws its three
        // charts and the Markdown marks the unsettled kill.
        use super::super::faults::Fault as Basic;
        let partition = || {
            Fault::Basic(Basic::Partition {
                shape: super::super::faults::PartitionShape::Isolate,
                links: vec![(1, 2), (2, 1)],
                reset: false,
                flapping: false,
                description: "isolate node 1".into(),
                leader: Some(1),
            })
        };
        let clock = Fault::Clock(super::super::schedule::ClockFault {
            node: 3,
            leader: false,
            drift_ppm: 5,
            offset_ms: 0,
            beyond_bound: false,
        });
        let faults = [
            record(
                Fault::Basic(Basic::Kill {
                    node: 1,
                    leader: true,
                }),
                1_000,
                2_000,
            ),
            record(partition(), 3_000, 4_000),
            record(partition(), 5_000, 6_000),
            record(clock, 5_500, 7_000),
            FaultRecord {
                unsettled: Some("voter 2 is 900 entries behind the leader".into()),
                ..record(
                    Fault::Basic(Basic::Kill {
                        node: 3,
                        leader: true,
                    }),
                    8_000,
                    9_000,
                )
            },
        ];
        let events = [
            timed(1, "invoke", "write", 1_100),
            timed(1, "ok", "write", 1_500),
            timed(1, "invoke", "write", 4_000),
            timed(1, "ok", "write", 4_200),
        ];
        let check = Report {
            verdict: Verdict::Valid,
            operations: 2,
            keys: 1,
            truncated_line: None,
            linearizable: None,
            sequential: None,
            session: None,
            lost_writes: None,
        };
        let summary = summary_of(&events, &faults, &check);
        let completed = timeline::completed(&events);
        let figures = fault_figures(&summary, &completed);
        let overlapped: Vec<bool> = figures.iter().map(|figure| figure.overlapped).collect();
        assert_eq!(overlapped, [false, false, true, true, false]);
        assert_eq!(figures[2].recovery_nanos, Some(None));
        assert_eq!(figures[3].recovery_nanos, None);
        assert_eq!(
            recovery_lines(&summary, &figures),
            [
                "longest unavailability after a leader kill: 0.500 s over 1 leader kills alone \
                 (median 0.500 s, 1 within the target; 0 overlapped another fault and 1 started \
                 before the cluster settled are left out); target 2 election timeouts = 0.600 \
                 s: met",
                "time to recover after a partition heals (longest): 0.200 s over 1 partitions \
                 alone (median 0.200 s, 1 within the target; 1 overlapped another fault and 0 \
                 started before the cluster settled are left out); target 3 election timeouts \
                 = 0.900 s: met",
            ]
        );
        let text = markdown(&summary);
        assert!(
            text.contains("| 5~ | 8.00 | 9.00 |")
                && text.contains("started unsettled: voter 2 is 900 entries behind the leader"),
            "{text}"
        );
        let page = super::super::html::page(&summary);
        assert_eq!(page.matches("<svg").count(), 3);
        assert!(page.contains("kill -9 node 1 (the leader)"), "{page}");
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
