//! Graceful degradation: what a node can still serve when it has lost contact with a quorum
//! or its disk has failed, and the fast refusals for the rest.
//!
//! [`assess`] is pure: from the node's status (role, contact with a leader, which voters
//! the leader hears from) and the replica's storage failure it decides whether the node is
//! degraded and why. The server runs it on every status sample (INFO, SYNOD.STATUS,
//! `/status` show the result as `degraded`) and on a short interval into the shared
//! [`Health`], which connections consult before admitting a request:
//!
//! - without a quorum, writes and linearizable, lease and follower reads fail at once with
//!   `-TRYAGAIN no quorum: ...` instead of waiting out the request timeout; stale reads are
//!   served, labelled with their staleness as always;
//! - with a failed disk the node is read-only: writes fail with `-READONLY disk full or
//!   failing: ...`, reads are served.

use std::sync::{Mutex, PoisonError};

use crate::command::{Plan, ServiceError};
use crate::status::{NodeStatus, ReadLevel};

/// Why a node is degraded, split by what it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    /// Requests that need a quorum fail fast with this detail.
    pub no_quorum: Option<String>,
    /// Writes fail with this detail: the disk is full or failing.
    pub read_only: Option<String>,
}

impl HealthState {
    /// The one line INFO, SYNOD.STATUS and `/status` show (`None`: healthy).
    pub fn reason(&self) -> Option<String> {
        match (&self.read_only, &self.no_quorum) {
            (Some(read_only), Some(no_quorum)) => Some(format!("{read_only}; {no_quorum}")),
            (Some(read_only), None) => Some(read_only.clone()),
            (None, Some(no_quorum)) => Some(no_quorum.clone()),
            (None, None) => None,
        }
    }
}

const STALE_HINT: &str = "stale reads are still served (SYNOD.READ-LEVEL stale)";

/// Decides a node's health from its status. `degraded_after_ms`: how long without a
/// leader's contact counts as lost contact with a quorum; `storage_failure`: the replica's
/// latched disk error, if any.
pub fn assess(
    status: &NodeStatus,
    degraded_after_ms: u64,
    storage_failure: Option<&str>,
) -> HealthState {
    let read_only = storage_failure.map(|error| {
        format!(
            "disk full or failing: {error}; writes are refused until the disk recovers \
             (the node retries it), reads are still served"
        )
    });
    HealthState {
        no_quorum: no_quorum(status, degraded_after_ms),
        read_only,
    }
}

fn no_quorum(status: &NodeStatus, degraded_after_ms: u64) -> Option<String> {
    match status.role.as_str() {
        // Still recovering its log: not degraded, just not serving yet.
        "starting" => None,
        // A leader that stops hearing from a majority steps down within an election timeout
        // (check-quorum), and from then on the rule below judges it. Judging the leader by
        // its followers' activity flags instead gave false alarms: they are cleared at each
        // check-quorum round and set again by the next answers.
        "leader" => None,
        _ => {
            // Never heard from a leader: as long as the node has been up.
            let silent_ms = status.leader_contact_ms.unwrap_or(status.uptime_ms);
            (silent_ms >= degraded_after_ms).then(|| {
                format!(
                    "no quorum: this node has not heard from a leader (a majority) for \
                     {silent_ms} ms; {STALE_HINT}"
                )
            })
        }
    }
}

/// The node's current health, shared by every connection.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<HealthState>,
}

impl Health {
    pub fn set(&self, state: HealthState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    pub fn get(&self) -> HealthState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Refuses at once a plan this node cannot serve now.
    pub fn check(&self, plan: &Plan) -> Result<(), ServiceError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        check_plan(&state, plan)
    }
}

fn check_plan(state: &HealthState, plan: &Plan) -> Result<(), ServiceError> {
    let needs_quorum = match plan {
        Plan::Write { .. } => {
            if let Some(detail) = &state.read_only {
                return Err(ServiceError::ReadOnly {
                    detail: detail.clone(),
                });
            }
            true
        }
        Plan::Read { level, .. } => *level != ReadLevel::Stale,
        Plan::Reply(_) | Plan::Close(_) | Plan::Status { .. } => false,
    };
    match &state.no_quorum {
        Some(detail) if needs_quorum => Err(ServiceError::NoQuorum {
            detail: detail.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandConfig, Connection};
    use crate::status::FollowerStatus;
    use bytes::Bytes;

    fn status(role: &str, contact_ms: Option<u64>, active: &[bool]) -> NodeStatus {
        NodeStatus {
            node: 1,
            cluster_id: 1,
            role: role.into(),
            term: 2,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_log_index: 0,
            first_log_index: 0,
            snapshot_index: 0,
            voters: vec![1, 2, 3],
            learners: Vec::new(),
            followers: active
                .iter()
                .enumerate()
                .map(|(index, active)| FollowerStatus {
                    node: index as u64 + 2,
                    voter: true,
                    lag_entries: 0,
                    lag_bytes: 0,
                    lag_ms: 0,
                    active: *active,
                })
                .collect(),
            leader_contact_ms: contact_ms,
            clock_skew_ppm_max: 0,
            lease_suspended_by_skew: false,
            degraded: None,
            keys: 0,
            revision: 0,
            sessions: 0,
            uptime_ms: 5_000,
            connected_clients: 0,
            resp_address: String::new(),
            http_address: String::new(),
            peer_address: String::new(),
            members: Vec::new(),
        }
    }

    #[test]
    fn quorum_loss_is_judged_by_role_and_contact() {
        // Checks the table of no-quorum verdicts: a follower or candidate by its last leader
        // contact against the threshold (never: its uptime); a leader and a starting node
        // never (a leader without a majority steps down by check-quorum, then is judged as a
        // follower).
        let cases = [
            (status("follower", Some(50), &[]), false),
            (status("follower", Some(600), &[]), true),
            (status("follower", None, &[]), true),
            (status("candidate", Some(599), &[]), false),
            (status("leader", Some(0), &[true, false]), false),
            (status("leader", Some(0), &[false, false]), false),
            (status("starting", None, &[]), false),
        ];
        for (index, (status, degraded)) in cases.iter().enumerate() {
            let state = assess(status, 600, None);
            assert_eq!(
                state.no_quorum.is_some(),
                *degraded,
                "case {index}: {state:?}"
            );
        }
        let text = assess(&cases[1].0, 600, None).reason().expect("degraded");
        assert!(text.starts_with("no quorum: this node has not heard from a leader"));
        assert!(text.contains("600 ms") && text.contains("stale reads are still served"));
    }

    fn plan(connection: &mut Connection, args: &[&str]) -> Plan {
        let args = args
            .iter()
            .map(|arg| Bytes::from(arg.to_string()))
            .collect();
        connection.plan(args)
    }

    #[test]
    fn a_degraded_node_refuses_what_needs_a_quorum_and_serves_stale_reads() {
        // Checks the fast refusals: without a quorum writes and linearizable reads are
        // refused (NoQuorum) and stale reads pass; read-only refuses writes (ReadOnly) and
        // lets reads pass.
        let mut connection = Connection::new(1, CommandConfig::default());
        let write = plan(&mut connection, &["SET", "k", "v"]);
        let read = plan(&mut connection, &["GET", "k"]);
        let _ = plan(&mut connection, &["SYNOD.READ-LEVEL", "stale"]);
        let stale = plan(&mut connection, &["GET", "k"]);
        let no_quorum = HealthState {
            no_quorum: Some("no quorum: test".into()),
            read_only: None,
        };
        let refused = |result: Result<(), ServiceError>| match result {
            Err(ServiceError::NoQuorum { .. }) => "no quorum",
            Err(ServiceError::ReadOnly { .. }) => "read-only",
            Err(_) => "other",
            Ok(()) => "served",
        };
        assert_eq!(refused(check_plan(&no_quorum, &write)), "no quorum");
        assert_eq!(refused(check_plan(&no_quorum, &read)), "no quorum");
        assert_eq!(refused(check_plan(&no_quorum, &stale)), "served");
        let read_only = assess(&status("follower", Some(1), &[]), 600, Some("ENOSPC"));
        assert_eq!(refused(check_plan(&read_only, &write)), "read-only");
        assert_eq!(refused(check_plan(&read_only, &read)), "served");
        assert!(
            read_only
                .reason()
                .expect("degraded")
                .starts_with("disk full or failing")
        );
    }
}
