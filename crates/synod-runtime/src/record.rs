//! Small shared pieces: bounded logs that keep the newest entries, the stderr logger, and
//! locking that survives a poisoned mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};

use synod_core::{BoundedQueue, NodeId};

/// Locks `mutex`. The data behind the runtime's mutexes are logs and counters that a panic
/// cannot leave half-updated in a harmful way, so a poisoned lock is used as it is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A log that keeps the newest `capacity` entries and counts the ones it dropped.
#[derive(Debug)]
pub(crate) struct BoundedLog<T> {
    entries: BoundedQueue<T>,
    dropped_count: u64,
}

impl<T> BoundedLog<T> {
    pub(crate) fn new(capacity: usize) -> BoundedLog<T> {
        BoundedLog {
            entries: BoundedQueue::new(capacity),
            dropped_count: 0,
        }
    }

    pub(crate) fn push(&mut self, entry: T) {
        if self.entries.is_full() {
            self.entries.pop_front();
            self.dropped_count += 1;
        }
        if self.entries.push_back(entry).is_err() {
            unreachable!("a slot was freed above");
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter()
    }

    pub(crate) fn dropped_count(&self) -> u64 {
        self.dropped_count
    }

    /// Takes every entry out, oldest first.
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.entries.drain().collect()
    }
}

/// Writes lifecycle lines and errors to standard error when enabled. synod has no logging
/// framework yet; this keeps the runtime's output in one place so one can be added here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Logger {
    pub(crate) node: NodeId,
    pub(crate) enabled: bool,
}

impl Logger {
    pub(crate) fn log(&self, text: std::fmt::Arguments<'_>) {
        if self.enabled {
            eprintln!("synod-runtime {}: {text}", self.node);
        }
    }
}
