//! A hand-driven [`Services`] for unit tests of actors: the test sets the clock, and network
//! sends, disk requests and observations are recorded for assertions.

use bytes::Bytes;
use synod_core::{Duration, FaultPoints, Instant, NoFaults, NodeId, Prng, WallClock};

use crate::{DiskOp, DiskRequestId, NetSendError, Observation, Port, Services, System};

/// A network send recorded by [`ManualServices`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    pub to: NodeId,
    pub port: Port,
    pub payload: Bytes,
}

/// Services whose clock only moves when the test moves it.
#[derive(Debug)]
pub struct ManualServices {
    pub now: Instant,
    pub wall_clock: WallClock,
    pub prng: Prng,
    pub sent: Vec<SentMessage>,
    pub disk_requests: Vec<(DiskRequestId, DiskOp)>,
    pub observations: Vec<Box<dyn Observation>>,
}

impl ManualServices {
    pub fn new(seed: u64) -> ManualServices {
        ManualServices {
            now: Instant::ZERO,
            wall_clock: WallClock(0),
            prng: Prng::from_seed(seed),
            sent: Vec::new(),
            disk_requests: Vec::new(),
            observations: Vec::new(),
        }
    }

    /// Moves the clock forward and runs the system until it is idle (bounded).
    pub fn advance(&mut self, system: &mut System, span: Duration) {
        self.now += span;
        self.wall_clock.0 += i64::try_from(span.as_nanos()).unwrap_or(i64::MAX);
        self.settle(system);
    }

    /// Runs the system until no actor has work, at most 10,000 rounds.
    pub fn settle(&mut self, system: &mut System) {
        for _ in 0..10_000 {
            system.run(self, 1_024);
            if system.is_idle() {
                return;
            }
        }
        panic!("system did not settle within 10,000 rounds");
    }

    /// Observations of type `T`, in order.
    pub fn observations_of<T: 'static>(&self) -> Vec<&T> {
        self.observations
            .iter()
            // `(**o)` reaches the observation itself; `o.as_any()` would see the Box.
            .filter_map(|o| (**o).as_any().downcast_ref::<T>())
            .collect()
    }
}

impl Services for ManualServices {
    fn now(&self) -> Instant {
        self.now
    }

    fn wall_clock(&self) -> WallClock {
        self.wall_clock
    }

    fn random_u64(&mut self) -> u64 {
        self.prng.next_u64()
    }

    fn send_to_node(&mut self, to: NodeId, port: Port, payload: Bytes) -> Result<(), NetSendError> {
        self.sent.push(SentMessage { to, port, payload });
        Ok(())
    }

    fn submit_disk(&mut self, id: DiskRequestId, op: DiskOp) {
        self.disk_requests.push((id, op));
    }

    fn buggify(&mut self, _point: &'static str) -> bool {
        false
    }

    fn fault_points(&mut self) -> Box<dyn FaultPoints + Send> {
        Box::new(NoFaults)
    }

    fn observe(&mut self, observation: Box<dyn Observation>) {
        self.observations.push(observation);
    }
}
