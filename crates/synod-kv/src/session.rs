//! Client sessions: the idempotent receiver that makes a retried command take effect at most
//! once and get the same reply.
//!
//! Each session remembers, for every sequence above the client's acknowledgement, the hash of
//! the command's encoded operation and its reply. Time is log time (the leader's timestamp
//! in each entry, never decreasing), so every replica expires the same sessions at the same
//! entry.

use std::collections::{BTreeMap, BTreeSet};

use synod_core::ClientId;

use crate::command::SessionRef;
use crate::response::{CommandError, Response};

/// The reply to one applied sequence, kept until the client acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedReply {
    /// xxh3-64 of the encoded operation, to tell a retry from a reused sequence.
    pub op_hash: u64,
    pub response: Response,
}

/// One client's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Log time of the session's last command.
    pub last_activity_ns: u64,
    /// The highest acknowledgement seen: replies at or below it are forgotten, and those
    /// sequences are refused.
    pub acknowledged: u64,
    /// The highest sequence applied (0 before the first).
    pub sequence_applied_max: u64,
    /// Replies for the applied sequences above `acknowledged`.
    pub replies: BTreeMap<u64, CachedReply>,
}

/// What the session table says about a command in a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new sequence: apply it, then [`SessionTable::record`] the reply.
    Apply,
    /// A retry of an applied sequence: send this cached reply, apply nothing.
    Replay(Response),
}

/// The sessions, with an index by last activity for expiry and eviction in a deterministic
/// order (oldest activity first, then lowest client id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: BTreeMap<ClientId, Session>,
    by_activity: BTreeSet<(u64, ClientId)>,
}

impl SessionTable {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.sessions.get(&client)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.sessions.iter()
    }

    /// Opens a session at log time `now`, first evicting the least recently active one when
    /// `sessions_max` are open. Returns the evicted session's id.
    pub fn register(
        &mut self,
        client: ClientId,
        now_ns: u64,
        sessions_max: usize,
    ) -> Option<ClientId> {
        assert!(
            !self.sessions.contains_key(&client),
            "session {client} exists"
        );
        let evicted = if self.sessions.len() >= sessions_max {
            let &(_, oldest) = self.by_activity.first().expect("sessions_max > 0");
            self.remove(oldest);
            Some(oldest)
        } else {
            None
        };
        let session = Session {
            last_activity_ns: now_ns,
            acknowledged: 0,
            sequence_applied_max: 0,
            replies: BTreeMap::new(),
        };
        self.insert(client, session);
        evicted
    }

    /// Inserts a session (registration, snapshot restore).
    pub fn insert(&mut self, client: ClientId, session: Session) {
        self.by_activity.insert((session.last_activity_ns, client));
        let previous = self.sessions.insert(client, session);
        assert!(previous.is_none(), "session {client} inserted twice");
    }

    pub fn remove(&mut self, client: ClientId) -> bool {
        let Some(session) = self.sessions.remove(&client) else {
            return false;
        };
        let removed = self.by_activity.remove(&(session.last_activity_ns, client));
        assert!(removed, "session {client} missing from the activity index");
        true
    }

    /// Removes up to `sweep_max` sessions idle for more than `timeout_ns` at `now_ns`, oldest
    /// first. Returns how many were removed.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, sweep_max: usize) -> usize {
        let mut removed = 0;
        while removed < sweep_max {
            let Some(&(last_activity_ns, client)) = self.by_activity.first() else {
                break;
            };
            if !is_expired(last_activity_ns, now_ns, timeout_ns) {
                break;
            }
            self.remove(client);
            removed += 1;
        }
        removed
    }

    /// The live session `client` at `now_ns`, removing it if it has expired but was not yet
    /// swept (so expiry does not depend on how far the bounded sweep has got).
    fn live(
        &mut self,
        client: ClientId,
        now_ns: u64,
        timeout_ns: u64,
    ) -> Result<&mut Session, CommandError> {
        let expired = match self.sessions.get(&client) {
            None => return Err(CommandError::SessionExpired { client }),
            Some(session) => is_expired(session.last_activity_ns, now_ns, timeout_ns),
        };
        if expired {
            self.remove(client);
            return Err(CommandError::SessionExpired { client });
        }
        self.touch(client, now_ns);
        Ok(self.sessions.get_mut(&client).expect("checked above"))
    }

    fn touch(&mut self, client: ClientId, now_ns: u64) {
        let session = self
            .sessions
            .get_mut(&client)
            .expect("touch a live session");
        assert!(
            now_ns >= session.last_activity_ns,
            "log time went backwards"
        );
        let removed = self.by_activity.remove(&(session.last_activity_ns, client));
        assert!(removed, "session {client} missing from the activity index");
        session.last_activity_ns = now_ns;
        self.by_activity.insert((now_ns, client));
    }

    /// KeepAlive: refreshes the session and applies its acknowledgement.
    pub fn keep_alive(
        &mut self,
        session_ref: SessionRef,
        now_ns: u64,
        timeout_ns: u64,
    ) -> Result<(), CommandError> {
        let session = self.live(session_ref.client, now_ns, timeout_ns)?;
        acknowledge(session, session_ref.acknowledged);
        Ok(())
    }

    /// CloseSession: forgets the session (if it is live).
    pub fn close(
        &mut self,
        client: ClientId,
        now_ns: u64,
        timeout_ns: u64,
    ) -> Result<(), CommandError> {
        self.live(client, now_ns, timeout_ns)?;
        self.remove(client);
        Ok(())
    }

    /// Decides whether a command in a session is new, a retry, or refused. A command that
    /// names a live session refreshes its activity and applies its acknowledgement even when
    /// it is refused: the client is evidently alive and has seen those replies.
    pub fn admit(
        &mut self,
        session_ref: SessionRef,
        op_hash: u64,
        now_ns: u64,
        timeout_ns: u64,
        replies_max: usize,
    ) -> Result<Admission, CommandError> {
        let SessionRef {
            client,
            sequence,
            acknowledged,
        } = session_ref;
        if acknowledged >= sequence {
            return Err(CommandError::AcknowledgedNotBelowSequence {
                sequence,
                acknowledged,
            });
        }
        let session = self.live(client, now_ns, timeout_ns)?;
        if sequence <= session.acknowledged {
            return Err(CommandError::SequenceAcknowledged {
                client,
                sequence,
                acknowledged: session.acknowledged,
            });
        }
        acknowledge(session, acknowledged);
        if let Some(cached) = session.replies.get(&sequence) {
            if cached.op_hash != op_hash {
                return Err(CommandError::SequenceReused { client, sequence });
            }
            return Ok(Admission::Replay(cached.response.clone()));
        }
        if session.replies.len() >= replies_max {
            return Err(CommandError::SessionRepliesFull {
                client,
                limit: replies_max as u64,
            });
        }
        Ok(Admission::Apply)
    }

    /// Remembers the reply to a sequence that [`SessionTable::admit`] admitted.
    pub fn record(&mut self, session_ref: SessionRef, op_hash: u64, response: Response) {
        let session = self
            .sessions
            .get_mut(&session_ref.client)
            .expect("a session admitted in this entry is live");
        assert!(session_ref.sequence > session.acknowledged);
        session.sequence_applied_max = session.sequence_applied_max.max(session_ref.sequence);
        let cached = CachedReply { op_hash, response };
        let previous = session.replies.insert(session_ref.sequence, cached);
        assert!(previous.is_none(), "sequence applied twice");
    }

    /// Asserts the table's invariants.
    pub fn invariants(&self, now_ns: u64, sessions_max: usize, replies_max: usize) {
        assert!(self.sessions.len() <= sessions_max);
        assert_eq!(self.sessions.len(), self.by_activity.len());
        for (&client, session) in &self.sessions {
            assert!(session.last_activity_ns <= now_ns);
            assert!(
                self.by_activity
                    .contains(&(session.last_activity_ns, client))
            );
            assert!(session.replies.len() <= replies_max);
            if let Some((&first, _)) = session.replies.first_key_value() {
                assert!(first > session.acknowledged);
            }
            if let Some((&last, _)) = session.replies.last_key_value() {
                assert!(last <= session.sequence_applied_max);
            }
        }
    }
}

fn is_expired(last_activity_ns: u64, now_ns: u64, timeout_ns: u64) -> bool {
    now_ns.saturating_sub(last_activity_ns) > timeout_ns
}

/// Raises the session's acknowledgement and forgets the replies it covers.
fn acknowledge(session: &mut Session, acknowledged: u64) {
    if acknowledged <= session.acknowledged {
        return;
    }
    session.acknowledged = acknowledged;
    // `split_off` keeps the replies above `acknowledged`; the rest are dropped.
    session.replies = match acknowledged.checked_add(1) {
        Some(first_kept) => session.replies.split_off(&first_kept),
        None => BTreeMap::new(),
    };
}
