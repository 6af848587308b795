//! The phi-accrual failure detector as a sans-IO state machine.

use std::collections::BTreeMap;

use synod_core::{Duration, Instant, NodeId, Outbox, Protocol, Validate};

use crate::config::DetectorConfig;
use crate::phi;
use crate::window::{SAMPLE_NANOS_MAX, SEED_SAMPLES_COUNT, Window};

/// The most peers one detector watches: one per node of the largest cluster. A `Monitor`
/// beyond it is refused and counted in [`DetectorStats::monitors_refused_count`].
pub const PEERS_COUNT_MAX: usize = synod_core::limits::NODES_COUNT_MAX;
/// The most outputs a `Heartbeat` step pushes: `Restarted`, then `Recover`.
pub const HEARTBEAT_OUTPUTS_MAX: usize = 2;
/// The most outputs any single step pushes: a `Tick` may suspect every monitored peer at
/// once. Give the detector an [`Outbox`] of at least this capacity and drain it after every
/// step; `step` asserts that the room its input could need is there before it starts.
pub const OUTPUTS_PER_STEP_MAX: usize = PEERS_COUNT_MAX;

const _: () = assert!(HEARTBEAT_OUTPUTS_MAX <= OUTPUTS_PER_STEP_MAX);
const _: () = assert!(PEERS_COUNT_MAX == synod_core::limits::NODES_COUNT_MAX);

/// Everything that can happen to the detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A heartbeat from `from` arrived now. `incarnation` is the sender's boot generation:
    /// it must grow every time the sender restarts.
    Heartbeat { from: NodeId, incarnation: u64 },
    /// Evaluate every peer's phi now. The driver sends it periodically, at least as often as
    /// `heartbeat_interval`: suspicion is only ever raised on a tick.
    Tick,
    /// Start watching a peer. Idempotent: monitoring a watched peer keeps its state.
    Monitor(NodeId),
    /// Stop watching a peer and forget its state. Idempotent; emits nothing.
    Unmonitor(NodeId),
}

/// Everything the detector tells its driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// The peer's phi reached the threshold on a tick. Emitted once per transition.
    Suspect {
        peer: NodeId,
        phi: f64,
        silence: Duration,
    },
    /// A heartbeat arrived from a suspected peer. Emitted once per transition.
    Recover {
        peer: NodeId,
        suspected_for: Duration,
    },
    /// A heartbeat carried a higher incarnation: the peer rebooted and its window was reset.
    Restarted { peer: NodeId, incarnation: u64 },
}

/// What the detector knows about one peer, for status pages and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerStatus {
    pub suspected: bool,
    /// When the current suspicion was raised.
    pub suspected_since: Option<Instant>,
    /// `None` until the first heartbeat; a peer never heard from is never suspected.
    pub last_heartbeat: Option<Instant>,
    /// The incarnation of the accepted heartbeats; 0 until the first heartbeat.
    pub incarnation: u64,
    /// Samples in the window, including the two bootstrap samples until they are evicted.
    pub samples_count: usize,
    /// The mean of the window, without `acceptable_pause`; zero with no samples.
    pub interval_mean: Duration,
    /// The deviation of the window, before the `std_deviation_min` floor; zero with no
    /// samples.
    pub interval_std_deviation: Duration,
}

/// Counters; each only ever grows. Every `Heartbeat` input lands in exactly one of
/// `heartbeats_count`, `stale_heartbeats_count` and `unknown_peer_count`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Heartbeats accepted from monitored peers.
    pub heartbeats_count: u64,
    /// Heartbeats with an incarnation lower than the peer's: dropped.
    pub stale_heartbeats_count: u64,
    /// Heartbeats from peers not monitored: dropped.
    pub unknown_peer_count: u64,
    /// Accepted heartbeats at the same instant as the previous one: no sample recorded.
    pub duplicate_heartbeats_count: u64,
    /// Accepted heartbeats whose gap had already reached the threshold: no sample recorded.
    pub gaps_skipped_count: u64,
    /// Heartbeats that carried a higher incarnation (one `Restarted` each).
    pub restarts_count: u64,
    /// `Suspect` outputs.
    pub suspicions_count: u64,
    /// `Recover` outputs.
    pub recoveries_count: u64,
    /// `Monitor` inputs refused because `PEERS_COUNT_MAX` peers were already watched.
    pub monitors_refused_count: u64,
}

impl DetectorStats {
    fn counters(&self) -> [u64; 9] {
        [
            self.heartbeats_count,
            self.stale_heartbeats_count,
            self.unknown_peer_count,
            self.duplicate_heartbeats_count,
            self.gaps_skipped_count,
            self.restarts_count,
            self.suspicions_count,
            self.recoveries_count,
            self.monitors_refused_count,
        ]
    }
}

/// What a heartbeat of the current incarnation did to the window.
enum Interval {
    Recorded,
    Duplicate,
    SkippedGap,
}

/// The state of one watched peer.
#[derive(Debug, Clone)]
struct Peer {
    window: Window,
    last_heartbeat: Option<Instant>,
    incarnation: u64,
    /// `Some` exactly while the peer is suspected; the one source of truth for suspicion.
    suspected_since: Option<Instant>,
}

impl Peer {
    fn new(window_size: usize) -> Peer {
        Peer {
            window: Window::new(window_size),
            last_heartbeat: None,
            incarnation: 0,
            suspected_since: None,
        }
    }

    fn phi(&self, now: Instant, config: &DetectorConfig) -> Option<f64> {
        let last_heartbeat = self.last_heartbeat?;
        let elapsed_nanos = now.saturating_duration_since(last_heartbeat).as_nanos() as f64;
        let mean_nanos = self.window.mean_nanos() + config.acceptable_pause.as_nanos() as f64;
        let std_deviation_nanos = self
            .window
            .std_deviation_nanos()
            .max(config.std_deviation_min.as_nanos() as f64);
        Some(phi::from_normal(
            elapsed_nanos,
            mean_nanos,
            std_deviation_nanos,
        ))
    }

    /// Adopts `incarnation` with a freshly seeded window: intervals of an earlier incarnation
    /// say nothing about the new process.
    fn start_incarnation(&mut self, incarnation: u64, config: &DetectorConfig) {
        self.window.seed(config.first_heartbeat_estimate.as_nanos());
        self.incarnation = incarnation;
    }

    /// Records the interval since the last heartbeat of the same incarnation, unless it is
    /// empty (a duplicate) or an outage.
    fn record_interval(&mut self, now: Instant, config: &DetectorConfig) -> Interval {
        let last_heartbeat = self
            .last_heartbeat
            .expect("an interval needs a previous heartbeat");
        let interval = now.saturating_duration_since(last_heartbeat);
        if interval.is_zero() {
            // Network duplication or a flushed burst: a zero interval says nothing about the
            // heartbeat period and would pull the mean down, making the detector jumpy.
            return Interval::Duplicate;
        }
        let phi = self
            .phi(now, config)
            .expect("a peer with a heartbeat has a phi");
        if phi >= config.threshold_phi {
            // As in Akka: a gap that reached the threshold is an outage, not a sample of the
            // heartbeat period; recording it would teach the detector to tolerate outages.
            return Interval::SkippedGap;
        }
        self.window.push(interval.as_nanos().min(SAMPLE_NANOS_MAX));
        Interval::Recorded
    }

    fn status(&self) -> PeerStatus {
        PeerStatus {
            suspected: self.suspected_since.is_some(),
            suspected_since: self.suspected_since,
            last_heartbeat: self.last_heartbeat,
            incarnation: self.incarnation,
            samples_count: self.window.len(),
            interval_mean: duration_from_nanos(self.window.mean_nanos()),
            interval_std_deviation: duration_from_nanos(self.window.std_deviation_nanos()),
        }
    }

    fn invariants(&self, peer_id: NodeId, config: &DetectorConfig, now_last: Instant) {
        self.window.invariants();
        assert_eq!(
            self.window.size_max(),
            config.window_size,
            "{peer_id}: window size"
        );
        let Some(last_heartbeat) = self.last_heartbeat else {
            assert_eq!(
                self.window.len(),
                0,
                "{peer_id}: samples before any heartbeat"
            );
            assert_eq!(
                self.incarnation, 0,
                "{peer_id}: incarnation before any heartbeat"
            );
            assert!(
                self.suspected_since.is_none(),
                "{peer_id}: suspected before any heartbeat"
            );
            return;
        };
        assert!(
            last_heartbeat <= now_last,
            "{peer_id}: heartbeat from the future"
        );
        assert!(
            self.window.len() >= SEED_SAMPLES_COUNT,
            "{peer_id}: window lost its seed"
        );
        if let Some(suspected_since) = self.suspected_since {
            // Phi at zero silence is below log10(2), under any threshold, so a suspicion is
            // always raised strictly after the last heartbeat.
            assert!(
                suspected_since > last_heartbeat,
                "{peer_id}: suspected without silence"
            );
            assert!(
                suspected_since <= now_last,
                "{peer_id}: suspected in the future"
            );
        }
    }
}

fn duration_from_nanos(nanos: f64) -> Duration {
    // `as` saturates, and the window's statistics are finite and non-negative.
    Duration::from_nanos(nanos.round() as u64)
}

/// The phi-accrual failure detector for a set of monitored peers.
#[derive(Debug, Clone)]
pub struct PhiAccrualDetector {
    config: DetectorConfig,
    peers: BTreeMap<NodeId, Peer>,
    stats: DetectorStats,
    /// The counters when the last step began, to assert that no counter goes backwards.
    stats_step_start: DetectorStats,
    /// The latest time a step was given; the driver's time never goes backwards.
    now_last: Instant,
}

impl PhiAccrualDetector {
    /// A detector watching no peer. An invalid configuration is a bug in the caller (it must
    /// be validated where it is loaded) and panics with the field named.
    pub fn new(config: DetectorConfig) -> PhiAccrualDetector {
        if let Err(error) = config.validate() {
            panic!("PhiAccrualDetector::new: {}", error.within("detector"));
        }
        PhiAccrualDetector {
            config,
            peers: BTreeMap::new(),
            stats: DetectorStats::default(),
            stats_step_start: DetectorStats::default(),
            now_last: Instant::ZERO,
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The peer's phi at `now`, or `None` if it is not monitored or has not sent a heartbeat.
    pub fn phi(&self, peer: NodeId, now: Instant) -> Option<f64> {
        self.peers.get(&peer)?.phi(now, &self.config)
    }

    /// Whether the peer is suspected. An unmonitored peer is not.
    pub fn is_suspected(&self, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|state| state.suspected_since.is_some())
    }

    pub fn is_monitored(&self, peer: NodeId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// The status of one peer, or `None` if it is not monitored.
    pub fn peer_status(&self, peer: NodeId) -> Option<PeerStatus> {
        self.peers.get(&peer).map(Peer::status)
    }

    /// Every monitored peer, in `NodeId` order.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, PeerStatus)> + '_ {
        self.peers
            .iter()
            .map(|(peer_id, peer)| (*peer_id, peer.status()))
    }

    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// [`Protocol::invariants`] plus a recount of every window's sums: O(total samples), for
    /// tests and simulation sweeps rather than every step.
    pub fn invariants_exhaustive(&self) {
        self.invariants();
        for peer in self.peers.values() {
            peer.window.invariants_exhaustive();
        }
    }

    fn on_heartbeat(
        &mut self,
        now: Instant,
        from: NodeId,
        incarnation: u64,
        out: &mut Outbox<Output>,
    ) {
        assert!(
            out.remaining() >= HEARTBEAT_OUTPUTS_MAX,
            "detector outbox has room for {} outputs; a heartbeat needs {HEARTBEAT_OUTPUTS_MAX}",
            out.remaining()
        );
        let config = &self.config;
        let Some(peer) = self.peers.get_mut(&from) else {
            self.stats.unknown_peer_count += 1;
            return;
        };
        if peer.last_heartbeat.is_some() && incarnation < peer.incarnation {
            // A message from a process that has since restarted: it proves nothing about the
            // peer that is running now.
            self.stats.stale_heartbeats_count += 1;
            return;
        }
        self.stats.heartbeats_count += 1;
        if peer.last_heartbeat.is_none() {
            peer.start_incarnation(incarnation, config);
        } else if incarnation > peer.incarnation {
            peer.start_incarnation(incarnation, config);
            self.stats.restarts_count += 1;
            out.push(Output::Restarted {
                peer: from,
                incarnation,
            });
        } else {
            match peer.record_interval(now, config) {
                Interval::Recorded => {}
                Interval::Duplicate => self.stats.duplicate_heartbeats_count += 1,
                Interval::SkippedGap => self.stats.gaps_skipped_count += 1,
            }
        }
        peer.last_heartbeat = Some(now);
        if let Some(suspected_since) = peer.suspected_since.take() {
            self.stats.recoveries_count += 1;
            let suspected_for = now.saturating_duration_since(suspected_since);
            out.push(Output::Recover {
                peer: from,
                suspected_for,
            });
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outbox<Output>) {
        assert!(
            out.remaining() >= self.peers.len(),
            "detector outbox has room for {} outputs; a tick over {} peers may need them all",
            out.remaining(),
            self.peers.len()
        );
        let config = &self.config;
        for (peer_id, peer) in &mut self.peers {
            if peer.suspected_since.is_some() {
                continue;
            }
            // A peer never heard from has no phi: it is not suspected until it has spoken.
            let Some(last_heartbeat) = peer.last_heartbeat else {
                continue;
            };
            let phi = peer
                .phi(now, config)
                .expect("a peer with a heartbeat has a phi");
            if phi < config.threshold_phi {
                continue;
            }
            peer.suspected_since = Some(now);
            self.stats.suspicions_count += 1;
            let silence = now.saturating_duration_since(last_heartbeat);
            out.push(Output::Suspect {
                peer: *peer_id,
                phi,
                silence,
            });
        }
    }

    fn on_monitor(&mut self, peer: NodeId) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if self.peers.len() >= PEERS_COUNT_MAX {
            self.stats.monitors_refused_count += 1;
            return;
        }
        self.peers.insert(peer, Peer::new(self.config.window_size));
    }

    fn on_unmonitor(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }
}

impl Protocol for PhiAccrualDetector {
    type Input = Input;
    type Output = Output;

    fn step(&mut self, now: Instant, input: Input, out: &mut Outbox<Output>) {
        assert!(
            now >= self.now_last,
            "detector time went backwards: {now} after {}",
            self.now_last
        );
        self.now_last = now;
        self.stats_step_start = self.stats;
        match input {
            Input::Heartbeat { from, incarnation } => {
                self.on_heartbeat(now, from, incarnation, out)
            }
            Input::Tick => self.on_tick(now, out),
            Input::Monitor(peer) => self.on_monitor(peer),
            Input::Unmonitor(peer) => self.on_unmonitor(peer),
        }
        self.invariants();
    }

    fn invariants(&self) {
        assert!(
            self.peers.len() <= PEERS_COUNT_MAX,
            "{} peers monitored",
            self.peers.len()
        );
        let counters_start = self.stats_step_start.counters();
        for (counter, counter_start) in self.stats.counters().iter().zip(counters_start) {
            assert!(
                *counter >= counter_start,
                "a detector counter went backwards"
            );
        }
        // Each recovery ends one suspicion; unmonitoring may drop a suspicion silently.
        let suspected_count = self
            .peers
            .values()
            .filter(|peer| peer.suspected_since.is_some())
            .count() as u64;
        assert!(
            self.stats.recoveries_count + suspected_count <= self.stats.suspicions_count,
            "more recoveries and suspected peers than suspicions"
        );
        for (peer_id, peer) in &self.peers {
            peer.invariants(*peer_id, &self.config, self.now_last);
        }
    }
}
