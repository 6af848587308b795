//! The report of `synod lab partition`: Markdown (printed and written), an HTML page with
//! a timeline of the phases, the success rate over time per side and the latencies, and a
//! JSON summary for scripts and tests. Every figure stands beside what it means.

use std::fmt::Write as _;

use serde_json::{Value as Json, json};
use synod_check::Verdict;
use synod_check::html::escape;

use super::{
    LevelCheck, Measured, OPERATIONS, PartitionArgs, Phase, Request, Side, first_success_after,
    groups, percentile, promises_linearizable,
};

/// The width of one bucket of the success-rate chart.
const BUCKET_NANOS: u64 = 250_000_000;
/// The most buckets drawn; a longer run gets wider buckets.
const BUCKETS_MAX: u64 = 4_000;
/// The colour of each operation's line and bars, in `OPERATIONS` order.
const COLOURS: [&str; 5] = ["#6c757d", "#0d6efd", "#6610f2", "#198754", "#fd7e14"];

/// Everything the report shows.
pub(crate) struct Summary<'a> {
    pub(crate) args: &'a PartitionArgs,
    pub(crate) seed: u64,
    pub(crate) measured: &'a Measured,
    pub(crate) checks: &'a [LevelCheck],
    pub(crate) election_timeout_ms: u64,
}

/// One group of requests, summed.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    requests: usize,
    ok: usize,
    /// Writes whose outcome is unknown.
    info: usize,
    p50_nanos: u64,
    p99_nanos: u64,
    max_nanos: u64,
}

impl Figures {
    fn of(requests: &[Request]) -> Figures {
        let mut latencies: Vec<u64> = requests
            .iter()
            .filter(|request| request.kind == "ok")
            .map(|request| request.complete - request.invoke)
            .collect();
        latencies.sort_unstable();
        Figures {
            requests: requests.len(),
            ok: latencies.len(),
            info: requests.iter().filter(|r| r.kind == "info").count(),
            p50_nanos: percentile(&latencies, 500),
            p99_nanos: percentile(&latencies, 990),
            max_nanos: latencies.last().copied().unwrap_or(0),
        }
    }

    fn fraction(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.ok as f64 / self.requests as f64)
    }

    fn fraction_text(&self) -> String {
        match self.fraction() {
            Some(fraction) => format!("{:.1}%", fraction * 100.0),
            None => "-".to_owned(),
        }
    }

    fn latency_text(&self, nanos: u64) -> String {
        match self.ok {
            0 => "-".to_owned(),
            _ => format!("{:.2}", nanos as f64 / 1e6),
        }
    }
}

fn seconds(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1e9)
}

fn millis(nanos: u64) -> String {
    format!("{} ms", nanos / 1_000_000)
}

fn millis_or(nanos: Option<u64>, none: &str) -> String {
    nanos.map_or_else(|| none.to_owned(), millis)
}

/// The recovery figures, in nanoseconds from the moment they are measured from.
struct Recovery {
    /// The majority's new leader: (time after the cut, node).
    elected: Option<(u64, u64)>,
    majority_write: Option<u64>,
    minority_linearizable_read: Option<u64>,
    minority_write: Option<u64>,
    rejoined: Option<u64>,
}

impl Summary<'_> {
    fn cut_at(&self) -> u64 {
        self.measured.phases[1].0
    }

    fn healed_at(&self) -> u64 {
        self.measured.phases[2].0
    }

    fn recovery(&self) -> Recovery {
        let measured = self.measured;
        let (cut, healed) = (self.cut_at(), self.healed_at());
        Recovery {
            elected: measured
                .elected
                .map(|(time, node)| (time.saturating_sub(cut), node)),
            majority_write: first_success_after(measured, 0, Side::Majority, cut),
            minority_linearizable_read: first_success_after(measured, 1, Side::Minority, healed),
            minority_write: first_success_after(measured, 0, Side::Minority, healed),
            rejoined: measured.rejoined.map(|time| time.saturating_sub(healed)),
        }
    }

    /// The run's outcome: a violation of a model a level promises (or a node that exited
    /// on its own) fails it; a promised model the checker could not decide is unknown.
    pub(crate) fn outcome(&self) -> Verdict {
        let mut outcome = match self.measured.crashes.is_empty() {
            true => Verdict::Valid,
            false => Verdict::Violation,
        };
        for (level, check) in self.checks.iter().enumerate() {
            outcome = outcome.max(check.session);
            if promises_linearizable(level) {
                outcome = outcome.max(check.linearizable);
            }
        }
        outcome
    }

    fn figures(&self) -> Vec<(usize, Side, Phase, Figures)> {
        let groups = groups(self.measured);
        let mut rows = Vec::new();
        for phase in Phase::ALL {
            for operation in 0..OPERATIONS.len() {
                for side in Side::ALL {
                    let requests = groups.get(&(operation, side, phase));
                    let figures = requests.map_or_else(Figures::default, |r| Figures::of(r));
                    rows.push((operation, side, phase, figures));
                }
            }
        }
        rows
    }
}

/// What an operation needs from the cluster, in words.
fn needs(operation: usize) -> &'static str {
    match operation {
        0 => "A write must reach the leader and be stored by a majority",
        1 => {
            "A linearizable read needs the leader to confirm, with a round to a majority, \
             that it still leads (ReadIndex)"
        }
        2 => {
            "A lease read is answered by the leader alone while its lease lasts; the lease is \
             shorter than an election timeout, so it ends before a new leader can exist"
        }
        3 => {
            "A follower read asks the leader for the read index (a round to a majority), then \
             answers from this node's own copy"
        }
        _ => "A stale read answers at once from this node's own copy and asks no one",
    }
}

fn partition_text(summary: &Summary<'_>, operation: usize, side: Side, f: &Figures) -> String {
    let stale = operation == OPERATIONS.len() - 1;
    let recovery = summary.recovery();
    match (stale, side) {
        (false, Side::Minority) => {
            let successes = match f.ok {
                0 => "Not one succeeded: this side was unavailable for it for the whole \
                      partition, as CAP predicts for a consistent system."
                    .to_owned(),
                ok if operation == 2 => format!(
                    "Succeeded: {ok}, answered by the old leader under its lease in the first \
                     moments after the cut; the lease ends before the majority can elect a \
                     new leader, so these reads were still up to date (the lease history's \
                     linearizability verdict below checks it)."
                ),
                ok => format!(
                    "Succeeded: {ok}, sent in the first moments after the cut, before the old \
                     leader knew it had lost its majority."
                ),
            };
            format!(
                "{}. This side has no majority, so it cannot: synod chooses C (consistency) \
                 and refuses (TRYAGAIN, or no answer in time) rather than answer with data \
                 that may be out of date. {successes}",
                needs(operation)
            )
        }
        (false, Side::Majority) => {
            let failures = match f.requests - f.ok {
                0 => format!(
                    "None failed: the requests sent before the new leader existed waited for \
                     it inside the node (up to {} ms, the max column) and were then answered.",
                    f.latency_text(f.max_nanos)
                ),
                failed => format!(
                    "Failed: {failed}, sent before then (forwarded to the old leader, or \
                     refused while no leader was known)."
                ),
            };
            format!(
                "{}. This side has a majority but lost its leader: it elected a new one {} \
                 after the cut and answered again. {failures}",
                needs(operation),
                millis_or(recovery.elected.map(|(time, _)| time), "(never)")
            )
        }
        (true, Side::Minority) => format!(
            "{}, so it needs no majority: synod chooses A (availability) for it, and the \
             minority keeps answering ({} of requests). The price is C: the majority goes on \
             writing, and these reads cannot see it (see the stale level's linearizability \
             verdict below).",
            needs(operation),
            f.fraction_text()
        ),
        (true, Side::Majority) => format!(
            "{}: it never needed a leader, so the election did not interrupt it.",
            needs(operation)
        ),
    }
}

fn other_phase_text(summary: &Summary<'_>, phase: Phase, side: Side) -> String {
    let recovery = summary.recovery();
    match (phase, side) {
        (Phase::Baseline, _) => {
            "No fault yet: the reference for the same row during the partition.".to_owned()
        }
        (_, Side::Minority) => format!(
            "After the heal the old minority follows the new leader again (all its nodes \
             named it {} after the heal); failures are requests sent before that.",
            millis_or(recovery.rejoined, "(not within the phase)")
        ),
        (_, Side::Majority) => {
            "The partition is over; this side kept its leader through the heal.".to_owned()
        }
    }
}

/// A table, rendered as Markdown or HTML.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn markdown(&self) -> String {
        let mut text = format!("| {} |\n", self.header.join(" | "));
        let _ = writeln!(text, "|{}", "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text
    }

    fn html(&self) -> String {
        let mut text = String::from("<table><tr>");
        for cell in &self.header {
            let _ = write!(text, "<th>{}</th>", escape(cell));
        }
        text.push_str("</tr>");
        for row in &self.rows {
            text.push_str("<tr>");
            for cell in row {
                let _ = write!(text, "<td>{}</td>", escape(cell));
            }
            text.push_str("</tr>");
        }
        text.push_str("</table>");
        text
    }
}

fn figures_table(summary: &Summary<'_>, phases: &[Phase]) -> Table {
    let mut header = vec!["operation", "side"];
    if phases.len() > 1 {
        header.push("phase");
    }
    header.extend([
        "requests",
        "succeeded",
        "p50 ms",
        "p99 ms",
        "max ms",
        "what this row shows",
    ]);
    let mut rows = Vec::new();
    for (operation, side, phase, f) in summary.figures() {
        if !phases.contains(&phase) {
            continue;
        }
        let mut row = vec![OPERATIONS[operation].to_owned(), side.name().to_owned()];
        if phases.len() > 1 {
            row.push(phase.name().to_owned());
        }
        let requests = match f.info {
            0 => f.requests.to_string(),
            info => format!("{} ({info} unknown)", f.requests),
        };
        let text = match phase {
            Phase::Partition => partition_text(summary, operation, side, &f),
            _ => other_phase_text(summary, phase, side),
        };
        row.extend([
            requests,
            f.fraction_text(),
            f.latency_text(f.p50_nanos),
            f.latency_text(f.p99_nanos),
            f.latency_text(f.max_nanos),
            text,
        ]);
        rows.push(row);
    }
    Table { header, rows }
}

fn recovery_table(summary: &Summary<'_>) -> Table {
    let recovery = summary.recovery();
    let timeout = summary.election_timeout_ms;
    let elected = recovery.elected.map(|(time, _)| time);
    let new_leader = recovery
        .elected
        .map_or_else(|| "no node".to_owned(), |(_, node)| format!("node {node}"));
    let rows = vec![
        vec![
            "majority elects a leader".to_owned(),
            millis_or(elected, "not within the partition"),
            format!(
                "From the cut until {new_leader} of the majority said it leads. The followers \
                 wait an election timeout ({timeout} ms, randomised up to twice that) without \
                 hearing the old leader, then vote: the unavoidable gap of a leader-based \
                 system."
            ),
        ],
        vec![
            "majority serves writes".to_owned(),
            millis_or(recovery.majority_write, "not within the run"),
            "From the cut until the first write sent after it by a majority-side client \
             succeeded: the election, plus the client's pause after each refusal."
                .to_owned(),
        ],
        vec![
            "old minority rejoins".to_owned(),
            millis_or(recovery.rejoined, "not within the healed phase"),
            "From the heal until every node of the old minority named the new leader: the \
             old leader hears a higher term and steps down. Much more than an election \
             timeout means the nodes' connections were waiting out TCP's retransmission \
             backoff: with iptables (namespaces) the cut drops packets, TCP backs off \
             exponentially while it lasts, and a connection resumes only at its next \
             retransmission; the proxies close such connections at the heal instead, and \
             the nodes dial again at once."
                .to_owned(),
        ],
        vec![
            "minority serves linearizable reads".to_owned(),
            millis_or(recovery.minority_linearizable_read, "not within the run"),
            "From the heal until the first linearizable read sent after it by a \
             minority-side client succeeded: consistency costs availability until the \
             minority is connected to a majority again."
                .to_owned(),
        ],
        vec![
            "minority serves writes".to_owned(),
            millis_or(recovery.minority_write, "not within the run"),
            "The same for writes.".to_owned(),
        ],
    ];
    Table {
        header: vec!["moment", "after", "what it measures"],
        rows,
    }
}

fn verdict_text(verdict: Verdict, required: bool) -> String {
    match (verdict, required) {
        (Verdict::Valid, _) => "valid".to_owned(),
        (verdict, true) => format!("{} (must hold)", verdict.name()),
        (Verdict::Violation, false) => "violation (expected)".to_owned(),
        (Verdict::Unknown, false) => "unknown".to_owned(),
    }
}

fn verdict_explanation(level: usize, check: &LevelCheck) -> String {
    let linearizable = match (promises_linearizable(level), check.linearizable) {
        (true, Verdict::Valid) => {
            "Linearizable: every read returned the latest write that had completed before it \
             began, on both sides, partition included: what this level promises."
        }
        (true, _) => {
            "NOT shown linearizable: this level promises it, so this is a failure of synod \
             (the note below names the key)."
        }
        (false, Verdict::Violation) => {
            "Not linearizable, as expected: a stale read may return a value already \
             overwritten (from a follower a little behind at any time, and from the minority \
             for the whole partition; the note below shows the first). This is the price of \
             its availability, not a failure."
        }
        (false, _) => {
            "No stale read happened to return an old value this time; stale reads do not \
             promise it."
        }
    };
    format!(
        "{linearizable} Sequential: one order of all operations that keeps each client's \
         own order exists ({}). Session: each connection read its own writes and never went \
         back in time (read-your-writes, monotonic reads and writes, writes-follow-reads), \
         which synod keeps per connection at every level ({}).",
        check.sequential.name(),
        check.session.name()
    )
}

fn verdicts_table(summary: &Summary<'_>) -> Table {
    let mut rows = Vec::new();
    for (level, check) in summary.checks.iter().enumerate() {
        rows.push(vec![
            format!("writes + {} reads", OPERATIONS[level + 1]),
            check.operations.to_string(),
            verdict_text(check.linearizable, promises_linearizable(level)),
            verdict_text(check.sequential, false),
            verdict_text(check.session, true),
            verdict_explanation(level, check),
        ]);
    }
    Table {
        header: vec![
            "history",
            "operations",
            "linearizable",
            "sequential",
            "session",
            "what it means",
        ],
        rows,
    }
}

fn outcome_name(outcome: Verdict) -> &'static str {
    match outcome {
        Verdict::Valid => "PASS",
        Verdict::Unknown => "UNKNOWN",
        Verdict::Violation => "FAIL",
    }
}

fn setup_text(summary: &Summary<'_>) -> String {
    let (args, measured) = (summary.args, summary.measured);
    let clients = args.nodes * 4 * args.clients_per_node;
    let [baseline, partition, healed] = measured.phases;
    format!(
        "{} nodes, peer links through {}, election timeout {} ms. {clients} clients: {} per \
         node and read level, each pinned to its node's RESP port and mixing reads at its \
         level with writes (half each) on {} keys of its level. A request is one attempt \
         with a 1 s timeout (a client that is refused pauses 100 ms and reconnects). \
         Phases: baseline {}-{} s; partition {}-{} s, nodes {:?} (with node {}, the leader) \
         cut off from nodes {:?}, both directions; healed {}-{} s. Seed {}.",
        args.nodes,
        measured.net,
        summary.election_timeout_ms,
        args.clients_per_node,
        args.keys,
        seconds(baseline.0),
        seconds(baseline.1),
        seconds(partition.0),
        seconds(partition.1),
        measured.minority,
        measured.leader,
        measured.majority,
        seconds(healed.0),
        seconds(healed.1),
        summary.seed
    )
}

const CAP_TEXT: &str = "CAP says that when the network splits, a node on the side without \
    a majority must choose: answer (A, availability) and risk returning out-of-date data, or \
    refuse (C, consistency). synod lets each request choose with its read level. Writes and \
    linearizable, lease and follower reads need a majority, so they choose C; stale reads \
    need no one, so they choose A.";

const COLUMNS_TEXT: &str = "requests: sent in the phase (one still waiting when the partition \
    began counts in the partition); \
    succeeded: the share answered ok (a write whose outcome is unknown, counted in brackets, \
    is not a success, and is checked as possibly applied); p50, p99 and max: the latency of \
    the successful ones, in milliseconds. A request that waits counts once however long it \
    waits: the success rate over time (HTML page) shows for how long a side could not \
    answer.";

pub(crate) fn markdown(summary: &Summary<'_>) -> String {
    let mut text = String::new();
    let outcome = outcome_name(summary.outcome());
    let _ = writeln!(text, "# synod lab partition: CAP, measured ({outcome})\n");
    let _ = writeln!(
        text,
        "{}\n\n{CAP_TEXT}\n\n{COLUMNS_TEXT}\n",
        setup_text(summary)
    );
    let _ = writeln!(text, "## During the partition\n");
    let _ = writeln!(
        text,
        "{}",
        figures_table(summary, &[Phase::Partition]).markdown()
    );
    let _ = writeln!(text, "## Before and after\n");
    let other = [Phase::Baseline, Phase::Healed];
    let _ = writeln!(text, "{}", figures_table(summary, &other).markdown());
    let _ = writeln!(text, "## How long the cluster took\n");
    let _ = writeln!(text, "{}", recovery_table(summary).markdown());
    let _ = writeln!(text, "## Were the answers right?\n");
    let _ = writeln!(text, "{}", verdicts_table(summary).markdown());
    let _ = writeln!(text, "{}", closing_text(summary));
    text
}

fn closing_text(summary: &Summary<'_>) -> String {
    let mut text = String::new();
    for (level, check) in summary.checks.iter().enumerate() {
        for note in &check.notes {
            let _ = writeln!(text, "- {}: {note}", OPERATIONS[level + 1]);
        }
    }
    for (node, time, status) in &summary.measured.crashes {
        let _ = writeln!(
            text,
            "- node {node} exited on its own at {} s ({status}): a failure",
            seconds(*time)
        );
    }
    let histories: Vec<String> = summary
        .checks
        .iter()
        .map(|check| format!("`{}`", check.history.display()))
        .collect();
    let _ = writeln!(
        text,
        "\nOutcome: {}. The lab fails when a model a level promises does not hold \
         (linearizability for writes and linearizable, lease and follower reads; the session \
         guarantees at every level) or a node exits on its own. Each level's history is \
         kept for `synod check`: {}.",
        outcome_name(summary.outcome()),
        histories.join(", ")
    );
    text
}

/// The left margin of the charts (room for a lane's name).
const X_MARGIN: f64 = 100.0;

/// The x coordinate of `time` on a chart `width` wide with `X_MARGIN` on the left.
fn x_of(time: u64, end: u64, width: f64) -> f64 {
    X_MARGIN + time as f64 / end.max(1) as f64 * (width - X_MARGIN - 20.0)
}

fn phase_shading(summary: &Summary<'_>, width: f64, top: f64, height: f64) -> String {
    let end = summary.measured.phases[2].1;
    let (cut, healed) = (summary.cut_at(), summary.healed_at());
    format!(
        "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{height}\" fill=\"#f8d7da\">\
         <title>partition</title></rect>",
        x_of(cut, end, width),
        x_of(healed, end, width) - x_of(cut, end, width)
    )
}

fn timeline_svg(summary: &Summary<'_>) -> String {
    let width = 900.0;
    let end = summary.measured.phases[2].1;
    let mut svg = format!("<svg width=\"{width}\" height=\"90\">");
    let fills = ["#d1e7dd", "#f8d7da", "#cfe2ff"];
    for (index, (start, stop)) in summary.measured.phases.iter().enumerate() {
        let (x0, x1) = (x_of(*start, end, width), x_of(*stop, end, width));
        let _ = write!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"10\" width=\"{:.1}\" height=\"24\" fill=\"{}\">\
             <title>{} {}-{} s</title></rect><text x=\"{:.1}\" y=\"27\">{}</text>",
            x1 - x0,
            fills[index],
            Phase::ALL[index].name(),
            seconds(*start),
            seconds(*stop),
            x0 + 4.0,
            Phase::ALL[index].name()
        );
    }
    let recovery = summary.recovery();
    let marks = [
        (
            "new leader",
            recovery.elected.map(|(t, _)| t + summary.cut_at()),
        ),
        (
            "majority write",
            recovery.majority_write.map(|t| t + summary.cut_at()),
        ),
        (
            "rejoined",
            recovery.rejoined.map(|t| t + summary.healed_at()),
        ),
        (
            "minority linearizable read",
            recovery
                .minority_linearizable_read
                .map(|t| t + summary.healed_at()),
        ),
    ];
    for (index, (name, time)) in marks.iter().enumerate() {
        let Some(time) = time else { continue };
        let x = x_of(*time, end, width);
        let y = 50 + (index % 2) * 16;
        // Labels right of the middle end at their line, so none runs off the chart.
        let (anchor, text_x) = match x > width / 2.0 {
            true => ("end", x - 3.0),
            false => ("start", x + 3.0),
        };
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"8\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#000\"/>\
             <text x=\"{text_x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\">{name} {} s</text>",
            y - 10,
            seconds(*time)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The success rate of each operation on `side`, per bucket of send time: a lane per
/// operation, each bucket a bar whose coloured part is the share that succeeded and whose
/// red part the share that failed.
fn success_svg(summary: &Summary<'_>, side: Side) -> String {
    let (width, lane, gap) = (900.0, 36.0, 8.0);
    let end = summary.measured.phases[2].1;
    let bucket = BUCKET_NANOS.max(end.div_ceil(BUCKETS_MAX));
    let buckets = end.div_ceil(bucket).max(1) as usize;
    let height = OPERATIONS.len() as f64 * (lane + gap);
    let mut svg = format!("<svg width=\"{width}\" height=\"{}\">", height + 30.0);
    svg.push_str(&phase_shading(summary, width, 0.0, height));
    let bar = (x_of(bucket, end, width) - x_of(0, end, width) - 1.0).max(1.0);
    for (operation, name) in OPERATIONS.iter().enumerate() {
        let top = operation as f64 * (lane + gap);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">{name}</text><line x1=\"{}\" y1=\"{:.1}\" x2=\"{}\" \
             y2=\"{:.1}\" stroke=\"#ccc\"/>",
            top + lane / 2.0 + 4.0,
            X_MARGIN,
            top + lane,
            width - 20.0,
            top + lane
        );
        for (index, (sent, ok)) in bucket_counts(summary, side, operation, bucket, buckets)
            .into_iter()
            .enumerate()
        {
            if sent == 0 {
                continue;
            }
            let x = x_of(index as u64 * bucket, end, width);
            let ok_height = ok as f64 / sent as f64 * lane;
            let _ = write!(
                svg,
                "<g><title>{name}, {side} side, {:.2}-{:.2} s: {ok} of {sent} succeeded</title>\
                 <rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" \
                 fill=\"#dc3545\" fill-opacity=\"0.6\"/><rect x=\"{x:.1}\" y=\"{:.1}\" \
                 width=\"{bar:.1}\" height=\"{ok_height:.1}\" fill=\"{}\"/></g>",
                (index as u64 * bucket) as f64 / 1e9,
                ((index as u64 + 1) * bucket) as f64 / 1e9,
                lane - ok_height,
                top + lane - ok_height,
                COLOURS[operation],
                side = side.name(),
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{X_MARGIN}\" y=\"{}\">time since the clients started: 0 to {} s; one bar \
         per {} ms of send time (empty: nothing sent); coloured: succeeded, red: failed; \
         shaded: the partition</text></svg>",
        height + 20.0,
        seconds(end),
        bucket / 1_000_000
    );
    svg
}

/// (sent, succeeded) per bucket of send time, for one operation on one side.
fn bucket_counts(
    summary: &Summary<'_>,
    side: Side,
    operation: usize,
    bucket: u64,
    buckets: usize,
) -> Vec<(u64, u64)> {
    let mut counts = vec![(0u64, 0u64); buckets];
    for request in &summary.measured.requests {
        let on_side = summary.measured.side(request.node) == side;
        if request.operation == operation && on_side {
            let index = ((request.invoke / bucket) as usize).min(buckets - 1);
            counts[index].0 += 1;
            counts[index].1 += u64::from(request.kind == "ok");
        }
    }
    counts
}

/// Bars of p50 (dark) and p99 (light) latency of the successful requests, per phase,
/// operation and side.
fn latency_svg(summary: &Summary<'_>) -> String {
    let rows = summary.figures();
    let latency_max = rows
        .iter()
        .map(|row| row.3.max_nanos)
        .max()
        .unwrap_or(1)
        .max(1);
    let row_height = 18;
    let mut svg = format!(
        "<svg width=\"900\" height=\"{}\">",
        rows.len() * row_height + 20
    );
    for (index, (operation, side, phase, f)) in rows.iter().enumerate() {
        let y = 10 + index * row_height;
        let width = |nanos: u64| (nanos as f64 / latency_max as f64 * 480.0).max(1.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\">{} {} {}</text>\
             <rect x=\"260\" y=\"{y}\" width=\"{:.1}\" height=\"12\" fill=\"{}\" \
             fill-opacity=\"0.35\"/>\
             <rect x=\"260\" y=\"{y}\" width=\"{:.1}\" height=\"12\" fill=\"{}\"/>\
             <rect x=\"{:.1}\" y=\"{}\" width=\"2\" height=\"16\" fill=\"#000\"/>\
             <text x=\"{:.1}\" y=\"{}\">p50 {} ms, p99 {} ms, max {} ms ({} ok)</text>",
            y + 10,
            phase.name(),
            OPERATIONS[*operation],
            side.name(),
            width(f.p99_nanos),
            COLOURS[*operation],
            width(f.p50_nanos),
            COLOURS[*operation],
            260.0 + width(f.max_nanos),
            y - 2,
            266.0 + width(f.max_nanos),
            y + 10,
            f.latency_text(f.p50_nanos),
            f.latency_text(f.p99_nanos),
            f.latency_text(f.max_nanos),
            f.ok
        );
    }
    svg.push_str("</svg>");
    svg
}

pub(crate) fn html(summary: &Summary<'_>) -> String {
    let outcome = outcome_name(summary.outcome());
    let mut body = format!(
        "<h1>synod lab partition: CAP, measured ({outcome})</h1><p>{}</p><p>{}</p><p>{}</p>",
        escape(&setup_text(summary)),
        escape(CAP_TEXT),
        escape(COLUMNS_TEXT)
    );
    let _ = write!(
        body,
        "<h2>Timeline</h2><p>The phases, and the moments the cluster recovered.</p>{}\
         <h2>Success rate over time</h2><h3>Minority side (nodes {:?}, the old leader's)</h3>\
         <p>Stale reads keep succeeding (A); everything that needs a majority stops (C) \
         until the heal.</p>{}<h3>Majority side (nodes {:?})</h3><p>Everything stops only \
         for the election, then succeeds again.</p>{}",
        timeline_svg(summary),
        summary.measured.minority,
        success_svg(summary, Side::Minority),
        summary.measured.majority,
        success_svg(summary, Side::Majority)
    );
    let _ = write!(
        body,
        "<h2>During the partition</h2>{}<h2>Before and after</h2>{}\
         <h2>How long the cluster took</h2>{}<h2>Latency of the successful requests</h2>\
         <p>Dark: p50; light: p99; the tick: the slowest. A consistent level on the \
         majority side pays for the election in its slowest requests.</p>{}\
         <h2>Were the answers right?</h2>{}<pre>{}</pre>",
        figures_table(summary, &[Phase::Partition]).html(),
        figures_table(summary, &[Phase::Baseline, Phase::Healed]).html(),
        recovery_table(summary).html(),
        latency_svg(summary),
        verdicts_table(summary).html(),
        escape(&closing_text(summary))
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>synod lab partition</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:80em}}\
         text{{font-size:12px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}</style></head>\
         <body>{body}</body></html>\n"
    )
}

fn optional_millis(nanos: Option<u64>) -> Json {
    nanos.map_or(Json::Null, |nanos| json!(nanos as f64 / 1e6))
}

/// The figures as JSON, for scripts and tests.
pub(crate) fn json(summary: &Summary<'_>) -> Json {
    let measured = summary.measured;
    let rows: Vec<Json> = summary
        .figures()
        .into_iter()
        .map(|(operation, side, phase, f)| {
            json!({
                "operation": OPERATIONS[operation],
                "side": side.name(),
                "phase": phase.name(),
                "requests": f.requests,
                "succeeded": f.ok,
                "unknown": f.info,
                "success_fraction": f.fraction(),
                "p50_ms": (f.ok > 0).then(|| f.p50_nanos as f64 / 1e6),
                "p99_ms": (f.ok > 0).then(|| f.p99_nanos as f64 / 1e6),
                "max_ms": (f.ok > 0).then(|| f.max_nanos as f64 / 1e6),
            })
        })
        .collect();
    let levels: Vec<Json> = summary
        .checks
        .iter()
        .enumerate()
        .map(|(level, check)| {
            json!({
                "level": OPERATIONS[level + 1],
                "operations": check.operations,
                "linearizable": check.linearizable.name().to_lowercase(),
                "linearizable_promised": promises_linearizable(level),
                "sequential": check.sequential.name().to_lowercase(),
                "session": check.session.name().to_lowercase(),
                "history": check.history.display().to_string(),
            })
        })
        .collect();
    let phases: Vec<Json> = (Phase::ALL.iter().zip(measured.phases))
        .map(|(phase, (start, end))| {
            json!({"name": phase.name(), "start_ms": start / 1_000_000, "end_ms": end / 1_000_000})
        })
        .collect();
    let recovery = summary.recovery();
    json!({
        "outcome": outcome_name(summary.outcome()).to_lowercase(),
        "nodes": summary.args.nodes,
        "net": measured.net,
        "seed": summary.seed,
        "leader": measured.leader,
        "minority": measured.minority,
        "majority": measured.majority,
        "phases": phases,
        "rows": rows,
        "levels": levels,
        "election_ms": optional_millis(recovery.elected.map(|(time, _)| time)),
        "new_leader": recovery.elected.map(|(_, node)| node),
        "majority_write_ms": optional_millis(recovery.majority_write),
        "rejoin_ms": optional_millis(recovery.rejoined),
        "minority_linearizable_read_after_heal_ms":
            optional_millis(recovery.minority_linearizable_read),
        "minority_write_after_heal_ms": optional_millis(recovery.minority_write),
        "crashes": measured.crashes.len(),
    })
}
