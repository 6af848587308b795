//! The membership view: which peers this node currently suspects, kept from the failure
//! detector's events. Other parts of the node (and the status page) read suspicion here.

use std::collections::BTreeSet;

use synod_actor::{Actor, Addr, Context};
use synod_core::NodeId;

use crate::detector_actor::{DetectorMessage, MembershipEvent};

#[derive(Debug)]
pub enum MembershipMessage {
    Event(MembershipEvent),
}

/// Subscribes to the detector at start and tracks the suspect set.
pub struct MembershipView {
    detector: Addr<DetectorMessage>,
    suspected: BTreeSet<NodeId>,
    transitions_count: u64,
}

impl MembershipView {
    pub fn new(detector: Addr<DetectorMessage>) -> MembershipView {
        MembershipView {
            detector,
            suspected: BTreeSet::new(),
            transitions_count: 0,
        }
    }

    pub fn suspected(&self) -> &BTreeSet<NodeId> {
        &self.suspected
    }

    pub fn transitions_count(&self) -> u64 {
        self.transitions_count
    }
}

impl Actor for MembershipView {
    type Message = MembershipMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, MembershipMessage>) {
        let me = ctx.myself();
        if ctx
            .send(self.detector, DetectorMessage::Subscribe(me))
            .is_err()
        {
            ctx.fail("cannot subscribe to the failure detector");
        }
    }

    fn on_message(
        &mut self,
        _ctx: &mut Context<'_, MembershipMessage>,
        message: MembershipMessage,
    ) {
        let MembershipMessage::Event(event) = message;
        let changed = match event {
            MembershipEvent::Suspected { peer, .. } => self.suspected.insert(peer),
            MembershipEvent::Recovered { peer, .. } | MembershipEvent::Restarted { peer, .. } => {
                self.suspected.remove(&peer)
            }
        };
        if changed {
            self.transitions_count += 1;
        }
    }
}
