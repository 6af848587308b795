//! Leader suspicion: when a follower stops trusting its leader and starts a (pre-)vote.
//!
//! With `LeaderSuspicion::RandomizedTimeout` this is the classic timer: campaign once the
//! ticks since the last reset reach the timeout drawn at that reset. With
//! `LeaderSuspicion::PhiAccrual` a follower that knows its leader keeps a [`LeaderWatch`]: the
//! arrival times of the leader's messages in a bounded window, and phi (synod-core's
//! phi-accrual arithmetic, shared with synod-detector) for the silence since the last one.
//! It campaigns when phi reaches the threshold, between a floor and a ceiling in ticks (see
//! `PhiSuspicion`). Time is the engine's `now` input; randomness is the engine's `Prng`.

use synod_core::arrival_window::{ArrivalWindow, SAMPLE_NANOS_MAX};
use synod_core::{Duration, Instant, NodeId, phi};

use crate::config::{LeaderSuspicion, PhiSuspicion};
use crate::io::Role;
use crate::raft::Raft;

/// Why a follower's election timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElectionDue {
    /// Not yet.
    No,
    /// The randomized timeout (or, under phi-accrual, the timer of a node without a leader).
    Timeout,
    /// Phi for the leader reached the threshold.
    Suspected,
    /// Phi-accrual's ceiling passed before phi reached the threshold.
    Ceiling,
}

/// What a phi-accrual follower knows of its leader's message arrivals.
#[derive(Debug, Clone)]
pub(crate) struct LeaderWatch {
    config: PhiSuspicion,
    /// The mean the window is seeded with at a new leader: the heartbeat interval.
    first_estimate: Duration,
    /// The leader the samples are of; a message from another leader starts afresh.
    leader: Option<NodeId>,
    window: ArrivalWindow,
    last_arrival: Option<Instant>,
    /// The random delay of this election-timer round, in `[0, jitter_ticks)`.
    delay_ticks: u64,
}

impl LeaderWatch {
    /// A watch for the engine's `leader_suspicion`, or `None` under the randomized timeout.
    pub(crate) fn for_config(
        suspicion: &LeaderSuspicion,
        heartbeat_interval: Duration,
    ) -> Option<LeaderWatch> {
        let LeaderSuspicion::PhiAccrual(config) = suspicion else {
            return None;
        };
        Some(LeaderWatch {
            window: ArrivalWindow::new(config.window_size),
            config: config.clone(),
            first_estimate: heartbeat_interval,
            leader: None,
            last_arrival: None,
            delay_ticks: 0,
        })
    }

    /// Records that a message from `leader` arrived at `now`.
    pub(crate) fn on_leader_message(&mut self, leader: NodeId, now: Instant) {
        let Some(last_arrival) = self.last_arrival.filter(|_| self.leader == Some(leader)) else {
            // A new leader: what the window learned of the previous one says nothing of it.
            self.leader = Some(leader);
            self.window.seed(self.first_estimate.as_nanos());
            self.last_arrival = Some(now);
            return;
        };
        let interval = now.saturating_duration_since(last_arrival);
        self.last_arrival = Some(last_arrival.max(now));
        if interval.is_zero() {
            // A burst (appends and a heartbeat handled at one instant): a zero interval says
            // nothing of the leader's period and would make the estimate jumpy.
            return;
        }
        if self.phi_at(last_arrival, now) >= self.config.threshold {
            // As in synod-detector: a gap that reached the threshold is an outage, not a
            // sample; recording it would teach the follower to tolerate outages.
            return;
        }
        self.window.push(interval.as_nanos().min(SAMPLE_NANOS_MAX));
    }

    pub(crate) fn draw_delay(&mut self, draw: impl FnOnce(u64) -> u64) {
        self.delay_ticks = draw(self.config.jitter_ticks);
    }

    /// Phi for the silence from `last_arrival` to `now`.
    fn phi_at(&self, last_arrival: Instant, now: Instant) -> f64 {
        let elapsed_nanos = now.saturating_duration_since(last_arrival).as_nanos() as f64;
        let mean_nanos = self.window.mean_nanos() + self.config.acceptable_pause.as_nanos() as f64;
        let std_deviation_nanos = self
            .window
            .std_deviation_nanos()
            .max(self.config.std_deviation_min.as_nanos() as f64);
        phi::from_normal(elapsed_nanos, mean_nanos, std_deviation_nanos)
    }

    /// Phi for `leader` at `now`, the silence shortened by `delay`; `None` for another
    /// leader or before its first message.
    pub(crate) fn phi(&self, leader: NodeId, now: Instant, delay: Duration) -> Option<f64> {
        if self.leader != Some(leader) {
            return None;
        }
        let last_arrival = self.last_arrival?;
        let now_delayed = Instant::from_nanos(now.as_nanos().saturating_sub(delay.as_nanos()));
        Some(self.phi_at(last_arrival, now_delayed.max(last_arrival)))
    }

    /// Whether the follower of `leader` should campaign after `elapsed` ticks of silence.
    fn due(
        &self,
        leader: NodeId,
        elapsed: u64,
        now: Instant,
        tick: Duration,
        election_ticks: u64,
    ) -> ElectionDue {
        let ceiling = 2 * election_ticks - 1 - self.delay_ticks;
        if elapsed >= ceiling {
            return ElectionDue::Ceiling;
        }
        // The round's random delay applies to the floor too: a dead leader's phi passes the
        // threshold before the floor, and followers whose ticks run in step would all
        // campaign at the floor's tick together.
        if elapsed < self.config.floor_ticks + self.delay_ticks {
            return ElectionDue::No;
        }
        let delay = tick.saturating_mul(self.delay_ticks);
        match self.phi(leader, now, delay) {
            Some(phi) if phi >= self.config.threshold => ElectionDue::Suspected,
            _ => ElectionDue::No,
        }
    }

    #[cfg(test)]
    pub(crate) fn delay_ticks(&self) -> u64 {
        self.delay_ticks
    }

    #[cfg(test)]
    pub(crate) fn window_mean(&self) -> f64 {
        self.window.mean_nanos()
    }

    pub(crate) fn invariants(&self) {
        self.window.invariants();
        assert!(self.delay_ticks < self.config.jitter_ticks);
        assert_eq!(self.leader.is_some(), self.last_arrival.is_some());
        assert!(self.leader.is_some() || self.window.is_empty());
    }
}

impl Raft {
    /// Whether a follower, pre-candidate or candidate should campaign on this tick.
    pub(crate) fn election_due(&mut self) -> ElectionDue {
        let timeout = if self.election_elapsed >= self.election_timeout {
            ElectionDue::Timeout
        } else {
            ElectionDue::No
        };
        let Some(watch) = &self.suspicion else {
            return timeout;
        };
        let leader = match (self.role, self.leader) {
            (Role::Follower, Some(leader)) if leader != self.id => leader,
            _ => return timeout,
        };
        let due = watch.due(
            leader,
            self.election_elapsed,
            self.now,
            self.config.tick_interval,
            self.config.election_ticks,
        );
        match due {
            ElectionDue::Suspected => self.stats.elections_suspected += 1,
            ElectionDue::Ceiling => self.stats.elections_ceiling += 1,
            ElectionDue::No | ElectionDue::Timeout => {}
        }
        due
    }

    /// Feeds a message's arrival from the current leader to the phi-accrual watch.
    pub(crate) fn watch_leader(&mut self, leader: NodeId) {
        let now = self.now;
        if let Some(watch) = self.suspicion.as_mut() {
            watch.on_leader_message(leader, now);
        }
    }

    /// Draws the phi-accrual delay of a new election-timer round (nothing under the
    /// randomized timeout, whose draws stay exactly as they were).
    pub(crate) fn draw_suspicion_delay(&mut self) {
        if let Some(watch) = self.suspicion.as_mut() {
            let prng = &mut self.prng;
            watch.draw_delay(|jitter| prng.below(jitter));
        }
    }

    /// Phi for the current leader now, under phi-accrual suspicion (status pages, tests).
    pub fn leader_phi(&self) -> Option<f64> {
        let watch = self.suspicion.as_ref()?;
        watch.phi(self.leader?, self.now, Duration::ZERO)
    }
}
