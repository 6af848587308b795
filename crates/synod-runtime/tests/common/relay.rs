//! The relay: a token goes around a ring of nodes `laps` times, each node observing the
//! tokens it holds through `ctx.observe`.
//!
//! This module is executor-independent: it uses only synod-actor, synod-core and bytes, so
//! the same actors run under the tokio executor (tests/relay.rs) and under the simulator. To
//! use it from another crate's tests, include the file:
//!
//! ```text
//! #[path = "../../synod-runtime/tests/common/relay.rs"]
//! mod relay;
//! ```
//!
//! Token `t` (from 0 to `laps * ring.len()`) is held by `ring[t % ring.len()]`; the first
//! node of the ring holds token 0 when it starts. A node that holds a token forwards the next
//! one to the next node and, until the token comes back around, sends it again every
//! `retransmit_interval` (at most `retransmits_max` times), so the relay also completes on a
//! network that loses messages. Duplicates and stale tokens are counted and ignored, so each
//! node observes exactly its own tokens, in order, once each.

use bytes::Bytes;
use synod_actor::{Actor, ChildSpec, Context, Inbound, Port, System, TimerId};
use synod_core::{Duration, NodeId};

/// The port every relay actor binds.
pub const RELAY_PORT: Port = Port(7_001);

/// The shape of one relay run; every node of the ring gets the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    pub ring: Vec<NodeId>,
    pub laps: u64,
    pub retransmit_interval: Duration,
    pub retransmits_max: u32,
}

impl RelayConfig {
    pub fn new(ring: Vec<NodeId>, laps: u64) -> RelayConfig {
        assert!(!ring.is_empty(), "a relay needs at least one node");
        RelayConfig {
            ring,
            laps,
            retransmit_interval: Duration::from_millis(200),
            retransmits_max: 50,
        }
    }

    /// The last token of the run.
    pub fn final_token(&self) -> u64 {
        self.laps * self.ring.len() as u64
    }

    /// The node that holds `token`.
    pub fn holder(&self, token: u64) -> NodeId {
        self.ring[(token % self.ring.len() as u64) as usize]
    }

    /// What `node` must have observed when the run is complete.
    pub fn expected_observations(&self, node: NodeId) -> Vec<RelayObservation> {
        (0..=self.final_token())
            .filter(|token| self.holder(*token) == node)
            .map(|token| RelayObservation { node, token })
            .collect()
    }
}

/// Reported by a relay actor each time it takes hold of a new token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayObservation {
    pub node: NodeId,
    pub token: u64,
}

#[derive(Debug)]
pub enum RelayMessage {
    Arrived(Inbound),
    Retransmit,
}

impl From<Inbound> for RelayMessage {
    fn from(inbound: Inbound) -> Self {
        RelayMessage::Arrived(inbound)
    }
}

/// One node's relay actor.
pub struct RelayActor {
    config: RelayConfig,
    /// The newest token this node has held.
    held: Option<u64>,
    /// The token this node sent on and has not yet seen come back around.
    forwarded: Option<u64>,
    retransmits_count: u32,
    timer: Option<TimerId>,
    pub duplicates_count: u64,
    pub malformed_count: u64,
}

impl RelayActor {
    pub fn new(config: RelayConfig) -> RelayActor {
        RelayActor {
            config,
            held: None,
            forwarded: None,
            retransmits_count: 0,
            timer: None,
            duplicates_count: 0,
            malformed_count: 0,
        }
    }

    fn take_hold(&mut self, ctx: &mut Context<'_, RelayMessage>, token: u64) {
        self.held = Some(token);
        ctx.observe(RelayObservation {
            node: ctx.node_id(),
            token,
        });
        if let Some(timer) = self.timer.take() {
            ctx.cancel_timer(timer);
        }
        self.forwarded = None;
        if token < self.config.final_token() {
            self.forwarded = Some(token + 1);
            self.retransmits_count = 0;
            self.send_forwarded(ctx);
        }
    }

    fn send_forwarded(&mut self, ctx: &mut Context<'_, RelayMessage>) {
        let Some(token) = self.forwarded else {
            return;
        };
        let next = self.config.holder(token);
        let payload = Bytes::copy_from_slice(&token.to_le_bytes());
        // A refused send is like a lost one: the retransmit timer covers both.
        let _ = ctx.send_to_node(next, RELAY_PORT, payload);
        let interval = self.config.retransmit_interval;
        self.timer = Some(ctx.set_timer(interval, RelayMessage::Retransmit));
    }

    fn on_arrived(&mut self, ctx: &mut Context<'_, RelayMessage>, inbound: &Inbound) {
        let Ok(bytes) = <[u8; 8]>::try_from(inbound.payload.as_ref()) else {
            self.malformed_count += 1;
            return;
        };
        let token = u64::from_le_bytes(bytes);
        let mine = self.config.holder(token) == ctx.node_id();
        if !mine || token > self.config.final_token() {
            self.malformed_count += 1;
            return;
        }
        if self.held.is_some_and(|held| token <= held) {
            self.duplicates_count += 1;
            return;
        }
        self.take_hold(ctx, token);
    }
}

impl Actor for RelayActor {
    type Message = RelayMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, RelayMessage>) {
        ctx.bind(RELAY_PORT).expect("the relay port is free");
        if ctx.node_id() == self.config.ring[0] {
            self.take_hold(ctx, 0);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_, RelayMessage>, message: RelayMessage) {
        match message {
            RelayMessage::Arrived(inbound) => self.on_arrived(ctx, &inbound),
            RelayMessage::Retransmit => {
                self.timer = None;
                if self.retransmits_count < self.config.retransmits_max {
                    self.retransmits_count += 1;
                    self.send_forwarded(ctx);
                }
            }
        }
    }
}

/// The spec of a node's relay actor.
pub fn relay_spec(config: RelayConfig) -> ChildSpec<RelayActor> {
    ChildSpec::new("relay", move || RelayActor::new(config.clone()))
}

/// Boots one node of the relay: spawns its relay actor.
pub fn boot_relay(config: RelayConfig) -> impl FnOnce(&mut System) {
    move |system| {
        system.spawn(relay_spec(config)).expect("spawn the relay");
    }
}
