//! What the leader knows about each follower's log and how it is sending to it.

use std::collections::VecDeque;

use synod_core::LogIndex;

/// How the leader is sending to one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplicationState {
    /// Where the follower's log matches is unknown: one append at a time, waiting for each
    /// answer.
    Probe,
    /// The follower matches: appends are pipelined, `next` advances optimistically.
    Replicate,
    /// The follower needs the snapshot; `offset` is the next byte to send.
    Snapshot { last_index: LogIndex, offset: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// The highest index known to be durable on the follower and matching the leader.
    pub(crate) match_index: LogIndex,
    /// The next index to send.
    pub(crate) next_index: LogIndex,
    pub(crate) state: ReplicationState,
    /// Append requests in flight: the last index each carried and its bytes.
    inflight: VecDeque<(LogIndex, usize)>,
    inflight_bytes: usize,
    /// In probe or snapshot state: a request is out and no answer has come yet.
    pub(crate) waiting: bool,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The highest request sequence the follower has answered in this term.
    pub(crate) acked_sequence: u64,
    /// Heartbeat rounds since the last answer while requests were outstanding; a lost
    /// request would otherwise hold its pipeline slot forever.
    pub(crate) stalled_rounds: u32,
}

impl Progress {
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ReplicationState::Probe,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            waiting: false,
            recent_active: false,
            acked_sequence: 0,
            stalled_rounds: 0,
        }
    }

    /// Whether another append may be sent now under the pipeline and byte limits.
    pub(crate) fn can_send(&self, pipeline_max: usize, inflight_bytes_max: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.waiting,
            ReplicationState::Replicate => {
                self.inflight.len() < pipeline_max && self.inflight_bytes < inflight_bytes_max
            }
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// Records an append that carried entries up to `last_index`.
    pub(crate) fn sent(&mut self, last_index: LogIndex, bytes: usize) {
        match self.state {
            ReplicationState::Probe => self.waiting = true,
            ReplicationState::Replicate => {
                self.inflight.push_back((last_index, bytes));
                self.inflight_bytes += bytes;
                self.next_index = last_index.next();
            }
            ReplicationState::Snapshot { .. } => {}
        }
    }

    /// A success answer: the follower matches up to `index`. Returns whether the match
    /// index advanced.
    pub(crate) fn acknowledged(&mut self, index: LogIndex) -> bool {
        self.waiting = false;
        self.stalled_rounds = 0;
        while let Some((last, bytes)) = self.inflight.front().copied() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index.next());
        true
    }

    /// Whether requests are outstanding (in flight or awaited).
    pub(crate) fn is_outstanding(&self) -> bool {
        self.waiting || !self.inflight.is_empty()
    }

    pub(crate) fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ReplicationState::Probe;
        self.next_index = next_index.max(self.match_index.next());
        self.clear_inflight();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.clear_inflight();
    }

    pub(crate) fn become_snapshot(&mut self, last_index: LogIndex) {
        self.state = ReplicationState::Snapshot {
            last_index,
            offset: 0,
        };
        self.clear_inflight();
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.waiting = false;
        self.stalled_rounds = 0;
    }

    pub(crate) fn invariants(&self, pipeline_max: usize) {
        assert!(
            self.next_index > self.match_index,
            "progress next at or below match"
        );
        assert!(
            self.inflight.len() <= pipeline_max,
            "pipeline over its limit"
        );
        let bytes: usize = self.inflight.iter().map(|(_, bytes)| bytes).sum();
        assert_eq!(bytes, self.inflight_bytes, "inflight byte count drifted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_frees_slots_as_acknowledgements_arrive() {
        // Checks pipelining: sends fill the window, an ack frees every slot it covers.
        let mut progress = Progress::new(LogIndex(1));
        progress.become_replicate();
        progress.sent(LogIndex(3), 100);
        progress.sent(LogIndex(6), 100);
        assert!(!progress.can_send(2, 1000));
        assert_eq!(progress.next_index, LogIndex(7));
        assert!(progress.acknowledged(LogIndex(3)));
        assert!(progress.can_send(2, 1000));
        assert!(!progress.can_send(2, 100));
        assert!(!progress.acknowledged(LogIndex(2)));
        assert_eq!(progress.match_index, LogIndex(3));
    }

    #[test]
    fn probe_sends_one_at_a_time() {
        // Checks probe state allows a single outstanding append.
        let mut progress = Progress::new(LogIndex(5));
        assert!(progress.can_send(8, 1000));
        progress.sent(LogIndex(5), 10);
        assert!(!progress.can_send(8, 1000));
        progress.become_probe(LogIndex(3));
        assert!(progress.can_send(8, 1000));
        assert_eq!(progress.next_index, LogIndex(3));
    }
}
