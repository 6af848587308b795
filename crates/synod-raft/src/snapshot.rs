//! Snapshots: asking the driver for one when the log grows, compacting the log behind it,
//! streaming it in chunks to a follower that fell behind, and installing one.

use bytes::Bytes;
use synod_core::{LogIndex, NodeId, Outbox};

use crate::io::Output;
use crate::message::{Message, MessageBody};
use crate::progress::ReplicationState;
use crate::raft::Raft;
use crate::types::{Snapshot, SnapshotMeta};

/// A snapshot arriving in chunks.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    meta: SnapshotMeta,
    size: u64,
    data: Vec<u8>,
}

impl Raft {
    pub(crate) fn maybe_request_snapshot(&mut self, out: &mut Outbox<Output>) {
        let base = self
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |s| s.meta.last_index);
        if self.snapshot_requested
            || self.log.bytes() < self.config.snapshot_log_bytes
            || self.log.applied <= base
        {
            return;
        }
        self.snapshot_requested = true;
        out.push(Output::SnapshotWanted {
            applied: self.log.applied,
        });
    }

    /// The driver made a snapshot durable: keep it for followers and compact the log,
    /// leaving some trailing entries for followers that are only a little behind.
    pub(crate) fn on_snapshot_taken(&mut self, snapshot: Snapshot, out: &mut Outbox<Output>) {
        self.snapshot_requested = false;
        let index = snapshot.meta.last_index;
        let newest = self
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |s| s.meta.last_index);
        if index <= newest || index > self.log.applied {
            self.stats.messages_unexpected += 1;
            return;
        }
        match self.log.term_at(index) {
            // The log moved past the snapshot meanwhile (a snapshot from the leader replaced
            // it while this one was being written): this one is of no use any more.
            None => {
                self.stats.messages_unexpected += 1;
                return;
            }
            Some(term) => assert_eq!(
                term, snapshot.meta.last_term,
                "snapshot term disagrees with the log"
            ),
        }
        let keep_from = LogIndex(
            index
                .0
                .saturating_sub(self.config.snapshot_trailing_entries),
        );
        let compact_to = keep_from.max(self.log.base_index()).min(index);
        self.snapshot = Some(snapshot);
        if compact_to > self.log.base_index() {
            // The configuration at the new compaction point must be read before the entries
            // that carry it are dropped.
            self.membership_base = self.membership_at(compact_to);
            self.log.compact_to(compact_to);
            out.push(Output::Compacted {
                first_index: self.log.first_index(),
            });
        }
    }

    /// The configuration in force at `index` (at or above the log's compaction point): what
    /// a snapshot taken at `index` must record.
    pub fn membership_at(&self, index: LogIndex) -> crate::types::Membership {
        match self.log.membership_at_or_before(index) {
            Some((_, membership)) => membership.clone(),
            None => self.membership_base.clone(),
        }
    }

    /// The follower's next entry was compacted: send it the snapshot instead.
    pub(crate) fn start_snapshot_transfer(&mut self, to: NodeId, out: &mut Outbox<Output>) {
        let Some(snapshot) = &self.snapshot else {
            // No snapshot yet although the log was compacted: cannot happen, since the log
            // is compacted only behind a snapshot.
            self.stats.messages_unexpected += 1;
            return;
        };
        let last_index = snapshot.meta.last_index;
        self.stats.snapshots_sent += 1;
        self.progress
            .get_mut(&to)
            .expect("follower")
            .become_snapshot(last_index);
        self.send_snapshot_chunk(to, out);
    }

    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId, out: &mut Outbox<Output>) {
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        let ReplicationState::Snapshot { last_index, offset } = progress.state else {
            return;
        };
        let offset = if last_index == snapshot.meta.last_index {
            offset
        } else {
            // A newer snapshot replaced the one being sent: start over with it.
            progress.become_snapshot(snapshot.meta.last_index);
            0
        };
        progress.waiting = true;
        let size = snapshot.data.len() as u64;
        let start = offset.min(size) as usize;
        let end = (start + self.config.snapshot_chunk_size).min(snapshot.data.len());
        let sequence = self.next_sequence();
        let body = MessageBody::InstallSnapshot {
            meta: snapshot.meta,
            offset,
            size,
            data: snapshot.data.slice(start..end),
            sequence,
        };
        self.send(to, body, out);
    }

    pub(crate) fn on_install_snapshot_response(
        &mut self,
        from: NodeId,
        next_offset: u64,
        done: bool,
        last_index: LogIndex,
        sequence: u64,
        out: &mut Outbox<Output>,
    ) {
        if !self.note_answer(from, sequence) {
            return;
        }
        let last_index_now = self.log.last_index();
        let progress = self.progress.get_mut(&from).expect("noted above");
        let ReplicationState::Snapshot {
            last_index: sending,
            ..
        } = progress.state
        else {
            return;
        };
        if done {
            progress.acknowledged(last_index.min(last_index_now));
            progress.become_replicate();
            self.maybe_commit(out);
        } else if last_index == sending {
            progress.waiting = false;
            progress.state = ReplicationState::Snapshot {
                last_index: sending,
                offset: next_offset,
            };
        }
        let progress = &self.progress;
        self.reads.confirm(&self.membership, self.id, progress, out);
        self.broadcast_to(from, out);
    }

    fn broadcast_to(&mut self, to: NodeId, out: &mut Outbox<Output>) {
        let Some(state) = self.progress.get(&to).map(|p| p.state.clone()) else {
            return;
        };
        match state {
            ReplicationState::Snapshot { .. } => self.send_snapshot_chunk(to, out),
            _ => self.broadcast_append(out),
        }
    }

    pub(crate) fn on_install_snapshot(&mut self, message: Message, out: &mut Outbox<Output>) {
        let MessageBody::InstallSnapshot {
            meta,
            offset,
            size,
            data,
            sequence,
        } = message.body
        else {
            return;
        };
        let leader = message.from;
        if !self.follow_leader(leader, out) {
            return;
        }
        let answer = |raft: &Raft, next_offset: u64, done: bool, last_index: LogIndex| {
            raft.message(
                leader,
                MessageBody::InstallSnapshotResponse {
                    next_offset,
                    done,
                    last_index,
                    sequence,
                },
            )
        };
        if meta.last_index <= self.log.commit {
            // Already covered by what this node has committed.
            let response = answer(self, size, true, self.log.commit);
            self.send_when_durable(response, out);
            return;
        }
        if size > self.config.snapshot_size_max || meta.membership.check().is_err() {
            self.stats.snapshot_chunks_refused += 1;
            return;
        }
        let incoming = self
            .incoming_snapshot
            .get_or_insert_with(|| IncomingSnapshot {
                meta: meta.clone(),
                size,
                data: Vec::new(),
            });
        if incoming.meta != meta || incoming.size != size {
            if offset != 0 {
                self.incoming_snapshot = None;
                let response = answer(self, 0, false, meta.last_index);
                out.push(Output::Send(response));
                return;
            }
            *incoming = IncomingSnapshot {
                meta: meta.clone(),
                size,
                data: Vec::new(),
            };
        }
        let fits = incoming.data.len() as u64 + data.len() as u64 <= size;
        if offset == incoming.data.len() as u64 && fits {
            incoming.data.extend_from_slice(&data);
        }
        let received = incoming.data.len() as u64;
        if received < size {
            let response = answer(self, received, false, meta.last_index);
            out.push(Output::Send(response));
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("present");
        let snapshot = Snapshot {
            meta: incoming.meta,
            data: Bytes::from(incoming.data),
        };
        self.install_snapshot(snapshot, out);
        let response = answer(self, size, true, meta.last_index);
        self.send_when_durable(response, out);
    }

    /// Replaces the log up to the snapshot (keeping a matching suffix) and persists it; the
    /// state machine gets it once it is durable.
    fn install_snapshot(&mut self, snapshot: Snapshot, out: &mut Outbox<Output>) {
        let meta = &snapshot.meta;
        let keeps_suffix = self.log.term_at(meta.last_index) == Some(meta.last_term);
        if keeps_suffix {
            self.log.discard_through(meta.last_index, meta.last_term);
        } else {
            self.log.reset_to_snapshot(meta.last_index, meta.last_term);
        }
        self.log.commit = self.log.commit.max(meta.last_index);
        self.membership_base = meta.membership.clone();
        self.refresh_membership();
        self.membership_changed(out);
        self.stats.snapshots_installed += 1;
        self.persist_snapshot(snapshot.clone(), !keeps_suffix);
        let id = self.durable_mark();
        self.snapshot_installing = Some((id, snapshot));
    }

    /// The installed snapshot is durable: the state machine takes it.
    pub(crate) fn finish_snapshot_install(&mut self, snapshot: Snapshot, out: &mut Outbox<Output>) {
        self.log.applied = self.log.applied.max(snapshot.meta.last_index);
        self.snapshot = Some(snapshot.clone());
        out.push(Output::ApplySnapshot(snapshot));
    }
}
