//! The history lines the real-process workloads record (`synod bench load --history` and
//! `synod nemesis`), and their JSON Lines text in the format `synod check` reads
//! (docs/consistency.md).

use serde_json::{Value as Json, json};

/// One line of a history.
#[derive(Debug, Clone)]
pub struct Event {
    pub process: u64,
    /// "invoke", "ok", "fail" or "info".
    pub kind: &'static str,
    /// "read", "write" or "cas".
    pub function: &'static str,
    pub key: u64,
    pub value: Json,
    /// Nanoseconds since the run's origin.
    pub time: u64,
}

/// The name of key number `key` in the store and in the history.
pub fn key_name(key: u64) -> String {
    format!("key:{key}")
}

/// The history as JSON Lines, ordered by time (stable, so a process's events keep their
/// order at equal times).
pub fn history_text(events: &mut [&Event]) -> String {
    events.sort_by_key(|event| event.time);
    let mut text = String::with_capacity(events.len() * 96);
    for event in events.iter() {
        let line = json!({
            "process": event.process,
            "type": event.kind,
            "f": event.function,
            "key": key_name(event.key),
            "value": event.value,
            "time": event.time,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text
}
