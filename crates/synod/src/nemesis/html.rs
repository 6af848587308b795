//! The report as one self-contained HTML page (inline SVG, no scripts, nothing fetched):
//! the faults as bars per node over time, the clients' answers, failures and unknown
//! outcomes per bucket, their p99 latency per bucket, the recovery figures, the fault table
//! and the checker's verdicts. Every bar has a tooltip with the full details.

use std::fmt::Write as _;

use synod_check::html::{Frame, escape, tick_step};

use super::report::{self, FaultFigures, RunSummary};
use super::schedule::Kind;
use super::timeline::{self, Bucket};

const WIDTH: f64 = 1200.0;
/// Room left of the plots for the row labels, and right of them.
const LEFT: f64 = 90.0;
const RIGHT_MARGIN: f64 = 20.0;
const AXIS_HEIGHT: f64 = 28.0;
const ROW_HEIGHT: f64 = 24.0;
const CHART_HEIGHT: f64 = 140.0;
const FRAME: Frame = Frame {
    width: WIDTH,
    left: LEFT,
    right_margin: RIGHT_MARGIN,
    axis_height: AXIS_HEIGHT,
    row_height: ROW_HEIGHT,
};
const FILL_ANSWERED: &str = "#5bb07a";
const FILL_FAILED: &str = "#d83030";
const FILL_UNKNOWN: &str = "#b0b0b0";
const FILL_FAULT_SPAN: &str = "#fff1b8";
const STROKE_LATENCY: &str = "#2060c0";

fn kind_fill(kind: Kind) -> &'static str {
    match kind {
        Kind::Kill => "#d83030",
        Kind::Pause => "#e08a1e",
        Kind::Partition => "#7a4fc0",
        Kind::Clock => "#1f8fa8",
        Kind::Membership => "#3c9a3c",
        Kind::Disk => "#7a5a3a",
        Kind::SlowDisk => "#b08a5a",
        Kind::FailingDisk => "#5a3a1a",
    }
}

/// The x scale shared by every plot: nanoseconds since the origin to pixels.
struct Scale {
    end: u64,
}

impl Scale {
    fn x(&self, time: u64) -> f64 {
        let span = (WIDTH - LEFT - RIGHT_MARGIN) / self.end.max(1) as f64;
        LEFT + time.min(self.end) as f64 * span
    }

    /// Seconds ticks along the top of a plot `height` high, with faint lines down it.
    fn axis(&self, svg: &mut String, height: f64) {
        let end_ms = self.end / 1_000_000;
        let step_ms = tick_step(end_ms).max(1);
        FRAME.write_axis_title(svg, "s");
        // Bounded: tick_step gives about eight ticks over the span.
        let mut tick_ms = 0;
        while tick_ms <= end_ms {
            let at = self.x(tick_ms * 1_000_000);
            let _ = write!(
                svg,
                "<line x1=\"{at:.1}\" y1=\"{AXIS_HEIGHT}\" x2=\"{at:.1}\" y2=\"{:.1}\" \
                 stroke=\"#e4e4e4\"/><text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                 fill=\"#555\">{}</text>",
                AXIS_HEIGHT + height,
                AXIS_HEIGHT - 10.0,
                tick_ms as f64 / 1e3
            );
            tick_ms += step_ms;
        }
    }
}

/// A row per node, a bar per fault on each node it acts on (a partition in the lower half
/// of the row, so it shows beside another fault on the node), a red mark per crash.
fn fault_timeline(summary: &RunSummary<'_>, scale: &Scale) -> String {
    let rows_height = summary.nodes_total as f64 * ROW_HEIGHT;
    let mut svg = FRAME.svg_open(AXIS_HEIGHT + rows_height + 6.0);
    for node in 1..=summary.nodes_total {
        let y = AXIS_HEIGHT + (node - 1) as f64 * ROW_HEIGHT;
        FRAME.write_row_label(&mut svg, y, &format!("node {node}"), node % 2 == 0);
    }
    scale.axis(&mut svg, rows_height);
    for record in summary.faults {
        let kind = record.fault.kind();
        let (offset, height) = match kind {
            Kind::Partition => (13.0, 9.0),
            _ => (2.0, 11.0),
        };
        let left = scale.x(record.start);
        let width = (scale.x(record.end) - left).max(2.0);
        let title = format!(
            "{:.2}-{:.2} s: {}{}",
            report::seconds(record.start),
            report::seconds(record.end),
            record.fault,
            match record.note.is_empty() {
                true => String::new(),
                false => format!(" ({})", record.note),
            }
        );
        for node in record.fault.nodes() {
            let y = AXIS_HEIGHT + node.saturating_sub(1) as f64 * ROW_HEIGHT + offset;
            let _ = write!(
                svg,
                "<rect x=\"{left:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height}\" \
                 fill=\"{}\" fill-opacity=\"0.85\"><title>{}</title></rect>",
                kind_fill(kind),
                escape(&title)
            );
        }
    }
    for (node, time, status) in summary.crashes {
        let at = scale.x(*time);
        let y = AXIS_HEIGHT + node.saturating_sub(1) as f64 * ROW_HEIGHT;
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{y:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#000\" \
             stroke-width=\"3\"><title>node {node} exited on its own at {:.2} s: {}</title>\
             </line>",
            y + ROW_HEIGHT,
            report::seconds(*time),
            escape(status)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Faint spans behind a chart where faults were in force.
fn fault_spans(svg: &mut String, summary: &RunSummary<'_>, scale: &Scale) {
    for record in summary.faults {
        let left = scale.x(record.start);
        let width = (scale.x(record.end) - left).max(1.0);
        let _ = write!(
            svg,
            "<rect x=\"{left:.1}\" y=\"{AXIS_HEIGHT}\" width=\"{width:.1}\" \
             height=\"{CHART_HEIGHT}\" fill=\"{FILL_FAULT_SPAN}\" fill-opacity=\"0.6\"/>"
        );
    }
}

/// Stacked bars per bucket: answered, failed, unknown.
fn throughput_chart(summary: &RunSummary<'_>, buckets: &[Bucket], width: u64) -> String {
    let scale = Scale {
        end: summary.workload_end,
    };
    let mut svg = FRAME.svg_open(AXIS_HEIGHT + CHART_HEIGHT + 6.0);
    fault_spans(&mut svg, summary, &scale);
    scale.axis(&mut svg, CHART_HEIGHT);
    let total = |bucket: &Bucket| bucket.answered + bucket.failed + bucket.unknown;
    let most = buckets.iter().map(total).max().unwrap_or(0).max(1);
    let per_second = 1e9 / width as f64;
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{:.1}\" fill=\"#555\">{:.0}/s</text>\
         <text x=\"4\" y=\"{:.1}\" fill=\"#555\">0</text>",
        AXIS_HEIGHT + 10.0,
        most as f64 * per_second,
        AXIS_HEIGHT + CHART_HEIGHT
    );
    let bottom = AXIS_HEIGHT + CHART_HEIGHT;
    for (index, bucket) in buckets.iter().enumerate() {
        let start = index as u64 * width;
        let left = scale.x(start);
        let bar_width = (scale.x(start + width) - left).max(1.0);
        let mut y = bottom;
        for (count, fill) in [
            (bucket.answered, FILL_ANSWERED),
            (bucket.failed, FILL_FAILED),
            (bucket.unknown, FILL_UNKNOWN),
        ] {
            if count == 0 {
                continue;
            }
            let height = count as f64 * CHART_HEIGHT / most as f64;
            y -= height;
            let _ = write!(
                svg,
                "<rect x=\"{left:.1}\" y=\"{y:.1}\" width=\"{bar_width:.1}\" \
                 height=\"{height:.1}\" fill=\"{fill}\"><title>{:.2} s: {} answered, {} \
                 failed, {} unknown</title></rect>",
                report::seconds(start),
                bucket.answered,
                bucket.failed,
                bucket.unknown
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The p99 latency per bucket as a line (buckets with no completion are skipped).
fn latency_chart(summary: &RunSummary<'_>, buckets: &[Bucket], width: u64) -> String {
    let scale = Scale {
        end: summary.workload_end,
    };
    let mut svg = FRAME.svg_open(AXIS_HEIGHT + CHART_HEIGHT + 6.0);
    fault_spans(&mut svg, summary, &scale);
    scale.axis(&mut svg, CHART_HEIGHT);
    let most = buckets
        .iter()
        .map(|bucket| bucket.latency_p99_nanos)
        .max()
        .unwrap_or(0)
        .max(1_000_000);
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{:.1}\" fill=\"#555\">{:.0} ms</text>\
         <text x=\"4\" y=\"{:.1}\" fill=\"#555\">0</text>",
        AXIS_HEIGHT + 10.0,
        most as f64 / 1e6,
        AXIS_HEIGHT + CHART_HEIGHT
    );
    let bottom = AXIS_HEIGHT + CHART_HEIGHT;
    // One line per run of buckets with completions: a bucket with none breaks the line
    // rather than drawing a slope through a time nothing completed.
    let mut lines: Vec<String> = vec![String::new()];
    for (index, bucket) in buckets.iter().enumerate() {
        if bucket.answered + bucket.failed + bucket.unknown == 0 {
            lines.push(String::new());
            continue;
        }
        let middle = scale.x(index as u64 * width + width / 2);
        let y = bottom - bucket.latency_p99_nanos as f64 * CHART_HEIGHT / most as f64;
        if let Some(line) = lines.last_mut() {
            let _ = write!(line, "{middle:.1},{y:.1} ");
        }
        let _ = write!(
            svg,
            "<circle cx=\"{middle:.1}\" cy=\"{y:.1}\" r=\"1.5\" fill=\"{STROKE_LATENCY}\">\
             <title>{:.2} s: p99 {:.1} ms</title></circle>",
            report::seconds(index as u64 * width),
            bucket.latency_p99_nanos as f64 / 1e6
        );
    }
    for points in lines.iter().filter(|points| !points.is_empty()) {
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{STROKE_LATENCY}\" \
             stroke-width=\"1.2\"/>",
            points.trim_end()
        );
    }
    svg.push_str("</svg>");
    svg
}

fn legend() -> String {
    let mut items = String::new();
    for kind in Kind::ALL {
        let _ = write!(
            items,
            "<span class=\"item\"><span class=\"swatch\" style=\"background:{}\"></span>{}\
             </span>",
            kind_fill(kind),
            kind.name()
        );
    }
    let _ = write!(
        items,
        "<span class=\"item\"><span class=\"swatch\" style=\"background:#000\"></span>\
         a node exited on its own</span>"
    );
    format!("<div class=\"legend\">{items}</div>")
}

fn fault_table(summary: &RunSummary<'_>, figures: &[FaultFigures]) -> String {
    let mut rows = String::new();
    for (index, (record, figure)) in summary.faults.iter().zip(figures).enumerate() {
        let _ = write!(
            rows,
            "<tr><td>{}{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            index + 1,
            report::fault_mark(record, figure),
            report::seconds(record.start),
            report::seconds(record.end),
            escape(&record.fault.to_string()),
            report::availability_cell(figure.during),
            report::availability_cell(figure.after),
            report::p99_cell(figure),
            report::recovery_cell(figure),
            escape(&report::fault_note(record))
        );
    }
    format!(
        "<table><tr><th>#</th><th>start s</th><th>end s</th><th>fault</th><th>during</th>\
         <th>after 3 s</th><th>p99 ms</th><th>recovery</th><th>note</th></tr>{rows}</table>"
    )
}

fn verdicts(summary: &RunSummary<'_>) -> String {
    let check = summary.check;
    let mut items = vec![format!(
        "overall: <b>{}</b> ({} operations on {} keys, checked in {:.1} s)",
        check.verdict.name(),
        check.operations,
        check.keys,
        summary.check_seconds
    )];
    if let Some(model) = &check.linearizable {
        items.push(format!("linearizable: {}", model.verdict.name()));
    }
    if let Some(model) = &check.sequential {
        items.push(format!("sequential: {}", model.verdict.name()));
    }
    if let Some(model) = &check.session {
        items.push(format!("session guarantees: {}", model.verdict.name()));
    }
    items.push(format!(
        "lost acknowledged writes: {}",
        summary.lost_writes_count()
    ));
    items.push(format!(
        "nodes that crashed on their own: {}",
        summary.crashes.len()
    ));
    let list: String = items
        .iter()
        .map(|item| format!("<li>{item}</li>"))
        .collect();
    format!("<ul>{list}</ul>")
}

/// The whole page.
pub fn page(summary: &RunSummary<'_>) -> String {
    let completed = timeline::completed(summary.events);
    let figures = report::fault_figures(summary, &completed);
    let width = timeline::bucket_width(summary.workload_end);
    let buckets = timeline::buckets(&completed, width, summary.workload_end);
    let scale = Scale {
        end: summary.workload_end,
    };
    let outcome = if summary.passed() { "PASS" } else { "FAIL" };
    let recovery: String = report::recovery_lines(summary, &figures)
        .iter()
        .map(|line| format!("<li>{}</li>", escape(line)))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>synod nemesis: {outcome}\
         </title><style>body{{font-family:sans-serif;margin:20px;color:#111}} \
         table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ddd;\
         padding:2px 6px;text-align:left}} .legend{{margin:8px 0;font-size:13px}} \
         .item{{margin-right:16px;white-space:nowrap;display:inline-block}} \
         .swatch{{display:inline-block;width:12px;height:12px;margin-right:4px;\
         vertical-align:middle}}</style></head><body><h1>synod nemesis: {outcome}</h1>\
         <p>seed {} (rerun with <code>--seed {}</code>); {} voters, {} nodes in all, {} \
         clients, {} keys; election timeout {} ms; <code>{}</code></p>{}\
         <h2>Faults over time</h2>{}{}\
         <h2>Client operations per {} ms</h2><p>green: answered (a refused compare-and-set \
         is an answer); red: failed; grey: unknown outcome. Shaded: a fault in force.</p>{}\
         <h2>p99 latency per {} ms</h2>{}<h2>Recovery</h2><ul>{recovery}</ul>\
         <h2>Faults</h2>{}</body></html>\n",
        summary.seed,
        summary.seed,
        summary.nodes,
        summary.nodes_total,
        summary.clients,
        summary.keys,
        summary.election_timeout_ms,
        escape(&summary.command),
        verdicts(summary),
        legend(),
        fault_timeline(summary, &scale),
        width / 1_000_000,
        throughput_chart(summary, &buckets, width),
        width / 1_000_000,
        latency_chart(summary, &buckets, width),
        fault_table(summary, &figures),
    )
}
