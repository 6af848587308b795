//! The verdicts, gathered from every key, as text for people and JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::history::History;
use crate::linearizable::{KeyLinearizability, LinearViolation};
use crate::lost::LostWrite;
use crate::sequential::{KeySequential, SequentialViolation};
use crate::session::{Guarantee, SessionViolation};
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
    /// Sequential consistency is checked per key: a history is reported valid when every
    /// key's operations are sequentially consistent.
    pub scope: &'static str,
    pub keys_valid: usize,
    pub violations: Vec<SequentialViolation>,
    pub unknown: Vec<KeyUnknown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuaranteeReport {
    pub guarantee: Guarantee,
    pub verdict: Verdict,
    pub violations: Vec<SessionViolation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub verdict: Verdict,
    pub guarantees: Vec<GuaranteeReport>,
    /// Reads not used because their value was written more than once to their key.
    pub reads_skipped: usize,
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

pub(crate) fn assemble(history: &History, models: Models, results: Vec<KeyResults>) -> Report {
    let key_name = |index: usize| history.keys[index].clone();
    let mut linearizable = LinearizableReport {
        verdict: Verdict::Valid,
        keys_valid: 0,
        violations: Vec::new(),
        unknown: Vec::new(),
    };
    let mut sequential = SequentialReport {
        verdict: Verdict::Valid,
        scope: "per key",
        keys_valid: 0,
        violations: Vec::new(),
        unknown: Vec::new(),
    };
    let mut guarantees: Vec<GuaranteeReport> = Guarantee::ALL
        .iter()
        .map(|&guarantee| GuaranteeReport {
            guarantee,
            verdict: Verdict::Valid,
            violations: Vec::new(),
        })
        .collect();
    let mut reads_skipped = 0;
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
            Some(KeySequential::Violation(violation)) => sequential.violations.push(*violation),
            Some(KeySequential::Unknown { reason }) => {
                let key = key_name(index);
                sequential.unknown.push(KeyUnknown { key, reason });
            }
            None => {}
        }
        if let Some(session) = result.session {
            reads_skipped += session.reads_skipped_count;
            if let Some(violation) = session.violation {
                let position = Guarantee::ALL
                    .iter()
                    .position(|&guarantee| guarantee == violation.guarantee)
                    .expect("every guarantee is listed");
                guarantees[position].violations.push(violation);
            }
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
    sequential.verdict = verdict_of(sequential.violations.len(), sequential.unknown.len());
    for guarantee in &mut guarantees {
        guarantee.verdict = verdict_of(guarantee.violations.len(), 0);
    }
    let session_violations: usize = guarantees.iter().map(|g| g.violations.len()).sum();
    let session = SessionReport {
        verdict: verdict_of(session_violations, 0),
        guarantees,
        reads_skipped,
    };
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
            for violation in &model.violations {
                let _ = writeln!(out, "\nsequential: key {:?}", violation.key);
                let _ = writeln!(out, "  {}", violation.explanation);
            }
            write_unknown(&mut out, "sequential", &model.unknown);
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
            }
            if model.reads_skipped > 0 {
                let _ = writeln!(
                    out,
                    "  ({} reads not used by the session checks: their value was written more \
                     than once to their key)",
                    model.reads_skipped
                );
            }
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
