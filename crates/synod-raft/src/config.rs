//! Raft settings. Times are tick counts (the driver sends one `Tick` per `tick_interval`),
//! sizes are bytes, counts are entries or messages; every one is a named limit.

use synod_core::config::{check_less, check_range};
use synod_core::{ConfigError, Duration, Validate};

/// Lease reads: a leader serves reads locally while a majority has acknowledged it within
/// the last election timeout, shortened by the clock drift bound. Sound only if no two
/// nodes' clocks run apart faster than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The largest relative rate difference between any two nodes' clocks, in parts per
    /// million. The lease is shortened by this fraction plus one tick.
    pub clock_drift_bound_ppm: u64,
}

/// How a follower decides that its leader is gone and starts a (pre-)vote.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaderSuspicion {
    /// The classic Raft timer: a follower campaigns after a timeout drawn afresh from
    /// `[election_ticks, 2 * election_ticks)` at every reset.
    RandomizedTimeout,
    /// A phi-accrual estimate of the leader's message arrivals decides, between a floor and
    /// a ceiling (see [`PhiSuspicion`] and docs/raft.md).
    PhiAccrual(PhiSuspicion),
}

/// Leader suspicion by phi-accrual. A follower records the arrival of every message from its
/// leader (heartbeats and appends) in a bounded window and campaigns once phi for the
/// leader's silence reaches `threshold`, but never before `floor_ticks` of silence, and
/// always by the ceiling `2 * election_ticks - 1 - delay`, so that liveness never rests on the
/// estimate. `delay` is drawn from `[0, jitter_ticks)` at every reset of the election timer;
/// phi is judged on the silence less that delay, so that followers who lose the same leader
/// at once do not all campaign at the same tick. Without a known leader (at boot, after a
/// lost election) and in the candidate roles the randomized timeout applies.
#[derive(Debug, Clone, PartialEq)]
pub struct PhiSuspicion {
    /// A follower campaigns once phi for its leader reaches this (8: odds of 1e-8 that a
    /// live leader's next message would come this late under the window's normal model).
    pub threshold: f64,
    /// Inter-arrival samples kept (the oldest evicted).
    pub window_size: usize,
    /// The floor on the window's standard deviation: steady arrivals would otherwise make phi
    /// jump a few milliseconds past the mean.
    pub std_deviation_min: Duration,
    /// Added to the window's mean: silence tolerated before phi starts to rise quickly.
    pub acceptable_pause: Duration,
    /// No campaign before this many ticks without leader contact. Voters ignore vote
    /// requests for `election_ticks` after their own last contact with the leader
    /// (stickiness, which the lease relies on), so a floor below `election_ticks` buys
    /// pre-votes that are ignored, not a faster election. Its default is one tick more:
    /// ticks are counted from each node's own tick phase, so at exactly `election_ticks`
    /// about half the voters heard last from the leader when the pre-candidate did would
    /// still be a fraction of a tick inside their election timeout, ignore the pre-vote,
    /// and cost the round a whole new timeout.
    pub floor_ticks: u64,
    /// The spread of the per-reset random delay, in ticks.
    pub jitter_ticks: u64,
}

impl Default for PhiSuspicion {
    /// Settings for the default timing (10 ms ticks, 20 ms heartbeats, 100 ms election
    /// timeout): a 10 ms deviation floor, a 20 ms acceptable pause, an 11-tick floor and a
    /// 3-tick jitter.
    fn default() -> PhiSuspicion {
        let config = RaftConfig::default();
        PhiSuspicion::for_timing(
            config.tick_interval,
            config.heartbeat_ticks,
            config.election_ticks,
        )
    }
}

impl PhiSuspicion {
    /// Settings scaled to an engine's timing, with threshold 8: the deviation floor is half
    /// the heartbeat interval, the acceptable pause one heartbeat interval, the floor a tick
    /// past the base election timeout (before it voters ignore the pre-vote, see
    /// `floor_ticks`) and the jitter a third of the election timeout.
    pub fn for_timing(tick: Duration, heartbeat_ticks: u64, election_ticks: u64) -> PhiSuspicion {
        let heartbeat_interval = tick.saturating_mul(heartbeat_ticks);
        PhiSuspicion {
            threshold: 8.0,
            window_size: 100,
            std_deviation_min: Duration::from_nanos((heartbeat_interval.as_nanos() / 2).max(1_000)),
            acceptable_pause: heartbeat_interval,
            floor_ticks: election_ticks + 1,
            jitter_ticks: (election_ticks / 3).max(1),
        }
    }
}

/// The range of `PhiSuspicion::threshold`: below 1 phi passes it within the mean, above
/// 100 never.
pub const PHI_THRESHOLD_MIN: f64 = 1.0;
pub const PHI_THRESHOLD_MAX: f64 = 100.0;

impl PhiSuspicion {
    /// Checks the settings against the timing of the engine they serve.
    fn validate_for(&self, heartbeat_ticks: u64, election_ticks: u64) -> Result<(), ConfigError> {
        if self.threshold.is_nan() {
            return Err(ConfigError::new(
                "phi_threshold",
                format!(
                    "(NaN) must be a number between {PHI_THRESHOLD_MIN} and {PHI_THRESHOLD_MAX}"
                ),
            ));
        }
        check_range(
            "phi_threshold",
            self.threshold,
            PHI_THRESHOLD_MIN,
            PHI_THRESHOLD_MAX,
        )?;
        let window_size_max = synod_core::arrival_window::WINDOW_SIZE_MAX;
        check_range("phi_window_size", self.window_size, 2, window_size_max)?;
        let duration_max = Duration::from_secs(3_600);
        let std_deviation_min = self.std_deviation_min;
        check_range(
            "phi_std_deviation_min",
            std_deviation_min,
            Duration::from_micros(1),
            duration_max,
        )?;
        check_range(
            "phi_acceptable_pause",
            self.acceptable_pause,
            Duration::ZERO,
            duration_max,
        )?;
        check_range("phi_jitter_ticks", self.jitter_ticks, 1, election_ticks)?;
        // The ceiling is at least 2 * election_ticks - jitter_ticks; the floor stays below it.
        let ceiling_min = 2 * election_ticks - self.jitter_ticks;
        check_range(
            "phi_floor_ticks",
            self.floor_ticks,
            2 * heartbeat_ticks,
            ceiling_min,
        )
        .map_err(|error| {
            ConfigError::new(
                error.field,
                format!(
                    "{} (twice heartbeat_ticks, and 2 * election_ticks - phi_jitter_ticks)",
                    error.problem
                ),
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RaftConfig {
    /// The real time one tick stands for; used only to turn the lease into a duration.
    pub tick_interval: Duration,
    /// The base election timeout. A follower's timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)` afresh after every reset.
    pub election_ticks: u64,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: u64,
    /// Pre-vote: a node asks whether it could win before it raises its term, so a node that
    /// was cut off cannot disrupt a healthy cluster on its return.
    pub pre_vote: bool,
    /// Check-quorum: a leader that has not heard from a majority within an election timeout
    /// steps down, and followers that hear from a leader ignore vote requests (stickiness).
    pub check_quorum: bool,
    /// Append requests in flight to one follower before the leader waits for responses.
    pub pipeline_max: usize,
    /// Bytes in flight to one follower (flow control by bytes).
    pub inflight_bytes_max: usize,
    /// Entries in one append request.
    pub append_entries_max: usize,
    /// Bytes of entries in one append request (one entry larger than this goes alone).
    pub append_bytes_max: usize,
    /// A single proposal larger than this is refused before it reaches the log.
    pub proposal_size_max: usize,
    /// Bytes of appended but uncommitted entries at the leader; beyond it proposals are
    /// refused with `Busy` so that a slow quorum pushes back on clients.
    pub uncommitted_bytes_max: usize,
    /// Entries handed to the state machine in one `Apply` output.
    pub apply_entries_max: usize,
    /// Bytes of a snapshot in one InstallSnapshot chunk.
    pub snapshot_chunk_size: usize,
    /// The largest snapshot a follower accepts.
    pub snapshot_size_max: u64,
    /// Ask the driver for a snapshot when the log since the last one exceeds this many
    /// bytes (log compaction driven by size).
    pub snapshot_log_bytes: u64,
    /// Entries kept after a snapshot so that slightly lagging followers catch up from the
    /// log instead of needing the snapshot.
    pub snapshot_trailing_entries: u64,
    /// Pending linearizable or lease reads at one node.
    pub reads_pending_max: usize,
    /// A learner is promoted only when it is at most this many entries behind the commit.
    pub learner_lag_max: u64,
    /// Lease reads; `None` turns them off (they then fall back to ReadIndex).
    pub lease: Option<LeaseConfig>,
    /// How a follower suspects its leader: the randomized timeout (the default) or
    /// phi-accrual.
    pub leader_suspicion: LeaderSuspicion,
}

impl Default for RaftConfig {
    fn default() -> RaftConfig {
        RaftConfig {
            tick_interval: Duration::from_millis(10),
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            pipeline_max: 8,
            inflight_bytes_max: 8 << 20,
            append_entries_max: 512,
            append_bytes_max: 1 << 20,
            proposal_size_max: 1 << 20,
            uncommitted_bytes_max: 64 << 20,
            apply_entries_max: 512,
            snapshot_chunk_size: 1 << 20,
            snapshot_size_max: 1 << 30,
            snapshot_log_bytes: 64 << 20,
            snapshot_trailing_entries: 1024,
            reads_pending_max: 4096,
            learner_lag_max: 1000,
            lease: Some(LeaseConfig {
                clock_drift_bound_ppm: 10_000,
            }),
            leader_suspicion: LeaderSuspicion::RandomizedTimeout,
        }
    }
}

impl RaftConfig {
    /// How long a lease lasts after the round that granted it started: the base election
    /// timeout shortened by the drift bound and one tick of timer slack.
    pub fn lease_duration(&self) -> Option<Duration> {
        let lease = self.lease?;
        let timeout = self.tick_interval.saturating_mul(self.election_ticks);
        let drift_nanos = (u128::from(timeout.as_nanos()) * u128::from(lease.clock_drift_bound_ppm)
            / 1_000_000) as u64;
        Some(
            timeout
                .saturating_sub(Duration::from_nanos(drift_nanos))
                .saturating_sub(self.tick_interval),
        )
    }
}

impl Validate for RaftConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let within = |error: ConfigError| error.within("raft");
        check_range(
            "tick_interval_ns",
            self.tick_interval.as_nanos(),
            1_000,
            10_000_000_000,
        )
        .map_err(within)?;
        check_range("heartbeat_ticks", self.heartbeat_ticks, 1, 1_000).map_err(within)?;
        check_range("election_ticks", self.election_ticks, 2, 100_000).map_err(within)?;
        check_less(
            "heartbeat_ticks",
            self.heartbeat_ticks,
            "election_ticks",
            self.election_ticks,
        )
        .map_err(within)?;
        check_range("pipeline_max", self.pipeline_max, 1, 1024).map_err(within)?;
        check_range("append_entries_max", self.append_entries_max, 1, 1 << 16).map_err(within)?;
        let frame_max = synod_core::limits::FRAME_PAYLOAD_SIZE_MAX / 2;
        check_range("append_bytes_max", self.append_bytes_max, 1024, frame_max).map_err(within)?;
        check_range(
            "proposal_size_max",
            self.proposal_size_max,
            16,
            self.append_bytes_max,
        )
        .map_err(|error| {
            ConfigError::new(
                "raft.proposal_size_max",
                format!("{} (append_bytes_max bounds it)", error.problem),
            )
        })?;
        check_range(
            "inflight_bytes_max",
            self.inflight_bytes_max,
            self.append_bytes_max,
            usize::MAX,
        )
        .map_err(within)?;
        check_range(
            "uncommitted_bytes_max",
            self.uncommitted_bytes_max,
            self.proposal_size_max,
            usize::MAX,
        )
        .map_err(within)?;
        check_range("apply_entries_max", self.apply_entries_max, 1, 1 << 16).map_err(within)?;
        check_range(
            "snapshot_chunk_size",
            self.snapshot_chunk_size,
            1,
            frame_max,
        )
        .map_err(within)?;
        check_range("snapshot_size_max", self.snapshot_size_max, 1, 1 << 40).map_err(within)?;
        check_range("snapshot_log_bytes", self.snapshot_log_bytes, 1, u64::MAX).map_err(within)?;
        check_range("reads_pending_max", self.reads_pending_max, 1, 1 << 20).map_err(within)?;
        if let Some(lease) = self.lease {
            check_range(
                "lease.clock_drift_bound_ppm",
                lease.clock_drift_bound_ppm,
                0,
                500_000,
            )
            .map_err(within)?;
            if self
                .lease_duration()
                .is_none_or(|duration| duration.is_zero())
            {
                return Err(ConfigError::new(
                    "raft.lease",
                    "leaves no lease: raise election_ticks or turn lease reads off",
                ));
            }
        }
        if let LeaderSuspicion::PhiAccrual(phi) = &self.leader_suspicion {
            phi.validate_for(self.heartbeat_ticks, self.election_ticks)
                .map_err(within)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_field() {
        // Checks the default configuration validates and a bad field is named in the error.
        RaftConfig::default().validate().unwrap();
        let config = RaftConfig {
            heartbeat_ticks: 20,
            ..RaftConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "config: raft.election_ticks (10) must exceed heartbeat_ticks (20)"
        );
    }

    #[test]
    fn lease_is_the_election_timeout_less_drift_and_a_tick() {
        // Checks the lease arithmetic: 10 ticks of 10ms, 1% drift, minus one tick = 89ms.
        let config = RaftConfig::default();
        assert_eq!(config.lease_duration(), Some(Duration::from_millis(89)));
        let off = RaftConfig {
            lease: None,
            ..RaftConfig::default()
        };
        assert_eq!(off.lease_duration(), None);
    }

    #[test]
    fn phi_suspicion_defaults_are_valid_and_errors_name_the_field() {
        // Checks the phi-accrual settings validate with the default timing, and that each
        // inconsistent one is refused with its field named.
        let with = |phi: PhiSuspicion| RaftConfig {
            leader_suspicion: LeaderSuspicion::PhiAccrual(phi),
            ..RaftConfig::default()
        };
        with(PhiSuspicion::default()).validate().unwrap();
        assert_eq!(PhiSuspicion::default().floor_ticks, 11);
        assert_eq!(PhiSuspicion::default().jitter_ticks, 3);
        assert_eq!(
            PhiSuspicion::default().acceptable_pause,
            Duration::from_millis(20)
        );
        assert_eq!(
            PhiSuspicion::default().std_deviation_min,
            Duration::from_millis(10)
        );
        type Change = fn(&mut PhiSuspicion);
        let table: [(Change, &str); 7] = [
            (|phi| phi.threshold = f64::NAN, "raft.phi_threshold"),
            (|phi| phi.threshold = 0.5, "raft.phi_threshold"),
            (|phi| phi.window_size = 1, "raft.phi_window_size"),
            (
                |phi| phi.std_deviation_min = Duration::ZERO,
                "raft.phi_std_deviation_min",
            ),
            (|phi| phi.jitter_ticks = 0, "raft.phi_jitter_ticks"),
            (|phi| phi.floor_ticks = 3, "raft.phi_floor_ticks"),
            (|phi| phi.floor_ticks = 18, "raft.phi_floor_ticks"),
        ];
        for (change, field) in table {
            let mut phi = PhiSuspicion::default();
            change(&mut phi);
            assert_eq!(with(phi).validate().unwrap_err().field, field);
        }
        let phi = PhiSuspicion {
            floor_ticks: 2,
            ..PhiSuspicion::default()
        };
        assert_eq!(
            with(phi).validate().unwrap_err().to_string(),
            "config: raft.phi_floor_ticks (2) must be between 4 and 17 (twice heartbeat_ticks, \
             and 2 * election_ticks - phi_jitter_ticks)"
        );
    }
}
