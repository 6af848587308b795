//! Lost acknowledged writes: given a final read of a key, every write that completed ok
//! must be accounted for.
//!
//! A key's final read is its last ok read invoked after every ok write, delete and cas of
//! the key completed. An ok write W is accounted for if some operation that could have
//! written the final read's value did not complete before W was invoked (it may have
//! taken effect after W, so W may have been overwritten legitimately); W itself counts. A
//! write is lost when every possible source of the final value finished before W began:
//! the key went back to an older value, and W is gone.

use serde::Serialize;

use crate::history::{Call, History, Outcome, Value};
use crate::problem::KeyHistory;

/// An acknowledged write the final read does not account for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    pub key: String,
    /// Index into `History::operations` of the lost write.
    pub operation: usize,
    /// Index into `History::operations` of the final read.
    pub final_read: usize,
    pub explanation: String,
}

/// The lost writes of one key; `None` when the key has no final read.
pub fn check_key(history: &History, key: &KeyHistory) -> Option<Vec<LostWrite>> {
    let is_ok_write = |index: usize| {
        let operation = &history.operations[index];
        operation.outcome == Outcome::Ok && operation.call.written_value().is_some()
    };
    let writes: Vec<usize> = key
        .operations
        .iter()
        .map(|operation| operation.source as usize)
        .filter(|&index| is_ok_write(index))
        .collect();
    let last_write_complete = writes
        .iter()
        .filter_map(|&index| history.operations[index].complete_position)
        .max();
    let final_read = key
        .operations
        .iter()
        .map(|operation| operation.source as usize)
        .filter(|&index| {
            let operation = &history.operations[index];
            matches!(operation.call, Call::Read(_))
                && operation.outcome == Outcome::Ok
                && last_write_complete.is_none_or(|last| operation.invoke_position > last)
        })
        .max_by_key(|&index| history.operations[index].invoke_position)?;
    let Call::Read(final_value) = &history.operations[final_read].call else {
        return None;
    };
    let sources: Vec<usize> = key
        .operations
        .iter()
        .map(|operation| operation.source as usize)
        .filter(|&index| {
            let operation = &history.operations[index];
            operation.outcome != Outcome::Fail
                && operation.call.written_value() == Some(final_value)
        })
        .collect();
    let key_name = &history.keys[key.key as usize];
    let lost = writes
        .iter()
        .copied()
        .filter(|&write| {
            let invoke = history.operations[write].invoke_position;
            !sources.iter().any(|&source| {
                source == write
                    || history.operations[source]
                        .complete_position
                        .is_none_or(|complete| complete > invoke)
                    || history.operations[source].outcome == Outcome::Info
            })
        })
        .map(|write| describe(history, key_name, write, final_read, final_value))
        .collect();
    Some(lost)
}

fn describe(
    history: &History,
    key_name: &str,
    write: usize,
    final_read: usize,
    final_value: &Value,
) -> LostWrite {
    let operation = &history.operations[write];
    let read = &history.operations[final_read];
    let explanation = format!(
        "process {}'s {} on key {key_name:?} was acknowledged (line {}), but the final read \
         (process {}, line {}) returned {final_value}, and every operation that could have \
         written {final_value} finished before that write began: the write is lost.",
        operation.process,
        operation.call,
        operation.complete_line.unwrap_or(operation.invoke_line),
        read.process,
        read.complete_line.unwrap_or(read.invoke_line),
    );
    LostWrite {
        key: key_name.to_string(),
        operation: write,
        final_read,
        explanation,
    }
}
