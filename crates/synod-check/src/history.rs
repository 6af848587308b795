//! The history format (JSON Lines, one event per line) and its parser.
//!
//! A history is read in two passes. The first pass reads lines in file order, pairs each
//! completion with its process's outstanding invoke and refuses anything that breaks the
//! format (docs/consistency.md states every rule). The second orders the events by `time`
//! (stable, so file order breaks ties): that order is the real-time order the checkers use.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use thiserror::Error;

/// A value held by a key: an integer, a string, or `Null` for an absent key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(formatter, "null"),
            Value::Int(number) => write!(formatter, "{number}"),
            Value::Str(text) => write!(formatter, "{text:?}"),
        }
    }
}

/// What an operation asked for, with the value it carried or (for a read) returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A read; the value is what it returned (`Null` when unknown or absent).
    Read(Value),
    Write(Value),
    /// Compare-and-set: `(expected, new)`.
    Cas(Value, Value),
    Delete,
}

impl Call {
    /// The function name used in the history format.
    pub fn function_name(&self) -> &'static str {
        match self {
            Call::Read(_) => "read",
            Call::Write(_) => "write",
            Call::Cas(_, _) => "cas",
            Call::Delete => "delete",
        }
    }

    /// The value this call leaves in the key when it takes effect, if it changes the key.
    pub fn written_value(&self) -> Option<&Value> {
        match self {
            Call::Read(_) => None,
            Call::Write(value) | Call::Cas(_, value) => Some(value),
            Call::Delete => Some(&Value::Null),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Read(value) => write!(formatter, "read -> {value}"),
            Call::Write(value) => write!(formatter, "write {value}"),
            Call::Cas(expected, new) => write!(formatter, "cas {expected} -> {new}"),
            Call::Delete => write!(formatter, "delete"),
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect, once, between its invoke and its completion.
    Ok,
    /// It did not take effect.
    Fail,
    /// Unknown: it took effect at some moment after its invoke, or never. An operation that
    /// has no completion at the end of the history is `Info` too.
    Info,
}

/// One operation: an invoke paired with its completion.
#[derive(Debug, Clone)]
pub struct Operation {
    pub process: u64,
    /// Index into `History::keys`.
    pub key: u32,
    pub call: Call,
    pub outcome: Outcome,
    pub invoke_time: u64,
    /// `None` when the history ends before the operation completes.
    pub complete_time: Option<u64>,
    /// 1-based line numbers in the history file.
    pub invoke_line: usize,
    pub complete_line: Option<usize>,
    /// Positions in `History::events` (real-time order).
    pub invoke_position: usize,
    pub complete_position: Option<usize>,
    /// The position in the system's own order of operations that an ok completion reported
    /// (the optional `index` field: for a replicated log, the index a write took effect at
    /// or the applied index a read was served at). The sequential check tries that order
    /// first; it is a hint whose every step is verified, never trusted.
    pub index: Option<u64>,
}

/// One line of the history, in real-time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Index into `History::operations`.
    pub operation: u32,
    pub is_completion: bool,
}

/// A parsed, validated history.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Key names, indexed by `Operation::key`.
    pub keys: Vec<String>,
    /// Operations in the order of their invokes in the file.
    pub operations: Vec<Operation>,
    /// Invokes and completions in real-time order.
    pub events: Vec<Event>,
    /// The line number of a truncated last line that was skipped (`allow_truncated`).
    pub truncated_line: Option<usize>,
}

/// Why a history cannot be used. Every variant names the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("line {line}: malformed event: {message}")]
    Malformed { line: usize, message: String },
    #[error(
        "line {line}: the last line is truncated (the history may still be being written): \
         {message}; pass --allow-truncated to check the lines before it"
    )]
    Truncated { line: usize, message: String },
    #[error("line {line}: unknown type {found:?}: expected invoke, ok, fail or info")]
    UnknownType { line: usize, found: String },
    #[error("line {line}: unknown f {found:?}: expected read, write, cas or delete")]
    UnknownFunction { line: usize, found: String },
    #[error("line {line}: process {process} completes an operation it never invoked")]
    CompletionWithoutInvoke { line: usize, process: u64 },
    #[error(
        "line {line}: process {process} invokes a second operation while the one invoked on \
         line {outstanding_line} is outstanding (a process runs one operation at a time)"
    )]
    SecondInvoke {
        line: usize,
        process: u64,
        outstanding_line: usize,
    },
    #[error(
        "line {line}: process {process} is used again after its info completion on line \
         {info_line} (an info operation may still be running, so its process id is retired)"
    )]
    ProcessReused {
        line: usize,
        process: u64,
        info_line: usize,
    },
    #[error("line {line}: completion does not match the invoke on line {invoke_line}: {detail}")]
    Mismatch {
        line: usize,
        invoke_line: usize,
        detail: String,
    },
    #[error("line {line}: bad value: {detail}")]
    BadValue { line: usize, detail: String },
}

impl ParseError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            ParseError::Malformed { line, .. }
            | ParseError::Truncated { line, .. }
            | ParseError::UnknownType { line, .. }
            | ParseError::UnknownFunction { line, .. }
            | ParseError::CompletionWithoutInvoke { line, .. }
            | ParseError::SecondInvoke { line, .. }
            | ParseError::ProcessReused { line, .. }
            | ParseError::Mismatch { line, .. }
            | ParseError::BadValue { line, .. } => *line,
        }
    }
}

/// How strict the parser is.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Skip a last line that does not parse and has no newline (a history still being
    /// written), recording it in `History::truncated_line`, instead of refusing the history.
    pub allow_truncated: bool,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    process: u64,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    f: Cow<'a, str>,
    key: serde_json::Value,
    #[serde(default)]
    value: serde_json::Value,
    time: u64,
    #[serde(default)]
    index: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invoke,
    Complete(Outcome),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Function {
    Read,
    Write,
    Cas,
    Delete,
}

/// Per-process state while reading lines in file order.
enum ProcessState {
    Outstanding { operation: usize },
    Idle,
    Retired { info_line: usize },
}

/// Parses and validates a history. See docs/consistency.md for the format.
pub fn parse_history(text: &str, options: ParseOptions) -> Result<History, ParseError> {
    let mut builder = Builder::default();
    let lines: Vec<&str> = text.split('\n').collect();
    let last_index = lines.len().saturating_sub(1);
    for (index, raw_line) in lines.iter().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim();
        if line.is_empty() {
            continue;
        }
        let event = match serde_json::from_str::<RawEvent>(line) {
            Ok(event) => event,
            Err(error) => {
                // Only the last line, with no newline after it, can be a line still being
                // written; a bad line anywhere else is malformed.
                let is_unterminated_last = index == last_index && !text.ends_with('\n');
                if is_unterminated_last && error.is_eof() {
                    if options.allow_truncated {
                        builder.history.truncated_line = Some(line_number);
                        break;
                    }
                    let message = error.to_string();
                    return Err(ParseError::Truncated {
                        line: line_number,
                        message,
                    });
                }
                let message = error.to_string();
                return Err(ParseError::Malformed {
                    line: line_number,
                    message,
                });
            }
        };
        builder.add(line_number, &event)?;
    }
    Ok(builder.finish())
}

#[derive(Default)]
struct Builder {
    history: History,
    key_ids: BTreeMap<String, u32>,
    processes: BTreeMap<u64, ProcessState>,
    /// (time, file order, event) before sorting.
    pending_events: Vec<(u64, usize, Event)>,
}

impl Builder {
    fn add(&mut self, line: usize, event: &RawEvent) -> Result<(), ParseError> {
        let kind = parse_kind(line, &event.kind)?;
        let function = parse_function(line, &event.f)?;
        let key = key_text(line, &event.key)?;
        match kind {
            Kind::Invoke => self.add_invoke(line, event, function, key),
            Kind::Complete(outcome) => self.add_completion(line, event, function, &key, outcome),
        }
    }

    fn add_invoke(
        &mut self,
        line: usize,
        event: &RawEvent,
        function: Function,
        key: String,
    ) -> Result<(), ParseError> {
        match self.processes.get(&event.process) {
            Some(ProcessState::Outstanding { operation }) => {
                return Err(ParseError::SecondInvoke {
                    line,
                    process: event.process,
                    outstanding_line: self.history.operations[*operation].invoke_line,
                });
            }
            Some(ProcessState::Retired { info_line }) => {
                return Err(ParseError::ProcessReused {
                    line,
                    process: event.process,
                    info_line: *info_line,
                });
            }
            Some(ProcessState::Idle) | None => {}
        }
        let call = match function {
            Function::Read => Call::Read(Value::Null),
            Function::Write => Call::Write(parse_value(line, &event.value)?),
            Function::Cas => {
                let (expected, new) = parse_pair(line, &event.value)?;
                Call::Cas(expected, new)
            }
            Function::Delete => Call::Delete,
        };
        let next_id = u32::try_from(self.key_ids.len()).expect("fewer than 2^32 keys");
        let key_id = *self.key_ids.entry(key.clone()).or_insert_with(|| {
            self.history.keys.push(key);
            next_id
        });
        let operation = self.history.operations.len();
        self.history.operations.push(Operation {
            process: event.process,
            key: key_id,
            call,
            outcome: Outcome::Info,
            invoke_time: event.time,
            complete_time: None,
            invoke_line: line,
            complete_line: None,
            invoke_position: 0,
            complete_position: None,
            index: None,
        });
        self.processes
            .insert(event.process, ProcessState::Outstanding { operation });
        self.push_event(event.time, operation, false);
        Ok(())
    }

    fn add_completion(
        &mut self,
        line: usize,
        event: &RawEvent,
        function: Function,
        key: &str,
        outcome: Outcome,
    ) -> Result<(), ParseError> {
        let operation_index = match self.processes.get(&event.process) {
            Some(ProcessState::Outstanding { operation }) => *operation,
            _ => {
                return Err(ParseError::CompletionWithoutInvoke {
                    line,
                    process: event.process,
                });
            }
        };
        let operation = &self.history.operations[operation_index];
        let invoke_line = operation.invoke_line;
        let mismatch = |detail: String| ParseError::Mismatch {
            line,
            invoke_line,
            detail,
        };
        if operation.call.function_name() != function_name(function) {
            let invoked = operation.call.function_name();
            return Err(mismatch(format!("f is {:?}, invoked {invoked:?}", event.f)));
        }
        if self.history.keys[operation.key as usize] != key {
            let invoked = &self.history.keys[operation.key as usize];
            return Err(mismatch(format!("key is {key:?}, invoked {invoked:?}")));
        }
        if event.time < operation.invoke_time {
            let invoked = operation.invoke_time;
            return Err(mismatch(format!(
                "time {} is before the invoke's {invoked}",
                event.time
            )));
        }
        let read_value = match (function, outcome) {
            (Function::Read, Outcome::Ok) => Some(parse_value(line, &event.value)?),
            _ => None,
        };
        let operation = &mut self.history.operations[operation_index];
        if let Some(value) = read_value {
            operation.call = Call::Read(value);
        }
        operation.outcome = outcome;
        operation.index = event.index.filter(|_| outcome == Outcome::Ok);
        operation.complete_time = Some(event.time);
        operation.complete_line = Some(line);
        let state = match outcome {
            Outcome::Info => ProcessState::Retired { info_line: line },
            Outcome::Ok | Outcome::Fail => ProcessState::Idle,
        };
        self.processes.insert(event.process, state);
        self.push_event(event.time, operation_index, true);
        Ok(())
    }

    fn push_event(&mut self, time: u64, operation: usize, is_completion: bool) {
        let operation = u32::try_from(operation).expect("fewer than 2^32 operations");
        let order = self.pending_events.len();
        let event = Event {
            operation,
            is_completion,
        };
        self.pending_events.push((time, order, event));
    }

    fn finish(mut self) -> History {
        self.pending_events
            .sort_unstable_by_key(|(time, order, _)| (*time, *order));
        let mut history = self.history;
        history.events = Vec::with_capacity(self.pending_events.len());
        for (position, (_, _, event)) in self.pending_events.into_iter().enumerate() {
            let operation = &mut history.operations[event.operation as usize];
            if event.is_completion {
                operation.complete_position = Some(position);
            } else {
                operation.invoke_position = position;
            }
            history.events.push(event);
        }
        history
    }
}

fn parse_kind(line: usize, text: &str) -> Result<Kind, ParseError> {
    match text {
        "invoke" => Ok(Kind::Invoke),
        "ok" => Ok(Kind::Complete(Outcome::Ok)),
        "fail" => Ok(Kind::Complete(Outcome::Fail)),
        "info" => Ok(Kind::Complete(Outcome::Info)),
        other => Err(ParseError::UnknownType {
            line,
            found: other.to_string(),
        }),
    }
}

fn parse_function(line: usize, text: &str) -> Result<Function, ParseError> {
    match text {
        "read" => Ok(Function::Read),
        "write" => Ok(Function::Write),
        "cas" => Ok(Function::Cas),
        "delete" => Ok(Function::Delete),
        other => Err(ParseError::UnknownFunction {
            line,
            found: other.to_string(),
        }),
    }
}

fn function_name(function: Function) -> &'static str {
    match function {
        Function::Read => "read",
        Function::Write => "write",
        Function::Cas => "cas",
        Function::Delete => "delete",
    }
}

fn key_text(line: usize, key: &serde_json::Value) -> Result<String, ParseError> {
    match key {
        serde_json::Value::String(text) => Ok(text.clone()),
        serde_json::Value::Number(number) if number.is_i64() || number.is_u64() => {
            Ok(number.to_string())
        }
        other => Err(ParseError::Malformed {
            line,
            message: format!("key must be a string or an integer, found {other}"),
        }),
    }
}

fn parse_value(line: usize, value: &serde_json::Value) -> Result<Value, ParseError> {
    match value {
        serde_json::Value::Null => Ok(Value::Null),
        serde_json::Value::String(text) => Ok(Value::Str(text.clone())),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(integer) => Ok(Value::Int(integer)),
            None => Err(ParseError::BadValue {
                line,
                detail: format!("{number} is not a 64-bit signed integer"),
            }),
        },
        other => Err(ParseError::BadValue {
            line,
            detail: format!("values are integers, strings or null, found {other}"),
        }),
    }
}

fn parse_pair(line: usize, value: &serde_json::Value) -> Result<(Value, Value), ParseError> {
    match value {
        serde_json::Value::Array(items) if items.len() == 2 => {
            Ok((parse_value(line, &items[0])?, parse_value(line, &items[1])?))
        }
        other => Err(ParseError::BadValue {
            line,
            detail: format!("a cas value is [expected, new], found {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<History, ParseError> {
        parse_history(text, ParseOptions::default())
    }

    fn line(process: u64, kind: &str, f: &str, value: &str, time: u64) -> String {
        format!(
            "{{\"process\":{process},\"type\":\"{kind}\",\"f\":\"{f}\",\"key\":\"x\",\
             \"value\":{value},\"time\":{time}}}\n"
        )
    }

    #[test]
    fn pairs_invokes_with_completions_in_time_order() {
        // Checks that a completion fills in its invoke's operation and that events are
        // ordered by time, with file order breaking ties.
        let text = [
            line(0, "invoke", "write", "3", 100),
            line(1, "invoke", "read", "null", 90),
            line(0, "ok", "write", "3", 250),
            line(1, "ok", "read", "3", 300),
        ]
        .concat();
        let history = parse(&text).unwrap();
        assert_eq!(history.operations.len(), 2);
        assert_eq!(history.operations[1].call, Call::Read(Value::Int(3)));
        assert_eq!(history.operations[1].invoke_position, 0);
        assert_eq!(history.operations[0].invoke_position, 1);
        assert_eq!(history.operations[0].complete_position, Some(2));
    }

    #[test]
    fn a_missing_completion_is_info() {
        // Checks that an operation still outstanding at the end of the history is info.
        let text = line(0, "invoke", "write", "1", 1);
        let history = parse(&text).unwrap();
        assert_eq!(history.operations[0].outcome, Outcome::Info);
        assert_eq!(history.operations[0].complete_position, None);
    }
}
