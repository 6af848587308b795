//! The node's top supervisor and the function that boots a node's actors.

use synod_actor::{
    Actor, ChildSpec, Context, Overflow, SpawnError, Strategy, SupervisorSpec, System,
};
use synod_core::Duration;

use crate::detector_actor::{FailureDetectorActor, FailureDetectorConfig};
use crate::membership::MembershipView;
use crate::replica::{ReplicaActor, ReplicaConfig};

/// Mailbox bound of the detector: heartbeats from every peer plus local requests. Network
/// arrivals beyond it are dropped and counted (a late heartbeat is as good as lost).
pub const DETECTOR_MAILBOX_CAPACITY: usize = 1_024;
/// Mailbox bound of the membership view. Events are small and rare.
pub const MEMBERSHIP_MAILBOX_CAPACITY: usize = 1_024;
/// Mailbox bound of the replica: peer messages and client requests. Arrivals beyond it are
/// refused and counted; Raft retransmits and clients retry.
pub const REPLICA_MAILBOX_CAPACITY: usize = 65_536;

/// Starts the node's services in dependency order under rest_for_one supervision.
pub struct NodeSupervisor {
    config: FailureDetectorConfig,
    replica: Option<ReplicaConfig>,
}

impl NodeSupervisor {
    pub fn new(config: FailureDetectorConfig) -> NodeSupervisor {
        NodeSupervisor {
            config,
            replica: None,
        }
    }

    /// A node that also runs a replica of the consistent core, started last.
    pub fn with_replica(config: FailureDetectorConfig, replica: ReplicaConfig) -> NodeSupervisor {
        NodeSupervisor {
            config,
            replica: Some(replica),
        }
    }

    /// How the node supervises its services: a failing service is restarted with backoff,
    /// together with every service started after it; more than 10 restarts in 10 seconds
    /// escalates to the system, which restarts the whole node subtree.
    pub fn supervision() -> SupervisorSpec {
        SupervisorSpec::default()
            .strategy(Strategy::RestForOne)
            .intensity(10, Duration::from_secs(10))
            .backoff(Duration::from_millis(20), Duration::from_secs(2))
    }
}

impl Actor for NodeSupervisor {
    type Message = ();

    fn on_start(&mut self, ctx: &mut Context<'_, ()>) {
        let config = self.config.clone();
        let detector = ChildSpec::new("detector", move || {
            FailureDetectorActor::new(config.clone())
        })
        .mailbox(DETECTOR_MAILBOX_CAPACITY, Overflow::Reject);
        let detector = match ctx.spawn(detector) {
            Ok(addr) => addr,
            Err(error) => return ctx.fail(format!("cannot start the detector: {error}")),
        };
        let membership = ChildSpec::new("membership", move || MembershipView::new(detector))
            .mailbox(MEMBERSHIP_MAILBOX_CAPACITY, Overflow::DropOldest);
        if let Err(error) = ctx.spawn(membership) {
            return ctx.fail(format!("cannot start the membership view: {error}"));
        }
        if let Some(replica) = self.replica.clone() {
            let replica = ChildSpec::new("replica", move || ReplicaActor::new(replica.clone()))
                .mailbox(REPLICA_MAILBOX_CAPACITY, Overflow::Reject);
            if let Err(error) = ctx.spawn(replica) {
                ctx.fail(format!("cannot start the replica: {error}"));
            }
        }
    }

    fn on_message(&mut self, _ctx: &mut Context<'_, ()>, _message: ()) {}
}

/// Spawns a node's actor tree into a fresh system.
pub fn boot_node(system: &mut System, config: FailureDetectorConfig) -> Result<(), SpawnError> {
    let spec = ChildSpec::new("node", move || NodeSupervisor::new(config.clone()))
        .supervise(NodeSupervisor::supervision());
    system.spawn(spec).map(|_| ())
}

/// Spawns the tree of a node that serves the store: the failure detector, the membership
/// view and the replica, under the node supervisor.
pub fn boot_replica_node(
    system: &mut System,
    config: FailureDetectorConfig,
    replica: ReplicaConfig,
) -> Result<(), SpawnError> {
    let spec = ChildSpec::new("node", move || {
        NodeSupervisor::with_replica(config.clone(), replica.clone())
    })
    .supervise(NodeSupervisor::supervision());
    system.spawn(spec).map(|_| ())
}
