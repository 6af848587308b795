//! The circuit breaker of one peer: is the peer answering?
//!
//! A connection of this transport carries one direction only, so a peer's health cannot be
//! read off the writes to it: a paused or overloaded process's kernel keeps taking bytes
//! until its buffers fill, many seconds later. The breaker measures what matters instead,
//! whether the peer is heard from. A *call* begins when a frame goes to the peer while no
//! call is outstanding, and succeeds with the next frame that arrives from the peer (every
//! protocol synod runs between nodes answers: appends and heartbeats, votes, read-index and
//! client requests), its duration the wait. A call that hears nothing within
//! `answer_timeout`, or whose connection fails, fails. The breaker's windows judge the calls
//! (`synod-resilience`): when enough fail it opens, and frames to the peer are refused at
//! once (`NetSendError::PeerUnavailable`, counted) instead of queued behind a peer that
//! does not drain them, except frames to the priority ports (Raft's and the failure
//! detector's), which always go: refusing a heartbeat could itself cost an election, and
//! Raft bounds and retries its own traffic. A frame from the peer while the breaker is
//! open is news that it is back (a restarted or resumed process speaks first: every node
//! sends failure-detector heartbeats to every other), so the breaker turns half-open at
//! once instead of at the end of the open duration; otherwise the open duration ends it.
//! The next frame to the peer is the trial, and the peer heard from again closes the
//! breaker. Waiting out the open
//! duration after a peer is back would cost an election or a catch-up that long.
//!
//! Every method takes the time as an input, so the logic is tested without a network.

use synod_core::{Duration, Instant};
use synod_resilience::{
    BreakerConfig, BreakerState, BreakerStats, CircuitBreaker, Permit, Rejected,
};

/// One peer's breaker and the call in progress.
#[derive(Debug)]
pub(crate) struct PeerBreaker {
    breaker: CircuitBreaker,
    /// A frame went out and the peer has not been heard from since.
    outstanding: Option<Permit>,
    answer_timeout: Duration,
}

impl PeerBreaker {
    /// A closed breaker judging calls by `config`; a call fails after `answer_timeout`.
    pub(crate) fn new(config: BreakerConfig, answer_timeout: Duration) -> PeerBreaker {
        PeerBreaker {
            breaker: CircuitBreaker::new(config),
            outstanding: None,
            answer_timeout,
        }
    }

    /// Whether a frame may go to the peer at `now`. Starts a call when none is outstanding;
    /// while one is, frames ride along if the breaker is closed, and wait for the trial's
    /// verdict (refused) if it is not. A frame that is not `refusable` (Raft's and the
    /// failure detector's: refusing them could itself cost an election) always goes, and
    /// starts a call when the breaker permits one.
    pub(crate) fn admit(&mut self, now: Instant, refusable: bool) -> Result<(), Rejected> {
        self.expire(now);
        if self.outstanding.is_some() {
            return match self.breaker.state(now) {
                BreakerState::Closed => Ok(()),
                _ if !refusable => Ok(()),
                state => Err(Rejected {
                    state,
                    retry_after: self.answer_timeout,
                }),
            };
        }
        match self.breaker.try_acquire(now) {
            Ok(permit) => {
                self.outstanding = Some(permit);
                Ok(())
            }
            Err(_) if !refusable => Ok(()),
            Err(rejected) => Err(rejected),
        }
    }

    /// A frame arrived from the peer at `now`: the call in progress succeeded; an open
    /// breaker lets its trial through at once.
    pub(crate) fn heard(&mut self, now: Instant) {
        match self.outstanding.take() {
            Some(permit) => {
                let waited = now.saturating_duration_since(permit.acquired_at());
                self.breaker.on_success(now, permit, waited);
            }
            None => self.breaker.force_half_open(now),
        }
    }

    /// The connection to the peer failed at `now`: the call in progress failed.
    pub(crate) fn connection_failed(&mut self, now: Instant) {
        if let Some(permit) = self.outstanding.take() {
            let waited = now.saturating_duration_since(permit.acquired_at());
            self.breaker.on_failure(now, permit, waited);
        }
    }

    /// Fails the call in progress if the peer has not answered it within the timeout.
    fn expire(&mut self, now: Instant) {
        let expired = self.outstanding.as_ref().is_some_and(|permit| {
            now.saturating_duration_since(permit.acquired_at()) >= self.answer_timeout
        });
        if expired {
            self.connection_failed(now);
        }
    }

    /// The breaker's state at `now` (an unanswered call past its timeout counted first).
    pub(crate) fn state(&mut self, now: Instant) -> BreakerState {
        self.expire(now);
        self.breaker.state(now)
    }

    pub(crate) fn stats(&self) -> BreakerStats {
        self.breaker.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_resilience::SlidingWindow;

    fn breaker() -> PeerBreaker {
        let config = BreakerConfig {
            window: SlidingWindow::Count { calls_count: 4 },
            failure_rate_percent: 100,
            calls_min: 2,
            open_duration: Duration::from_millis(500),
            half_open_trials_max: 1,
            half_open_duration_max: Duration::from_secs(2),
            ..BreakerConfig::default()
        };
        PeerBreaker::new(config, Duration::from_millis(100))
    }

    /// A breaker opened at 15 ms by two failed connections (at 5 and 15 ms).
    fn opened_by_failed_connections() -> PeerBreaker {
        let mut peer = breaker();
        assert_eq!(peer.admit_bulk(at(0)), Ok(()));
        peer.connection_failed(at(5));
        assert_eq!(peer.admit_bulk(at(10)), Ok(()));
        peer.connection_failed(at(15));
        assert_eq!(peer.state(at(20)), BreakerState::Open);
        peer
    }

    impl PeerBreaker {
        fn admit_bulk(&mut self, now: Instant) -> Result<(), Rejected> {
            self.admit(now, true)
        }
    }

    #[test]
    fn frames_that_may_not_be_refused_go_even_while_open() {
        // Checks that a priority frame (refusable false) passes an open breaker, while a
        // bulk one is refused, and that a priority frame can carry the half-open trial.
        let mut peer = opened_by_failed_connections();
        assert!(peer.admit(at(100), true).is_err());
        assert_eq!(peer.admit(at(100), false), Ok(()));
        assert_eq!(peer.state(at(100)), BreakerState::Open);
        peer.heard(at(110));
        assert_eq!(peer.admit(at(120), false), Ok(()), "the trial");
        peer.heard(at(130));
        assert_eq!(peer.state(at(130)), BreakerState::Closed);
    }

    fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    #[test]
    fn a_peer_that_answers_keeps_the_breaker_closed() {
        // Checks that frames answered within the timeout are successful calls: many
        // frames, one call per answer, and the breaker never leaves closed.
        let mut peer = breaker();
        for step in 0..10 {
            assert_eq!(peer.admit_bulk(at(step * 50)), Ok(()));
            assert_eq!(peer.admit_bulk(at(step * 50 + 1)), Ok(()), "rides along");
            peer.heard(at(step * 50 + 20));
        }
        assert_eq!(peer.state(at(600)), BreakerState::Closed);
        let stats = peer.stats();
        assert_eq!((stats.calls_succeeded, stats.calls_failed), (10, 0));
    }

    #[test]
    fn a_silent_peer_opens_the_breaker_then_a_trial_answered_closes_it() {
        // Checks the whole cycle: two unanswered calls (timeout 100 ms) open the breaker,
        // frames are then refused until the open duration (500 ms) ends, one trial frame
        // goes out, others wait for its verdict, and the peer heard from closes it.
        let mut peer = breaker();
        assert_eq!(peer.admit_bulk(at(0)), Ok(()));
        assert_eq!(
            peer.admit_bulk(at(100)),
            Ok(()),
            "the first call failed; a second begins"
        );
        assert_eq!(peer.state(at(200)), BreakerState::Open);
        let refused = peer.admit_bulk(at(300)).unwrap_err();
        assert_eq!(refused.state, BreakerState::Open);
        assert_eq!(refused.retry_after, Duration::from_millis(400));
        assert_eq!(peer.admit_bulk(at(700)), Ok(()), "the half-open trial");
        assert_eq!(
            peer.admit_bulk(at(710)).unwrap_err().state,
            BreakerState::HalfOpen
        );
        peer.heard(at(720));
        assert_eq!(peer.state(at(720)), BreakerState::Closed);
        assert_eq!(peer.admit_bulk(at(730)), Ok(()));
    }

    #[test]
    fn a_failed_connection_fails_the_call_and_a_failed_trial_reopens() {
        // Checks that a connection failure counts at once (no wait for the timeout), and
        // that a trial that is not answered opens the breaker again.
        let mut peer = opened_by_failed_connections();
        assert_eq!(peer.admit_bulk(at(520)), Ok(()), "the trial");
        assert_eq!(
            peer.state(at(620)),
            BreakerState::Open,
            "the trial timed out"
        );
        assert!(peer.admit_bulk(at(630)).is_err());
        let stats = peer.stats();
        assert_eq!(stats.transitions_to_open, 2);
    }

    #[test]
    fn hearing_from_a_peer_without_a_call_changes_nothing() {
        // Checks that frames from a peer this node has sent nothing to are not calls.
        let mut peer = breaker();
        peer.heard(at(10));
        assert_eq!(peer.stats().calls_succeeded, 0);
        assert_eq!(peer.state(at(10)), BreakerState::Closed);
    }

    #[test]
    fn a_peer_heard_from_while_open_gets_its_trial_at_once() {
        // Checks that a frame from the peer while the breaker is open (a restarted process
        // speaking first) makes it half-open before the open duration (500 ms) ends, so
        // the next frame is the trial and the next answer closes it.
        let mut peer = opened_by_failed_connections();
        assert!(peer.admit_bulk(at(100)).is_err());
        peer.heard(at(110));
        assert_eq!(peer.state(at(110)), BreakerState::HalfOpen);
        assert_eq!(peer.admit_bulk(at(120)), Ok(()), "the trial");
        peer.heard(at(130));
        assert_eq!(peer.state(at(130)), BreakerState::Closed);
    }
}
