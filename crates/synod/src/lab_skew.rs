//! `synod lab skew`: lease reads while one node's clock runs at another rate.
//!
//! A lease read is linearizable only while no voter's clock runs apart from the leader's
//! faster than the configured drift bound. synod's leader measures that from its followers'
//! append answers and suspends the lease when a voter's skew is proven beyond the bound. The
//! lab starts a 3-node cluster whose nodes accept clock faults (`[faults] clock = true`), and
//! runs four phases: no skew, one follower drifting inside the bound, the same follower far
//! outside it, and the drift removed again. In each it runs lease reads and writes together
//! with `synod bench load --history`, checks the history for linearizability in-process with
//! synod-check, and reads the nodes' `/status` and `/metrics` for the measured skew and for
//! how the lease reads were served. It exits 1 if a phase's history is not linearizable (3 if
//! the checker could not decide).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value as Json;
use synod_check::html::escape;
use synod_check::{Models, Verdict};

use crate::harness::{check_recorded, parse_recorded};
use crate::lab::{LabCluster, bench_load_result, figure, millis, wait_for_leader};

#[derive(Args, Debug)]
pub struct SkewArgs {
    /// Base port of the cluster the lab starts (as `synod up --base-port`).
    #[arg(long, default_value_t = 7700)]
    pub base_port: u16,
    /// Seconds each phase's load runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Closed-loop clients of each phase (half their operations lease reads, half writes).
    #[arg(long, default_value_t = 16)]
    pub clients: u64,
    /// Keys of each phase (every phase writes and reads keys of its own).
    #[arg(long, default_value_t = 100)]
    pub keys: u64,
    /// The lease's clock drift bound the cluster runs with (raft.lease_drift_bound_ppm).
    #[arg(long, default_value_t = 10_000)]
    pub drift_bound_ppm: u64,
    /// How fast one follower's clock runs in the inside-the-bound phase, in ppm.
    #[arg(long, default_value_t = 5_000)]
    pub inside_ppm: i64,
    /// How fast it runs in the outside-the-bound phase, in ppm.
    #[arg(long, default_value_t = 50_000)]
    pub outside_ppm: i64,
    /// Where the report (lab-skew.md, lab-skew.html) and each phase's history go.
    #[arg(long, default_value = "lab-report")]
    pub report: PathBuf,
}

const NODES: u64 = 3;
/// The most seconds one phase's load may be asked to run.
const SECONDS_MAX: u64 = 3_600;
/// The most keys of one phase.
const KEYS_MAX: u64 = 1_000_000;
/// The largest drift a node accepts (synod-runtime's `CLOCK_DRIFT_PPM_MAX`).
const DRIFT_PPM_MAX: i64 = 500_000;
/// The largest bound a node's config accepts (raft.lease_drift_bound_ppm).
const DRIFT_BOUND_PPM_MAX: u64 = 100_000;
/// Share of the load that is lease reads, in percent.
const READ_PERCENT: u8 = 50;
/// One admin HTTP request, connect to last byte.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest admin answer read (`/metrics` is a few KiB).
const HTTP_ANSWER_SIZE_MAX: u64 = 1 << 20;
/// How often the lab asks the leader whether the lease is suspended while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest the lab waits for the lease to reach a phase's expected state: well past the
/// leader's measuring horizon (20 election timeouts, 6 s with the default 300 ms).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times one phase's load runs at most. A phase measures one leader's lease: a
/// leader elected during it starts without the clock samples its predecessor had gathered,
/// so the phase is measured again (every attempt's history is checked).
const PHASE_ATTEMPTS_MAX: u32 = 3;
/// Time budget of one key's linearizability search.
const CHECK_KEY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a phase expects of the lease once the leader has measured the clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Served,
    Suspended,
}

struct PhasePlan {
    name: &'static str,
    drift_ppm: i64,
    expect: Lease,
    explanation: String,
}

/// How the lease reads of a phase were served, summed over the nodes.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    lease: u64,
    read_index: u64,
    refused_skew: u64,
}

struct PhaseResult {
    plan: PhasePlan,
    /// How long the lease took to reach the expected state after the drift was set (`None`:
    /// not within `SETTLE_TIMEOUT`).
    settle: Option<Duration>,
    load: Json,
    counters: Counters,
    /// The leader's figures at the end of the phase.
    skew_ppm: u64,
    suspended: bool,
    verdict: Verdict,
    history: PathBuf,
    /// How many times the phase's load ran: more than once when the leader changed during
    /// it.
    attempts: u32,
}

impl SkewArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=SECONDS_MAX).contains(&self.seconds) {
            bail!("--seconds must be between 1 and {SECONDS_MAX}");
        }
        if !(1..=KEYS_MAX).contains(&self.keys) {
            bail!("--keys must be between 1 and {KEYS_MAX}");
        }
        if !(1..=DRIFT_BOUND_PPM_MAX).contains(&self.drift_bound_ppm) {
            bail!("--drift-bound-ppm must be between 1 and {DRIFT_BOUND_PPM_MAX}");
        }
        let bound = self.drift_bound_ppm as i64;
        if !(0..bound).contains(&self.inside_ppm) {
            bail!("--inside-ppm ({}) must be in 0..{bound}", self.inside_ppm);
        }
        if !(bound + 1..=DRIFT_PPM_MAX).contains(&self.outside_ppm) {
            bail!(
                "--outside-ppm ({}) must exceed --drift-bound-ppm ({bound}) and be at most \
                 {DRIFT_PPM_MAX}",
                self.outside_ppm
            );
        }
        Ok(())
    }

    fn http(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + 100 + id as u16))
    }

    fn endpoints(&self) -> String {
        let resp = (1..=NODES).map(|id| format!("127.0.0.1:{}", u64::from(self.base_port) + id));
        resp.collect::<Vec<_>>().join(",")
    }
}

fn percent(ppm: i64) -> String {
    format!("{}%", ppm as f64 / 10_000.0)
}

fn plans(args: &SkewArgs, drifted: u64) -> Vec<PhasePlan> {
    let bound = percent(args.drift_bound_ppm as i64);
    let (inside, outside) = (percent(args.inside_ppm), percent(args.outside_ppm));
    vec![
        PhasePlan {
            name: "no skew",
            drift_ppm: 0,
            expect: Lease::Served,
            explanation: "every clock runs at the same rate: the leader proves no skew and \
                          answers lease reads from its state, without a round"
                .to_string(),
        },
        PhasePlan {
            name: "inside the bound",
            drift_ppm: args.inside_ppm,
            expect: Lease::Served,
            explanation: format!(
                "node {drifted}'s clock runs {inside} fast, less than the {bound} bound: the \
                 skew the leader can prove stays below the bound, so the lease holds"
            ),
        },
        PhasePlan {
            name: "outside the bound",
            drift_ppm: args.outside_ppm,
            expect: Lease::Suspended,
            explanation: format!(
                "node {drifted}'s clock runs {outside} fast, beyond the {bound} bound: two \
                 samples far enough apart prove it, the leader suspends the lease, and lease \
                 reads take the ReadIndex round (slower, still linearizable)"
            ),
        },
        PhasePlan {
            name: "back inside",
            drift_ppm: 0,
            expect: Lease::Served,
            explanation: "the drift is removed: the lease resumes once the samples that \
                          proved the skew have left the leader's horizon (20 election \
                          timeouts)"
                .to_string(),
        },
    ]
}

pub fn run(args: &SkewArgs) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let exe = std::env::current_exe().context("cannot find the synod executable")?;
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("cannot create {}", args.report.display()))?;
    let _cluster = start_cluster(args, &exe)?;
    let endpoints = args.endpoints();
    wait_for_leader(&exe, &endpoints)?;
    let (leader, _) = leader_status(args)?;
    let drifted = (1..=NODES).find(|id| *id != leader).expect("three nodes");
    let mut results = Vec::new();
    for (index, plan) in plans(args, drifted).into_iter().enumerate() {
        eprintln!(
            "lab skew: phase {}: {} (node {drifted} drifts {} ppm)...",
            index + 1,
            plan.name,
            plan.drift_ppm
        );
        results.push(run_phase(args, &exe, drifted, index + 1, plan)?);
    }
    let markdown = render_markdown(args, drifted, &results);
    print!("{markdown}");
    let md_path = args.report.join("lab-skew.md");
    let html_path = args.report.join("lab-skew.html");
    std::fs::write(&md_path, &markdown)?;
    std::fs::write(&html_path, render_html(args, drifted, &results))?;
    eprintln!(
        "lab skew: report in {} and {}",
        md_path.display(),
        html_path.display()
    );
    let verdicts = results.iter().map(|result| result.verdict);
    Ok(
        match verdicts.max_by_key(|verdict| verdict_rank(*verdict)) {
            Some(Verdict::Violation) => ExitCode::from(1),
            Some(Verdict::Unknown) => ExitCode::from(3),
            _ => ExitCode::SUCCESS,
        },
    )
}

fn verdict_rank(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Valid => 0,
        Verdict::Unknown => 1,
        Verdict::Violation => 2,
    }
}

/// Starts `synod up` with clock faults allowed and the lab's drift bound on every node.
fn start_cluster(args: &SkewArgs, exe: &Path) -> anyhow::Result<LabCluster> {
    let dir = std::env::temp_dir().join(format!("synod-lab-skew-{}", std::process::id()));
    LabCluster::start(exe, NODES, args.base_port, dir, |command| {
        command.env("SYNOD_FAULTS__CLOCK", "true").env(
            "SYNOD_RAFT__LEASE_DRIFT_BOUND_PPM",
            args.drift_bound_ppm.to_string(),
        );
    })
}

fn run_phase(
    args: &SkewArgs,
    exe: &Path,
    drifted: u64,
    number: usize,
    plan: PhasePlan,
) -> anyhow::Result<PhaseResult> {
    let body = format!("{{\"drift_ppm\":{},\"offset_ms\":0}}", plan.drift_ppm);
    let (status, answer) = http(args.http(drifted), "POST", "/faults/clock", &body)?;
    if status != 200 {
        bail!("node {drifted} refused the clock fault ({status}): {answer}");
    }
    let mut verdict = Verdict::Valid;
    // Bounded by PHASE_ATTEMPTS_MAX.
    for attempt in 1..=PHASE_ATTEMPTS_MAX {
        let settle = wait_for_lease(args, plan.expect);
        let leader_before = leader_status(args)
            .ok()
            .map(|(id, status)| term_of(id, &status));
        let before = counters(args)?;
        let history = match attempt {
            1 => args.report.join(format!("lab-skew-phase-{number}.jsonl")),
            _ => args
                .report
                .join(format!("lab-skew-phase-{number}-attempt-{attempt}.jsonl")),
        };
        let load = measure(args, exe, number as u64, &history)?;
        let after = counters(args)?;
        let (leader, status) = leader_status(args)?;
        // Every attempt's history is checked, the ones measured again included.
        verdict = worse(verdict, check_history(&history)?);
        let leader_after = term_of(leader, &status);
        if leader_before != Some(leader_after) && attempt < PHASE_ATTEMPTS_MAX {
            eprintln!(
                "lab skew: the leader changed during phase {number} (before: {}, after: node \
                 {} in term {}): a new leader has not measured the clocks yet, so the phase \
                 is measured again",
                leader_before.map_or("none known".to_string(), |(id, term)| format!(
                    "node {id} in term {term}"
                )),
                leader_after.0,
                leader_after.1,
            );
            continue;
        }
        return Ok(PhaseResult {
            plan,
            settle,
            load,
            counters: Counters {
                lease: after.lease.saturating_sub(before.lease),
                read_index: after.read_index.saturating_sub(before.read_index),
                refused_skew: after.refused_skew.saturating_sub(before.refused_skew),
            },
            skew_ppm: status["clock_skew_ppm_max"].as_u64().unwrap_or(0),
            suspended: status["lease_suspended_by_skew"].as_bool().unwrap_or(false),
            verdict,
            history,
            attempts: attempt,
        });
    }
    unreachable!("the last attempt always returns")
}

/// A leader's id and the term it leads in, from its `/status`.
fn term_of(id: u64, status: &Json) -> (u64, u64) {
    (id, status["term"].as_u64().unwrap_or(0))
}

/// The worse of two verdicts (a violation over an unknown over valid).
fn worse(a: Verdict, b: Verdict) -> Verdict {
    match verdict_rank(a) >= verdict_rank(b) {
        true => a,
        false => b,
    }
}

/// Waits until the leader's lease is in the expected state; how long it took, or `None`.
fn wait_for_lease(args: &SkewArgs, expect: Lease) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < SETTLE_TIMEOUT {
        let suspended = leader_status(args)
            .ok()
            .and_then(|(_, status)| status["lease_suspended_by_skew"].as_bool());
        if suspended == Some(expect == Lease::Suspended) {
            return Some(started.elapsed());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    None
}

/// The leader's id and `/status`, asking every node.
fn leader_status(args: &SkewArgs) -> anyhow::Result<(u64, Json)> {
    for id in 1..=NODES {
        let Ok((200, body)) = http(args.http(id), "GET", "/status", "") else {
            continue;
        };
        let status: Json = serde_json::from_str(&body).context("/status is not JSON")?;
        if status["role"] == "leader" {
            return Ok((id, status));
        }
    }
    bail!("no node reports itself leader")
}

/// The lease-read counters of every node's `/metrics`, summed (the leader serves them, but
/// leadership may move during a phase).
fn counters(args: &SkewArgs) -> anyhow::Result<Counters> {
    let mut sum = Counters::default();
    for id in 1..=NODES {
        let (status, text) = http(args.http(id), "GET", "/metrics", "")?;
        if status != 200 {
            bail!("node {id} answered /metrics with {status}");
        }
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map_or(0, |value| value as u64)
        };
        sum.lease += value("synod_raft_reads_lease_total");
        sum.read_index += value("synod_raft_reads_read_index_total");
        sum.refused_skew += value("synod_raft_lease_refused_skew_total");
    }
    Ok(sum)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), bounded in time and
/// size: the status code and the body.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, HTTP_TIMEOUT)
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream
        .take(HTTP_ANSWER_SIZE_MAX)
        .read_to_end(&mut raw)
        .with_context(|| format!("no answer from {address}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("a malformed HTTP answer from {address}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    let status = status.with_context(|| format!("no status code from {address}"))?;
    Ok((status, body.to_string()))
}

/// Runs one `synod bench load` of lease reads and writes with a history; its JSON line.
/// Phase `phase` has keys of its own: a phase whose first write to a key failed would
/// otherwise read the previous phase's value, which its history does not hold.
fn measure(args: &SkewArgs, exe: &Path, phase: u64, history: &Path) -> anyhow::Result<Json> {
    let mut command = Command::new(exe);
    command
        .args(["bench", "load", "--target", "synod", "--json"])
        .args(["--endpoints", &args.endpoints(), "--workload", "mixed"])
        .args(["--level", "lease"])
        .args(["--read-percent", &READ_PERCENT.to_string()])
        .args(["--clients", &args.clients.to_string()])
        .args(["--keys", &args.keys.to_string()])
        .args(["--key-offset", &(phase * args.keys).to_string()])
        .args(["--duration-secs", &args.seconds.to_string()])
        .arg("--history")
        .arg(history);
    bench_load_result(&mut command)
}

/// Checks a phase's history for linearizability with synod-check, in-process.
fn check_history(path: &Path) -> anyhow::Result<Verdict> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the history {}", path.display()))?;
    let history = parse_recorded(&text)
        .map_err(|error| anyhow::anyhow!("the history {} is malformed: {error}", path.display()))?;
    // Only linearizability: the sequential search's budgets in `check_recorded` go unused.
    let models = Models {
        linearizable: true,
        sequential: false,
        session: false,
        lost_writes: false,
    };
    let report = check_recorded(&history, models, CHECK_KEY_TIMEOUT);
    if report.verdict != Verdict::Valid {
        eprintln!("lab skew: {}:\n{}", path.display(), report.text(&history));
    }
    Ok(report.verdict)
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "linearizable",
        Verdict::Violation => "NOT linearizable",
        Verdict::Unknown => "undecided",
    }
}

fn lease_name(suspended: bool) -> &'static str {
    if suspended { "suspended" } else { "served" }
}

fn settle_text(result: &PhaseResult) -> String {
    let expected = lease_name(result.plan.expect == Lease::Suspended);
    let settled = match result.settle {
        Some(settle) => format!("{expected} after {} ms", settle.as_millis()),
        None => format!("not {expected} within {} s", SETTLE_TIMEOUT.as_secs()),
    };
    match result.attempts {
        1 => settled,
        attempts => format!(
            "{settled} (measured {attempts} times: the leader changed during the earlier \
             attempts)"
        ),
    }
}

/// One row's figures, in the table's column order.
fn row_cells(result: &PhaseResult) -> [String; 11] {
    let load = &result.load;
    let get = &load["operations"]["get"];
    [
        result.plan.name.to_string(),
        format!("{} ppm", result.plan.drift_ppm),
        settle_text(result),
        format!("{} ppm", result.skew_ppm),
        lease_name(result.suspended).to_string(),
        result.counters.lease.to_string(),
        result.counters.read_index.to_string(),
        result.counters.refused_skew.to_string(),
        figure(load, "ops_per_sec").to_string(),
        format!(
            "{} / {}",
            millis(figure(get, "p50_us")),
            millis(figure(get, "p99_us"))
        ),
        verdict_name(result.verdict).to_string(),
    ]
}

const HEADERS: [&str; 11] = [
    "phase",
    "drift",
    "lease after the change",
    "skew proven",
    "lease at the end",
    "reads by lease",
    "reads by ReadIndex",
    "refused for skew",
    "ops/s",
    "read p50 / p99 (ms)",
    "history",
];

/// What each column means, for the legend under the table.
const COLUMN_EXPLANATIONS: [(&str, &str); 10] = [
    (
        "drift",
        "how much faster the follower's clock runs than real time (set with POST \
         /faults/clock); the others run true",
    ),
    (
        "lease after the change",
        "how long after the drift was set the leader's /status showed the lease state this \
         phase expects: suspension needs two samples far enough apart to prove the skew; \
         resumption needs the samples that proved it to leave the horizon",
    ),
    (
        "skew proven",
        "the leader's clock_skew_ppm_max at the end of the phase: the lower bound of the \
         measured rate difference towards its voters, so the true skew is at least this (the \
         measurement lags: it averages over the leader's horizon of samples)",
    ),
    (
        "lease at the end",
        "the leader's lease_suspended_by_skew at the end of the phase",
    ),
    (
        "reads by lease",
        "lease-level reads the leader answered from its state under the lease (Raft stat \
         reads_lease, summed over the nodes)",
    ),
    (
        "reads by ReadIndex",
        "lease-level reads that took a ReadIndex heartbeat round instead (reads_read_index): \
         with the lease suspended, or lapsed after an election",
    ),
    (
        "refused for skew",
        "lease reads turned into ReadIndex reads because a voter's skew was proven beyond the \
         bound (lease_refused_skew)",
    ),
    (
        "ops/s",
        "throughput of the whole load, lease reads and writes together",
    ),
    (
        "read p50 / p99",
        "latency of the lease reads: a ReadIndex read waits for a heartbeat round, a lease \
         read does not",
    ),
    (
        "history",
        "synod-check's verdict on the phase's history (linearizability, per key); the lease \
         must never cost linearizability",
    ),
];

fn render_markdown(args: &SkewArgs, drifted: u64, results: &[PhaseResult]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# synod lab skew: lease reads under clock drift\n");
    let _ = writeln!(
        text,
        "3 nodes, lease drift bound {} ppm ({}); node {drifted}'s clock drifts. Each phase: {} \
         closed-loop clients for {} s, {READ_PERCENT}% lease reads and the rest writes, over \
         {} keys, every history checked.\n",
        args.drift_bound_ppm,
        percent(args.drift_bound_ppm as i64),
        args.clients,
        args.seconds,
        args.keys
    );
    let _ = writeln!(text, "| {} | what happened and why |", HEADERS.join(" | "));
    let _ = writeln!(text, "|{}---|", "---|".repeat(HEADERS.len()));
    for result in results {
        let cells = row_cells(result);
        let _ = writeln!(
            text,
            "| {} | {} |",
            cells.join(" | "),
            result.plan.explanation
        );
    }
    let _ = writeln!(text, "\nWhat the columns mean:\n");
    for (column, explanation) in COLUMN_EXPLANATIONS {
        let _ = writeln!(text, "- **{column}**: {explanation}.");
    }
    let _ = writeln!(text, "\nHistories (check again with `synod check FILE`):\n");
    for result in results {
        let _ = writeln!(
            text,
            "- {}: `{}`",
            result.plan.name,
            result.history.display()
        );
    }
    let _ = writeln!(
        text,
        "\nThe lease trades an assumption (clocks drift apart no faster than the bound) for \
         reads without a round. synod checks the assumption instead of trusting it: followers \
         report their clocks in every append answer, and the leader stops leasing while a \
         voter's clock is proven to break the bound. Reproduce: `synod lab skew --seconds {} \
         --clients {}`.",
        args.seconds, args.clients
    );
    text
}

fn render_html(args: &SkewArgs, drifted: u64, results: &[PhaseResult]) -> String {
    let mut rows = String::new();
    for result in results {
        let served = result.counters.lease;
        let total = (served + result.counters.read_index).max(1);
        let width = (served * 200 / total) as usize;
        let _ = write!(rows, "<tr>");
        for cell in row_cells(result) {
            let _ = write!(rows, "<td>{}</td>", escape(&cell));
        }
        let _ = write!(
            rows,
            "<td><svg width=\"204\" height=\"14\"><rect width=\"200\" height=\"12\" \
             fill=\"#f8d7da\"/><rect width=\"{width}\" height=\"12\" fill=\"#198754\"/>\
             </svg></td><td>{}</td></tr>",
            escape(&result.plan.explanation)
        );
    }
    let headers: String = HEADERS
        .iter()
        .map(|header| format!("<th>{}</th>", escape(header)))
        .collect();
    let legend: String = COLUMN_EXPLANATIONS
        .iter()
        .map(|(column, text)| format!("<li><b>{}</b>: {}</li>", escape(column), escape(text)))
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>synod lab skew</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:90em}}\
         td,th{{border:1px solid #ccc;padding:4px;font-size:13px}}\
         table{{border-collapse:collapse}}</style></head><body>\
         <h1>synod lab skew: lease reads under clock drift</h1>\
         <p>3 nodes, lease drift bound {} ppm; node {drifted}'s clock drifts. Each phase: {} \
         clients for {} s, {READ_PERCENT}% lease reads, the rest writes, over {} keys. The bar \
         shows the share of lease reads served by the lease (green) against those that took \
         a ReadIndex round (red).</p><table><tr>{headers}<th>lease share</th>\
         <th>what happened and why</th></tr>{rows}</table><ul>{legend}</ul>\
         <p>synod checks the lease's clock assumption instead of trusting it: followers \
         report their clocks in every append answer, and the leader stops leasing while a \
         voter's clock is proven to break the bound.</p></body></html>\n",
        args.drift_bound_ppm, args.clients, args.seconds, args.keys
    )
}
