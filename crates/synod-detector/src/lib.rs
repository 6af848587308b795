//! synod-detector: the phi-accrual failure detector (Hayashibara et al., as Akka implements
//! it), as a sans-IO state machine.
//!
//! For each monitored peer the detector keeps a bounded window of heartbeat inter-arrival
//! times and turns the silence since the last heartbeat into a suspicion level, phi: how
//! unlikely, under a normal model of the window, a heartbeat this late would be. A peer is
//! suspected when phi reaches `threshold_phi`. The detector does no IO, reads no clock and
//! draws no randomness: the driver feeds it heartbeats and ticks with the current time and
//! acts on its outputs. `docs/detector.md` is the design note.
//!
//! The driver (an actor) runs it like this:
//!
//! ```text
//! on start:              for peer in members { step(now, Monitor(peer)) }
//! every heartbeat_interval: send a heartbeat (with our incarnation) to every peer;
//!                        step(now, Tick)
//! on heartbeat message:  step(now, Heartbeat { from, incarnation })
//! after every step:      for output in outbox.drain() { Suspect / Recover / Restarted }
//! ```
//!
//! ```
//! use synod_core::{Duration, Instant, NodeId, Outbox, Protocol};
//! use synod_detector::{DetectorConfig, Input, Output, PhiAccrualDetector, OUTPUTS_PER_STEP_MAX};
//!
//! let mut detector = PhiAccrualDetector::new(DetectorConfig::default());
//! let mut outbox = Outbox::new(OUTPUTS_PER_STEP_MAX);
//! let peer = NodeId(2);
//! let mut now = Instant::ZERO;
//! detector.step(now, Input::Monitor(peer), &mut outbox);
//! for _ in 0..10 {
//!     detector.step(now, Input::Heartbeat { from: peer, incarnation: 1 }, &mut outbox);
//!     now += Duration::from_millis(100);
//! }
//! // The peer falls silent; the driver keeps ticking until the detector suspects it.
//! while outbox.is_empty() {
//!     now += Duration::from_millis(100);
//!     detector.step(now, Input::Tick, &mut outbox);
//! }
//! assert!(matches!(outbox.as_slice(), [Output::Suspect { .. }]));
//! assert!(detector.is_suspected(peer));
//! ```

pub mod config;
mod detector;
pub mod phi;
mod window;

#[cfg(test)]
mod tests;

pub use config::{DetectorConfig, WINDOW_SIZE_MAX};
pub use detector::{
    DetectorStats, HEARTBEAT_OUTPUTS_MAX, Input, OUTPUTS_PER_STEP_MAX, Output, PEERS_COUNT_MAX,
    PeerStatus, PhiAccrualDetector,
};
pub use synod_core::arrival_window::SAMPLE_NANOS_MAX;
