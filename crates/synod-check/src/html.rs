//! Self-contained HTML pages (inline SVG, no scripts or downloads) that draw a violation as a
//! timeline: a row per process, a bar per operation from invoke to completion, a time axis
//! and a legend.
//!
//! - `timeline`: a key that is not linearizable. The failing window is shaded, its
//!   operations outlined, the operation no order can complete in red.
//! - `sequential_timeline`: operations that no single order can explain (possibly on
//!   several keys; each label then names its key). Real time plays no part in sequential
//!   consistency, so only those operations are drawn, one equal slot each in the order of
//!   their invokes, labelled with their line numbers, not to a time scale.
//!
//! Labels are clipped to their bars (a label that does not fit is cut, and a bar too
//! narrow for any text has none); every bar has a tooltip with the full details. A bar that
//! starts before the drawn span, or goes on after it, ends in an arrow.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::history::{History, Outcome};
use crate::linearizable::LinearViolation;
use crate::sequential::SequentialViolation;

/// The most operations drawn around a window; beyond it only the window is drawn.
pub const OPERATIONS_DRAWN_MAX: usize = 2_000;

const WIDTH: f64 = 1200.0;
const ROW_HEIGHT: f64 = 26.0;
const BAR_HEIGHT: f64 = 18.0;
const LEFT: f64 = 110.0;
const RIGHT_MARGIN: f64 = 20.0;
/// Room above the rows for the time axis.
const AXIS_HEIGHT: f64 = 34.0;
/// Approximate width of one character of the 11 px monospace labels.
const CHARACTER_WIDTH: f64 = 6.7;
/// Bars narrower than this get no label (their tooltip still has it).
const LABEL_WIDTH_MIN: f64 = 3.0 * CHARACTER_WIDTH + 4.0;
const TICKS_COUNT_WANTED: u64 = 8;

const FRAME: Frame = Frame {
    width: WIDTH,
    left: LEFT,
    right_margin: RIGHT_MARGIN,
    axis_height: AXIS_HEIGHT,
    row_height: ROW_HEIGHT,
};

const FILL_OK: &str = "#8fb8e8";
const FILL_INFO: &str = "#c8c8c8";
const FILL_FAIL: &str = "#f4f4f4";
const FILL_FAILING: &str = "#d83030";
const FILL_WINDOW: &str = "#fff1b8";

/// What one page shows.
struct Drawing<'a> {
    history: &'a History,
    title: String,
    explanation: String,
    /// Indices into `History::operations`, drawn.
    shown: Vec<usize>,
    outlined: BTreeSet<usize>,
    failing: Option<usize>,
    /// The shaded span, and the drawn span (nanoseconds).
    window: (u64, u64),
    view: (u64, u64),
    /// Labels name their key (the drawing spans several keys).
    label_keys: bool,
    legend_outlined: &'static str,
    /// One equal slot per operation in invoke order instead of a time scale.
    by_order: bool,
}

/// Where a bar is drawn: its left and right edges, and whether it goes on beyond them.
#[derive(Clone, Copy)]
struct Extent {
    left: f64,
    right: f64,
    continues_left: bool,
    continues_right: bool,
}

/// Renders the timeline of `violation`'s key.
pub fn timeline(history: &History, violation: &LinearViolation) -> String {
    let failing = &history.operations[violation.operation];
    let window_end = failing.complete_time.unwrap_or(failing.invoke_time);
    let window_start = violation.window_start_time.min(failing.invoke_time);
    let view = padded(window_start, window_end);
    let key = failing.key;
    let mut shown: Vec<usize> = (0..history.operations.len())
        .filter(|&index| history.operations[index].key == key && overlaps(history, index, view))
        .collect();
    if shown.len() > OPERATIONS_DRAWN_MAX {
        shown = violation.window.clone();
    }
    let drawing = Drawing {
        history,
        title: format!("Key {} is not linearizable", violation.key),
        explanation: violation.explanation.clone(),
        shown,
        outlined: violation.window.iter().copied().collect(),
        failing: Some(violation.operation),
        window: (window_start, window_end),
        view,
        label_keys: false,
        legend_outlined: "in the failing window",
        by_order: false,
    };
    render(&drawing)
}

/// Renders the operations of a sequential-consistency violation (all their keys).
pub fn sequential_timeline(history: &History, violation: &SequentialViolation) -> String {
    let mut shown = violation.operations.clone();
    shown.sort_by_key(|&index| history.operations[index].invoke_position);
    let keys: BTreeSet<u32> = shown
        .iter()
        .map(|&index| history.operations[index].key)
        .collect();
    let names: Vec<String> = violation
        .keys
        .iter()
        .map(|key| format!("{key:?}"))
        .collect();
    let drawing = Drawing {
        history,
        title: format!("Not sequentially consistent: keys {}", names.join(", ")),
        explanation: violation.explanation.clone(),
        outlined: shown.iter().copied().collect(),
        shown,
        failing: None,
        window: (0, 0),
        view: (0, 0),
        label_keys: keys.len() > 1,
        legend_outlined: "in the conflict (no single order explains them)",
        by_order: true,
    };
    render(&drawing)
}

/// The span `start..end` with a quarter of its length added on each side.
fn padded(start: u64, end: u64) -> (u64, u64) {
    let span = end.saturating_sub(start).max(1);
    (start.saturating_sub(span / 4), end.saturating_add(span / 4))
}

/// Whether the operation is drawn in `view`: it was running then (by its lines) and can
/// matter (an info read has no effect and is left out).
fn overlaps(history: &History, index: usize, view: (u64, u64)) -> bool {
    let operation = &history.operations[index];
    let is_info_read = operation.outcome == Outcome::Info
        && matches!(operation.call, crate::history::Call::Read(_));
    operation.invoke_time <= view.1
        && operation.complete_time.is_none_or(|time| time >= view.0)
        && !is_info_read
}

fn render(drawing: &Drawing) -> String {
    let mut rows: BTreeMap<u64, usize> = BTreeMap::new();
    for &index in &drawing.shown {
        rows.insert(drawing.history.operations[index].process, 0);
    }
    for (row, slot) in rows.values_mut().enumerate() {
        *slot = row;
    }
    let rows_height = rows.len() as f64 * ROW_HEIGHT;
    let height = AXIS_HEIGHT + rows_height + 8.0;
    let mut svg = FRAME.svg_open(height);
    for (process, row) in &rows {
        let y = AXIS_HEIGHT + *row as f64 * ROW_HEIGHT;
        FRAME.write_row_label(&mut svg, y, &format!("process {process}"), row % 2 == 1);
    }
    let extents = if drawing.by_order {
        write_order_axis(&mut svg, drawing, rows_height)
    } else {
        write_time_axis(&mut svg, drawing, rows_height)
    };
    for (&index, extent) in drawing.shown.iter().zip(&extents) {
        let row = rows[&drawing.history.operations[index].process];
        write_bar(
            &mut svg,
            drawing,
            index,
            AXIS_HEIGHT + row as f64 * ROW_HEIGHT,
            *extent,
        );
    }
    svg.push_str("</svg>");
    page(drawing, &svg)
}

/// The shaded window, the time axis, and every shown bar's extent on the time scale.
fn write_time_axis(svg: &mut String, drawing: &Drawing, rows_height: f64) -> Vec<Extent> {
    let (view_start, view_end) = drawing.view;
    let scale = (WIDTH - LEFT - RIGHT_MARGIN) / (view_end - view_start).max(1) as f64;
    let x = |time: u64| LEFT + (time.clamp(view_start, view_end) - view_start) as f64 * scale;
    let (window_left, window_right) = (x(drawing.window.0), x(drawing.window.1));
    let _ = write!(
        svg,
        "<rect x=\"{window_left:.1}\" y=\"{AXIS_HEIGHT}\" width=\"{:.1}\" \
         height=\"{rows_height}\" fill=\"{FILL_WINDOW}\" fill-opacity=\"0.8\"/>",
        (window_right - window_left).max(1.0)
    );
    write_axis(svg, drawing.view, &x, rows_height);
    drawing
        .shown
        .iter()
        .map(|&index| {
            let operation = &drawing.history.operations[index];
            let end = match operation.outcome {
                Outcome::Info => view_end,
                Outcome::Ok | Outcome::Fail => operation.complete_time.unwrap_or(view_end),
            };
            let left = x(operation.invoke_time);
            Extent {
                left,
                right: x(end).max(left + 2.0),
                continues_left: operation.invoke_time < view_start,
                continues_right: end >= view_end
                    && operation.complete_time.is_none_or(|time| time > view_end),
            }
        })
        .collect()
}

/// One slot per shown operation, in invoke order, each labelled with its line number above.
fn write_order_axis(svg: &mut String, drawing: &Drawing, rows_height: f64) -> Vec<Extent> {
    let slot_width = (WIDTH - LEFT - RIGHT_MARGIN) / drawing.shown.len().max(1) as f64;
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"14\" fill=\"#555\">invoke order (not to scale)</text>"
    );
    let mut extents = Vec::new();
    for (slot, &index) in drawing.shown.iter().enumerate() {
        let left = LEFT + slot as f64 * slot_width;
        let middle = left + slot_width / 2.0;
        let line = drawing.history.operations[index].invoke_line;
        let _ = write!(
            svg,
            "<line x1=\"{left:.1}\" y1=\"{AXIS_HEIGHT}\" x2=\"{left:.1}\" y2=\"{:.1}\" \
             stroke=\"#e4e4e4\"/><text x=\"{middle:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             fill=\"#555\">line {line}</text>",
            AXIS_HEIGHT + rows_height,
            AXIS_HEIGHT - 10.0
        );
        extents.push(Extent {
            left: left + 4.0,
            right: left + slot_width - 4.0,
            continues_left: false,
            continues_right: false,
        });
    }
    extents
}

/// Tick marks and labels above the rows, with faint lines down through them.
fn write_axis(svg: &mut String, view: (u64, u64), x: &dyn Fn(u64) -> f64, rows_height: f64) {
    let step = tick_step(view.1 - view.0);
    let first = view.0.div_ceil(step) * step;
    FRAME.write_axis_title(svg, "ns");
    let mut tick = first;
    while tick <= view.1 {
        let at = x(tick);
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <line x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{tick}</text>",
            AXIS_HEIGHT,
            AXIS_HEIGHT + rows_height,
            AXIS_HEIGHT - 8.0,
            AXIS_HEIGHT - 4.0,
            AXIS_HEIGHT - 12.0,
        );
        tick += step;
    }
}

/// The frame of a timeline drawing: its width, the room left of the plot for the row
/// labels and right of it, the band above the rows for the time axis, and a row's height.
/// `synod nemesis` draws its report in a frame of its own.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub width: f64,
    pub left: f64,
    pub right_margin: f64,
    pub axis_height: f64,
    pub row_height: f64,
}

impl Frame {
    /// Opens an SVG element `height` pixels high, in the labels' font.
    pub fn svg_open(&self, height: f64) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height:.0}\" \
             font-family=\"monospace\" font-size=\"11\">",
            self.width
        )
    }

    /// Writes a row's `label` (HTML, already escaped) for the row at `y`, on a faint band
    /// across the drawing when `striped`.
    pub fn write_row_label(&self, svg: &mut String, y: f64, label: &str, striped: bool) {
        if striped {
            let _ = write!(
                svg,
                "<rect x=\"0\" y=\"{y:.1}\" width=\"{}\" height=\"{}\" fill=\"#f6f8fb\"/>",
                self.width, self.row_height
            );
        }
        let _ = write!(svg, "<text x=\"4\" y=\"{:.1}\">{label}</text>", y + 16.0);
    }

    /// Writes the time axis's title, `time (unit)`, and the line under its ticks.
    pub fn write_axis_title(&self, svg: &mut String, unit: &str) {
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"14\" fill=\"#555\">time ({unit})</text><line x1=\"{}\" \
             y1=\"{2}\" x2=\"{1}\" y2=\"{2}\" stroke=\"#888\"/>",
            self.left,
            self.width - self.right_margin,
            self.axis_height - 4.0,
        );
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving about `TICKS_COUNT_WANTED` ticks.
/// `synod nemesis` draws its report's time axis with it too.
pub fn tick_step(span: u64) -> u64 {
    let raw = (span / TICKS_COUNT_WANTED).max(1);
    let mut power = 1u64;
    while power.saturating_mul(10) <= raw {
        power *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|factor| factor * power)
        .find(|&step| step >= raw)
        .unwrap_or(power * 10)
}

fn write_bar(svg: &mut String, drawing: &Drawing, index: usize, y: f64, extent: Extent) {
    let operation = &drawing.history.operations[index];
    let (left, right) = (extent.left, extent.right);
    let width = right - left;
    let is_failing = drawing.failing == Some(index);
    let (fill, text_fill) = match (is_failing, operation.outcome) {
        (true, _) => (FILL_FAILING, "#ffffff"),
        (false, Outcome::Ok) => (FILL_OK, "#000000"),
        (false, Outcome::Info) => (FILL_INFO, "#000000"),
        (false, Outcome::Fail) => (FILL_FAIL, "#777777"),
    };
    let (stroke, stroke_width) = if drawing.outlined.contains(&index) {
        ("#202020", 1.6)
    } else {
        ("#9aa4b0", 0.8)
    };
    let dash = if operation.outcome == Outcome::Fail {
        " stroke-dasharray=\"3 2\""
    } else {
        ""
    };
    let key = &drawing.history.keys[operation.key as usize];
    let call = operation.call.to_string();
    let label = if drawing.label_keys {
        format!("{key}: {call}")
    } else {
        call.clone()
    };
    let title = format!(
        "process {} {} on key {key:?} ({}) {} .. {} ns, line {}",
        operation.process,
        call,
        format!("{:?}", operation.outcome).to_lowercase(),
        operation.invoke_time,
        operation
            .complete_time
            .map_or("never".into(), |time| time.to_string()),
        operation.invoke_line
    );
    let _ = write!(
        svg,
        "<g><title>{}</title><rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{width:.1}\" \
         height=\"{BAR_HEIGHT}\" fill=\"{fill}\" stroke=\"{stroke}\" \
         stroke-width=\"{stroke_width}\"{dash}/>",
        escape(&title),
        y + 4.0,
    );
    if width >= LABEL_WIDTH_MIN {
        // A nested svg clips its content: the label never runs past its bar.
        let _ = write!(
            svg,
            "<svg x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{BAR_HEIGHT}\">\
             <text x=\"3\" y=\"13\" fill=\"{text_fill}\">{}</text></svg>",
            y + 4.0,
            width - 2.0,
            escape(&label)
        );
    }
    let middle = y + 4.0 + BAR_HEIGHT / 2.0;
    if extent.continues_left {
        let _ = write!(
            svg,
            "<path d=\"M{0:.1} {1:.1} l6 -5 v10 z\" fill=\"#555\"/>",
            left - 8.0,
            middle
        );
    }
    if extent.continues_right {
        let _ = write!(
            svg,
            "<path d=\"M{0:.1} {1:.1} l-6 -5 v10 z\" fill=\"#555\"/>",
            right + 8.0,
            middle
        );
    }
    svg.push_str("</g>");
}

fn legend(drawing: &Drawing) -> String {
    let swatch = |fill: &str, stroke: &str, extra: &str| {
        format!(
            "<svg width=\"26\" height=\"14\" style=\"vertical-align:middle\"><rect x=\"1\" \
             y=\"1\" width=\"24\" height=\"12\" fill=\"{fill}\" stroke=\"{stroke}\" \
             stroke-width=\"1.4\"{extra}/></svg>"
        )
    };
    let mut items = vec![
        format!("{} ok", swatch(FILL_OK, "#9aa4b0", "")),
        format!(
            "{} info: unknown outcome{}",
            swatch(FILL_INFO, "#9aa4b0", ""),
            if drawing.by_order {
                ""
            } else {
                ", drawn to the end"
            }
        ),
        format!(
            "{} fail: did not happen",
            swatch(FILL_FAIL, "#9aa4b0", " stroke-dasharray=\"3 2\"")
        ),
        format!(
            "{} outlined: {}",
            swatch("#ffffff", "#202020", ""),
            drawing.legend_outlined
        ),
    ];
    if !drawing.by_order {
        items.push(format!(
            "{} shaded: the failing window",
            swatch(FILL_WINDOW, FILL_WINDOW, "")
        ));
        items.push("&#9664; &#9654; the bar goes on beyond the drawn span".to_string());
    }
    if drawing.failing.is_some() {
        items.insert(
            3,
            format!(
                "{} the operation no order can complete",
                swatch(FILL_FAILING, "#202020", "")
            ),
        );
    }
    let spans: Vec<String> = items
        .into_iter()
        .map(|item| format!("<span class=\"item\">{item}</span>"))
        .collect();
    format!("<div class=\"legend\">{}</div>", spans.join(""))
}

fn page(drawing: &Drawing, svg: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>synod check: {}</title>\
         <style>body{{font-family:sans-serif;margin:20px;color:#111}} p{{max-width:62em}} \
         .legend{{margin:10px 0 6px;font-size:13px}} .item{{margin-right:18px;\
         white-space:nowrap;display:inline-block;margin-bottom:4px}}</style></head><body>\
         <h1>{}</h1><p>{}</p>{}<p style=\"font-size:13px;color:#555\">Hover a bar for its \
         process, outcome, times and line.{}</p><div style=\"overflow-x:auto\">{svg}</div>\
         </body></html>\n",
        escape(&drawing.title),
        escape(&drawing.title),
        escape(&capitalized(&drawing.explanation)),
        legend(drawing),
        if drawing.by_order {
            " Only the conflicting operations are drawn, in the order they were invoked: \
             sequential consistency does not depend on real time."
        } else {
            ""
        },
    )
}

/// The text with its first letter in upper case (explanations are written to follow a
/// heading in the text report).
fn capitalized(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// `text` with the characters HTML gives a meaning to (`& < > "`) escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round() {
        // Checks that tick steps are 1, 2 or 5 times a power of ten and give at most about
        // eight ticks.
        let table = [
            (0, 1),
            (7, 1),
            (80, 10),
            (100, 20),
            (2_248, 500),
            (1_000_000, 200_000),
        ];
        for (span, step) in table {
            assert_eq!(tick_step(span), step, "span {span}");
        }
    }
}
