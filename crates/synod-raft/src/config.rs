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

#[derive(Debug, Clone, PartialEq, Eq)]
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
}
