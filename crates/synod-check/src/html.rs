//! A self-contained HTML page (inline SVG, no scripts or downloads) that draws one key's
//! operations as a timeline: a row per process, a bar per operation from invoke to
//! completion, the failing window shaded and its operations outlined, the operation no
//! order can complete in red.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{History, Outcome};
use crate::linearizable::LinearViolation;

/// The most operations drawn around a window; beyond it only the window is drawn.
pub const OPERATIONS_DRAWN_MAX: usize = 2_000;

const WIDTH: f64 = 1200.0;
const ROW_HEIGHT: f64 = 26.0;
const LEFT: f64 = 110.0;

/// Renders the timeline of `violation`'s key.
pub fn timeline(history: &History, violation: &LinearViolation) -> String {
    let failing = &history.operations[violation.operation];
    let window_end = failing.complete_time.unwrap_or(failing.invoke_time);
    let window_start = violation.window_start_time.min(failing.invoke_time);
    let span = window_end.saturating_sub(window_start).max(1);
    let (view_start, view_end) = (window_start.saturating_sub(span / 4), window_end + span / 4);
    let key = history.operations[violation.operation].key;
    let mut shown: Vec<usize> = (0..history.operations.len())
        .filter(|&index| {
            let operation = &history.operations[index];
            operation.key == key
                && operation.invoke_time <= view_end
                && operation
                    .complete_time
                    .is_none_or(|time| time >= view_start)
        })
        .collect();
    if shown.len() > OPERATIONS_DRAWN_MAX {
        shown = violation.window.clone();
    }
    let mut rows: BTreeMap<u64, usize> = BTreeMap::new();
    for &index in &shown {
        rows.insert(history.operations[index].process, 0);
    }
    for (row, slot) in rows.values_mut().enumerate() {
        *slot = row;
    }
    let scale = (WIDTH - LEFT - 20.0) / (view_end - view_start).max(1) as f64;
    let x = |time: u64| LEFT + (time.clamp(view_start, view_end) - view_start) as f64 * scale;
    let height = (rows.len() as f64 + 2.0) * ROW_HEIGHT;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"monospace\" font-size=\"11\">"
    );
    let _ = write!(
        svg,
        "<rect x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"#fff3c4\"/>",
        x(window_start),
        (x(window_end) - x(window_start)).max(1.0)
    );
    for (process, row) in &rows {
        let y = (*row as f64 + 1.0) * ROW_HEIGHT;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{:.1}\">process {process}</text>",
            y + 14.0
        );
    }
    let in_window: std::collections::BTreeSet<usize> = violation.window.iter().copied().collect();
    for &index in &shown {
        let operation = &history.operations[index];
        let y = (rows[&operation.process] as f64 + 1.0) * ROW_HEIGHT;
        let end = match operation.outcome {
            Outcome::Info => view_end,
            Outcome::Ok | Outcome::Fail => operation.complete_time.unwrap_or(view_end),
        };
        let (left, right) = (
            x(operation.invoke_time),
            x(end).max(x(operation.invoke_time) + 2.0),
        );
        let fill = match (index == violation.operation, operation.outcome) {
            (true, _) => "#e04040",
            (false, Outcome::Ok) => "#8fb8e8",
            (false, Outcome::Info) => "#d0d0d0",
            (false, Outcome::Fail) => "#f0f0f0",
        };
        let stroke = if in_window.contains(&index) {
            "#202020"
        } else {
            "#a0a0a0"
        };
        let label = escape(&operation.call.to_string());
        let _ = write!(
            svg,
            "<g><title>process {} {} ({:?}) {} .. {} ns, line {}</title>\
             <rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"18\" fill=\"{fill}\" \
             stroke=\"{stroke}\"/><text x=\"{:.1}\" y=\"{:.1}\">{label}</text></g>",
            operation.process,
            label,
            operation.outcome,
            operation.invoke_time,
            operation
                .complete_time
                .map_or("never".into(), |time| time.to_string()),
            operation.invoke_line,
            y + 2.0,
            right - left,
            left + 2.0,
            y + 15.0,
        );
    }
    svg.push_str("</svg>");
    page(violation, &svg)
}

fn page(violation: &LinearViolation, svg: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>synod check: key {}</title>\
         <style>body{{font-family:sans-serif;margin:20px}} p{{max-width:60em}}</style></head>\
         <body><h1>Key {} is not linearizable</h1><p>{}</p><p>Shaded: the failing window. \
         Outlined: its operations. Red: the operation no order can complete. Grey: info \
         operations (unknown outcome, drawn to the end). Hover a bar for details.</p>\
         <div style=\"overflow-x:auto\">{svg}</div></body></html>\n",
        escape(&violation.key),
        escape(&violation.key),
        escape(&violation.explanation),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
