//! Exact-behaviour tests of phi-accrual leader suspicion: a follower fed heartbeats on a
//! known schedule, then silence, and the tick at which it campaigns.

use synod_core::{Duration, Instant, LogIndex, NodeId, Outbox, Prng, Protocol, Term};

use crate::config::{LeaderSuspicion, PhiSuspicion};
use crate::io::{Input, Output, Role};
use crate::message::{Message, MessageBody};
use crate::types::{HardState, Membership, Recovered};
use crate::{Raft, RaftConfig};

const TICK: Duration = Duration::from_millis(10);

/// Node 2 of three, a follower in term 1 with an empty log, under phi-accrual suspicion.
fn follower(phi: PhiSuspicion) -> Raft {
    let config = RaftConfig {
        leader_suspicion: LeaderSuspicion::PhiAccrual(phi),
        ..RaftConfig::default()
    };
    let recovered = Recovered {
        hard_state: HardState {
            term: Term(1),
            vote: None,
        },
        snapshot: None,
        entries: vec![],
    };
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let membership = Membership::with_voters(&voters);
    Raft::new(NodeId(2), config, Prng::from_seed(7), membership, recovered)
}

/// Drives one follower on a clock that advances one tick per `Tick` input.
struct Driver {
    raft: Raft,
    now: Instant,
    sequence: u64,
}

impl Driver {
    fn new(phi: PhiSuspicion) -> Driver {
        Driver {
            raft: follower(phi),
            now: Instant::from_nanos(1_000_000_000),
            sequence: 0,
        }
    }

    fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Outbox::new(1024);
        self.raft.step(self.now, input, &mut out);
        out.drain().collect()
    }

    /// An empty append (a heartbeat) from leader 1 in term 1, arriving now.
    fn heartbeat(&mut self) {
        self.sequence += 1;
        let body = MessageBody::AppendRequest {
            prev_index: LogIndex(0),
            prev_term: Term(0),
            entries: vec![],
            commit: LogIndex(0),
            sequence: self.sequence,
        };
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body,
        };
        self.step(Input::Message(message));
        assert_eq!(self.raft.leader(), Some(NodeId(1)));
    }

    /// Advances one tick; returns whether the follower sent pre-vote requests.
    fn tick(&mut self) -> bool {
        self.now += TICK;
        let outputs = self.step(Input::Tick);
        outputs.iter().any(|output| {
            matches!(
                output,
                Output::Send(Message {
                    body: MessageBody::VoteRequest { pre_vote: true, .. },
                    ..
                })
            )
        })
    }

    /// Heartbeats every two ticks (20 ms, the default heartbeat interval) for `ticks`.
    fn steady(&mut self, ticks: u64) -> u64 {
        let mut campaigns = 0;
        for tick in 0..ticks {
            if tick % 2 == 0 {
                self.heartbeat();
            }
            campaigns += u64::from(self.tick());
        }
        campaigns
    }

    /// Ticks of silence until the follower campaigns (at most `ticks_max`).
    fn ticks_to_campaign(&mut self, ticks_max: u64) -> Option<u64> {
        (1..=ticks_max).find(|_| self.tick())
    }

    fn delay_ticks(&self) -> u64 {
        self.raft
            .suspicion
            .as_ref()
            .expect("phi-accrual")
            .delay_ticks()
    }
}

#[test]
fn steady_heartbeats_never_start_an_election() {
    // Checks a phi-accrual follower whose leader sends a heartbeat every 20 ms never
    // campaigns over 10 s, and that phi right after a heartbeat is far below the threshold.
    let mut driver = Driver::new(PhiSuspicion::default());
    assert_eq!(driver.steady(1_000), 0);
    assert_eq!(driver.raft.role(), Role::Follower);
    assert_eq!(driver.raft.stats().elections_started, 0);
    driver.heartbeat();
    let phi = driver.raft.leader_phi().expect("a leader with samples");
    assert!(phi < 0.01, "phi {phi} right after a heartbeat");
}

#[test]
fn a_silent_leader_is_suspected_when_phi_passes_the_threshold() {
    // Checks the exact tick of suspicion after steady 20 ms heartbeats stop: the window's
    // mean is 20 ms, its deviation the 10 ms floor, the acceptable pause 40 ms, so phi is
    // 7.3 at 110 ms of silence and 10.8 at 120 ms; judged on the silence less the random
    // delay, the follower campaigns (a pre-vote to both peers) at tick 12 + delay, above
    // the floor of 11 + delay ticks and below the ceiling, and counts it as suspected.
    let phi = PhiSuspicion {
        acceptable_pause: Duration::from_millis(40),
        ..PhiSuspicion::default()
    };
    let mut driver = Driver::new(phi);
    driver.steady(400);
    driver.heartbeat();
    let delay = driver.delay_ticks();
    assert!(delay < 3);
    assert_eq!(driver.ticks_to_campaign(30), Some(12 + delay));
    assert_eq!(driver.raft.role(), Role::PreCandidate);
    let stats = driver.raft.stats();
    assert_eq!((stats.elections_started, stats.elections_suspected), (1, 1));
    assert_eq!(stats.elections_ceiling, 0);
}

#[test]
fn the_floor_holds_when_phi_passes_early() {
    // Checks that a low threshold, which phi passes after 50 ms of silence, still waits for
    // the floor of 11 ticks (one past the 10-tick election timeout, when every voter's lease
    // has lapsed) plus the round's random delay, which spreads followers that lost their
    // leader together over several ticks.
    let phi = PhiSuspicion {
        threshold: 1.0,
        ..PhiSuspicion::default()
    };
    let mut driver = Driver::new(phi);
    driver.steady(400);
    driver.heartbeat();
    let delay = driver.delay_ticks();
    assert!(delay < 3);
    assert_eq!(driver.ticks_to_campaign(30), Some(11 + delay));
    assert_eq!(driver.raft.stats().elections_suspected, 1);
}

#[test]
fn the_ceiling_holds_when_phi_never_passes_the_threshold() {
    // Checks liveness does not rest on the estimate: with an acceptable pause of an hour phi
    // stays near zero, and a follower that heard its leader once (the window holds only the
    // seed samples) campaigns at the ceiling, 2 * election_ticks - 1 - delay ticks.
    let phi = PhiSuspicion {
        acceptable_pause: Duration::from_secs(3_600),
        ..PhiSuspicion::default()
    };
    let mut driver = Driver::new(phi);
    driver.heartbeat();
    let delay = driver.delay_ticks();
    assert_eq!(driver.ticks_to_campaign(30), Some(19 - delay));
    let stats = driver.raft.stats();
    assert_eq!((stats.elections_ceiling, stats.elections_suspected), (1, 0));
}

#[test]
fn without_a_leader_the_randomized_timeout_applies() {
    // Checks a phi-accrual node that never heard a leader (no samples at all) campaigns at
    // its randomized election timeout, as under the default mode.
    let mut driver = Driver::new(PhiSuspicion::default());
    let timeout = driver.raft.election_timeout;
    assert!((10..20).contains(&timeout));
    assert_eq!(driver.ticks_to_campaign(30), Some(timeout));
    let stats = driver.raft.stats();
    assert_eq!((stats.elections_started, stats.elections_suspected), (1, 0));
    assert_eq!(stats.elections_ceiling, 0);
}

#[test]
fn a_gap_that_reached_the_threshold_is_not_learned() {
    // Checks that an outage is not recorded as an inter-arrival sample: after a 300 ms gap
    // (with the election itself suppressed by heartbeats resuming before the floor is
    // judged again) phi right after the next 20 ms interval is what steady arrivals give.
    let mut driver = Driver::new(PhiSuspicion {
        floor_ticks: 17,
        acceptable_pause: Duration::ZERO,
        ..PhiSuspicion::default()
    });
    driver.steady(400);
    driver.heartbeat();
    // Silence of 150 ms: phi is far over the threshold but the floor (17 ticks) holds.
    for _ in 0..15 {
        assert!(!driver.tick());
    }
    driver.heartbeat();
    let window = &driver.raft.suspicion.as_ref().expect("phi").window_mean();
    assert_eq!(*window, 20_000_000.0, "the gap entered the window");
}
