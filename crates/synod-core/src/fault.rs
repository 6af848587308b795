//! Fault points in the style of FoundationDB's BUGGIFY.
//!
//! A place in protocol or actor code may ask whether to take a rare path: a much shorter
//! timeout, an early flush, a spurious retryable error. Under simulation each named point is
//! armed on a seeded fraction of runs and, when armed, fires with a seeded probability; in
//! production nothing ever fires. Code must be correct whichever way every point goes.

/// The source of fault-point decisions.
pub trait FaultPoints {
    /// Whether the fault point named `point` fires now.
    fn fires(&mut self, point: &'static str) -> bool;
}

/// Production: no fault point ever fires.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFaults;

impl FaultPoints for NoFaults {
    fn fires(&mut self, _point: &'static str) -> bool {
        false
    }
}
