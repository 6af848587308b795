//! The node's top supervisor and the function that boots a node's actors.

use synod_actor::{
    Actor, ChildSpec, Context, Overflow, SpawnError, Strategy, SupervisorSpec, System,
};
use synod_core::Duration;

use crate::detector_actor::{FailureDetectorActor, FailureDetectorConfig};
use crate::membership::MembershipView;

/// Mailbox bound of the detector: heartbeats from every peer plus local requests. Network
/// arrivals beyond it are dropped and counted (a late heartbeat is as good as lost).
pub const DETECTOR_MAILBOX_CAPACITY: usize = 1_024;
/// Mailbox bound of the membership view. Events are small and rare.
pub const MEMBERSHIP_MAILBOX_CAPACITY: usize = 1_024;

/// Starts the node's services in dependency order under rest_for_one supervision.
pub struct NodeSupervisor {
    config: FailureDetectorConfig,
}

impl NodeSupervisor {
    pub fn new(config: FailureDetectorConfig) -> NodeSupervisor {
        NodeSupervisor { config }
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
            ctx.fail(format!("cannot start the membership view: {error}"));
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
