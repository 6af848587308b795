//! Quiet panics during simulation runs.
//!
//! Runs catch panics (an actor's, the scenario's, the simulator's own) and report them as
//! failures; the default hook would also print each one to stderr, which in a sweep of
//! thousands of seeds with buggified actors buries the report. While a thread runs a seed
//! the hook records the panic text (message and location) for the failure report instead
//! of printing it. Other threads, and this one outside runs, keep the previous hook.

use std::cell::{Cell, RefCell};
use std::panic;
use std::sync::Once;

static HOOK: Once = Once::new();

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let text = info.to_string();
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// Keeps this thread's panics quiet until dropped.
#[derive(Debug)]
pub struct QuietPanics {
    was_quiet: bool,
}

impl QuietPanics {
    pub fn enter() -> QuietPanics {
        install_hook();
        let was_quiet = QUIET.with(|quiet| quiet.replace(true));
        LAST_PANIC.with(|last| last.borrow_mut().take());
        QuietPanics { was_quiet }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET.with(|quiet| quiet.set(self.was_quiet));
    }
}

/// The text (message and location) of the latest quiet panic on this thread, taken.
pub fn take_last_panic() -> Option<String> {
    LAST_PANIC.with(|last| last.borrow_mut().take())
}

/// The text of a caught panic's payload.
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return (*text).to_string();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "panic with a non-text payload".to_string()
}
