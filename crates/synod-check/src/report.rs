//! The verdicts, gathered from every key, as text for people and JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::history::History;
use crate::linearizable::{KeyLinearizability, LinearViolation};
use crate::lost::LostWrite;
use crate::sequential::{
    HistorySequential, KeySequential, SequentialMethod, SequentialScope, SequentialViolation,
};
use crate::session::{Ambiguity, Guarantee, SessionUndecided, SessionViolation};
use crate::{KeyResults, Models};

/// A model's verdict. `Unknown` is never counted as valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Unknown,
    Violation,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Violation => "VIOLATION",
        }
    }
}

/// A key whose search stopped before deciding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUnknown {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinearizableReport {
    pub verdict: Verdict,
    pub keys_valid: usize,
    pub violations: Vec<LinearViolation>,
    pub unknown: Vec<KeyUnknown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SequentialReport {
    pub verdict: Verdict,
    /// Always "whole history": one order of every key's operations together.
    pub scope: &'static str,
    pub method: SequentialMethod,
    /// Keys whose own operations have a sequential order.
    pub keys_valid: usize,
    pub violations: Vec<SequentialViolation>,
    /// Keys whose own search stopped before deciding (the whole-history search, when it
    /// runs, decides regardless).
    pub keys_unknown: Vec<KeyUnknown>,
    /// Why the whole-history search stopped before deciding.
    pub unknown_reason: Option<String>,
    /// Configurations the whole-history search expanded (0 when it did not run).
    pub search_nodes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuaranteeReport {
    pub guarantee: Guarantee,
    pub verdict: Verdict,
    pub violations: Vec<SessionViolation>,
    /// Keys on which this guarantee could not be decided.
    pub undecided: Vec<SessionUndecided>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub verdict: Verdict,
    pub guarantees: Vec<GuaranteeReport>,
    /// Ok reads and cas whose value was written more than once to their key.
    pub reads_ambiguous: usize,
    /// Keys with such reads decided by the key's sequential order.
    pub keys_decided_by_order: usize,
    /// Keys with such reads decided by ruling out versions and searching.
    pub keys_decided_by_search: usize,
    /// Keys with such reads left undecided (the search ran out of budget).
    pub keys_undecided: usize,
    /// Ok reads and cas of a value no operation wrote (they constrain no version order).
    pub reads_unwritten: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LostWritesReport {
    pub verdict: Verdict,
    pub keys_checked: usize,
    pub keys_without_final_read: usize,
    pub lost: Vec<LostWrite>,
}

/// Every verdict about a history.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub operations: usize,
    pub keys: usize,
    pub truncated_line: Option<usize>,
    pub linearizable: Option<LinearizableReport>,
    pub sequential: Option<SequentialReport>,
    pub session: Option<SessionReport>,
    pub lost_writes: Option<LostWritesReport>,
}

fn verdict_of(violations: usize, unknown: usize) -> Verdict {
    if violations > 0 {
        Verdict::Violation
    } else if unknown > 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    }
}

pub(crate) fn assemble(
    history: &History,
    models: Models,
    results: Vec<KeyResults>,
    history_sequential: Option<HistorySequential>,
) -> Report {
    let key_name = |index: usize| history.keys[index].clone();
    let mut linearizable = LinearizableReport {
        verdict: Verdict::Valid,
        keys_valid: 0,
        violations: Vec::new(),
        unknown: Vec::new(),
    };
    let mut sequential = sequential_report(history_sequential);
    let mut guarantees: Vec<GuaranteeReport> = Guarantee::ALL
        .iter()
        .map(|&guarantee| GuaranteeReport {
            guarantee,
            verdict: Verdict::Valid,
            violations: Vec::new(),
            undecided: Vec::new(),
        })
        .collect();
    let mut session = SessionReport {
        verdict: Verdict::Valid,
        guarantees: Vec::new(),
        reads_ambiguous: 0,
        keys_decided_by_order: 0,
        keys_decided_by_search: 0,
        keys_undecided: 0,
        reads_unwritten: 0,
    };
    let mut lost = LostWritesReport {
        verdict: Verdict::Valid,
        keys_checked: 0,
        keys_without_final_read: 0,
        lost: Vec::new(),
    };
    for (index, result) in results.into_iter().enumerate() {
        match result.linearizable {
            Some(KeyLinearizability::Valid) => linearizable.keys_valid += 1,
            Some(KeyLinearizability::Violation(violation)) => {
                linearizable.violations.push(*violation);
            }
            Some(KeyLinearizability::Unknown { reason }) => {
                let key = key_name(index);
                linearizable.unknown.push(KeyUnknown { key, reason });
            }
            None => {}
        }
        match result.sequential {
            Some(KeySequential::Valid) => sequential.keys_valid += 1,
            // Counted through the whole-history verdict, which lists them.
            Some(KeySequential::Violation(_)) | None => {}
            Some(KeySequential::Unknown { reason }) => {
                let key = key_name(index);
                sequential.keys_unknown.push(KeyUnknown { key, reason });
            }
        }
        if let Some(key_session) = result.session {
            add_key_session(&mut session, &mut guarantees, key_session);
        }
        match result.lost_writes {
            Some(Some(lost_writes)) => {
                lost.keys_checked += 1;
                lost.lost.extend(lost_writes);
            }
            Some(None) => lost.keys_without_final_read += 1,
            None => {}
        }
    }
    linearizable.verdict = verdict_of(linearizable.violations.len(), linearizable.unknown.len());
    for guarantee in &mut guarantees {
        guarantee.verdict = verdict_of(guarantee.violations.len(), guarantee.undecided.len());
    }
    session.verdict = guarantees
        .iter()
        .map(|guarantee| guarantee.verdict)
        .max()
        .unwrap_or(Verdict::Valid);
    session.guarantees = guarantees;
    lost.verdict = verdict_of(lost.lost.len(), 0);
    let mut report = Report {
        verdict: Verdict::Valid,
        operations: history.operations.len(),
        keys: history.keys.len(),
        truncated_line: history.truncated_line,
        linearizable: models.linearizable.then_some(linearizable),
        sequential: models.sequential.then_some(sequential),
        session: models.session.then_some(session),
        lost_writes: models.lost_writes.then_some(lost),
    };
    report.verdict = report
        .model_verdicts()
        .into_iter()
        .map(|(_, v)| v)
        .max()
        .unwrap_or(Verdict::Valid);
    report
}

fn sequential_report(history_sequential: Option<HistorySequential>) -> SequentialReport {
    let decided = history_sequential.unwrap_or(HistorySequential {
        verdict: Verdict::Valid,
        method: SequentialMethod::EveryKeyLinearizable,
        violations: Vec::new(),
        unknown_reason: None,
        search_nodes: 0,
    });
    SequentialReport {
        verdict: decided.verdict,
        scope: "whole history",
        method: decided.method,
        keys_valid: 0,
        violations: decided.violations,
        keys_unknown: Vec::new(),
        unknown_reason: decided.unknown_reason,
        search_nodes: decided.search_nodes,
    }
}

fn add_key_session(
    session: &mut SessionReport,
    guarantees: &mut [GuaranteeReport],
    key_session: crate::session::KeySession,
) {
    session.reads_ambiguous += key_session.reads_ambiguous_count;
    session.reads_unwritten += key_session.reads_unwritten_count;
    match key_session.ambiguity {
        Ambiguity::None => {}
        Ambiguity::KeyOrder => session.keys_decided_by_order += 1,
        Ambiguity::Searched => session.keys_decided_by_search += 1,
        Ambiguity::Undecided => session.keys_undecided += 1,
    }
    let position_of = |wanted: Guarantee| {
        Guarantee::ALL
            .iter()
            .position(|&guarantee| guarantee == wanted)
            .expect("every guarantee is listed")
    };
    if let Some(violation) = key_session.violation {
        guarantees[position_of(violation.guarantee)]
            .violations
            .push(violation);
    }
    if let Some(undecided) = key_session.undecided {
        for &guarantee in &undecided.guarantees {
            guarantees[position_of(guarantee)]
                .undecided
                .push(undecided.clone());
        }
    }
}

impl Report {
    /// (model name, verdict) for every model checked.
    pub fn model_verdicts(&self) -> Vec<(&'static str, Verdict)> {
        let mut verdicts = Vec::new();
        if let Some(model) = &self.linearizable {
            verdicts.push(("linearizable", model.verdict));
        }
        if let Some(model) = &self.sequential {
            verdicts.push(("sequential", model.verdict));
        }
        if let Some(model) = &self.session {
            verdicts.push(("session", model.verdict));
        }
        if let Some(model) = &self.lost_writes {
            verdicts.push(("lost-writes", model.verdict));
        }
        verdicts
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The report for a person: one line per model, then each violation explained.
    pub fn text(&self, history: &History) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} operations on {} keys", self.operations, self.keys);
        if let Some(line) = self.truncated_line {
            let _ = writeln!(out, "note: line {line} is truncated and was not checked");
        }
        for (name, verdict) in self.model_verdicts() {
            let _ = writeln!(out, "{name:<14} {}", verdict.name());
        }
        if let Some(model) = &self.linearizable {
            for violation in &model.violations {
                write_linear_violation(&mut out, history, violation);
            }
            write_unknown(&mut out, "linearizable", &model.unknown);
        }
        if let Some(model) = &self.sequential {
            write_sequential(&mut out, model);
        }
        if let Some(model) = &self.session {
            for guarantee in &model.guarantees {
                let _ = writeln!(
                    out,
                    "  {:<20} {}",
                    guarantee.guarantee.name(),
                    guarantee.verdict.name()
                );
                for violation in &guarantee.violations {
                    let _ = writeln!(out, "    {}", violation.explanation);
                }
                for undecided in &guarantee.undecided {
                    let _ = writeln!(
                        out,
                        "    undecided on key {:?}: {}",
                        undecided.key, undecided.reason
                    );
                }
            }
            write_session_notes(&mut out, model);
        }
        if let Some(model) = &self.lost_writes {
            let _ = writeln!(
                out,
                "lost writes: {} keys with a final read, {} without",
                model.keys_checked, model.keys_without_final_read
            );
            for lost in &model.lost {
                let _ = writeln!(out, "  {}", lost.explanation);
            }
        }
        out
    }
}

fn write_sequential(out: &mut String, model: &SequentialReport) {
    for violation in &model.violations {
        let what = match violation.scope {
            SequentialScope::Key => format!("key {:?}", violation.keys[0]),
            SequentialScope::History => format!("keys {:?} together", violation.keys),
        };
        let _ = writeln!(out, "\nsequential: {what}");
        let _ = writeln!(out, "  {}", violation.explanation);
    }
    if let Some(reason) = &model.unknown_reason {
        let _ = writeln!(
            out,
            "\nsequential: the whole-history search is unknown: {reason} (the keys are \
             each sequentially consistent on their own; no violation was found)"
        );
    }
}

fn write_session_notes(out: &mut String, model: &SessionReport) {
    if model.reads_ambiguous > 0 {
        let _ = writeln!(
            out,
            "  ({} reads returned values written more than once: {} keys decided by the \
             key's sequential order, {} by search, {} undecided)",
            model.reads_ambiguous,
            model.keys_decided_by_order,
            model.keys_decided_by_search,
            model.keys_undecided
        );
    }
    if model.reads_unwritten > 0 {
        let _ = writeln!(
            out,
            "  ({} reads returned values no operation wrote: they name no version and are \
             judged by linearizability and sequential consistency only)",
            model.reads_unwritten
        );
    }
}

fn write_unknown(out: &mut String, model: &str, unknown: &[KeyUnknown]) {
    for key in unknown {
        let _ = writeln!(
            out,
            "\n{model}: key {:?} is unknown: {}",
            key.key, key.reason
        );
    }
}

fn write_linear_violation(out: &mut String, history: &History, violation: &LinearViolation) {
    let _ = writeln!(
        out,
        "\nlinearizable: key {:?} is not linearizable",
        violation.key
    );
    let _ = writeln!(out, "  {}", violation.explanation);
    let _ = writeln!(
        out,
        "  the window ({} operations, and {} info operations invoked before it that may take \
         effect in it):",
        violation.window.len(),
        violation.info_in_flight_count
    );
    for &index in &violation.window {
        let operation = &history.operations[index];
        let marker = if index == violation.operation {
            "=>"
        } else {
            "  "
        };
        let end = operation
            .complete_time
            .map_or("never".to_string(), |time| time.to_string());
        let _ = writeln!(
            out,
            "  {marker} process {:<4} {:<24} {:<5} {:>12} .. {:<12} line {}",
            operation.process,
            operation.call.to_string(),
            format!("{:?}", operation.outcome).to_lowercase(),
            operation.invoke_time,
            end,
            operation.invoke_line,
        );
    }
}
