//! `pingpong`: nodes ping each other, and a node acknowledges a ping only once it has made
//! a new value of its counter durable.
//!
//! Each node runs one [`PingPongActor`]. Every `ping_interval` it sends a numbered ping to
//! a random other node. A node that receives pings increments its counter, writes the new
//! value to its disk, syncs it, and only then answers each ping it covered with a pong
//! carrying the value. After a crash it recovers the counter from disk.
//!
//! The counter lives in two checksummed 16-byte slots of the file `counter`: value `v` goes
//! to slot `v % 2`, so writing a value never overwrites the newest durable one, and a write
//! torn by a crash leaves the other slot intact. Recovery takes the larger valid slot.
//! After its first sync each incarnation also syncs the directory, because the file's first
//! write created it and a name is durable only after that (the simulator found this: without
//! it a power loss took the whole file). A failed write or sync fails the actor (fsync is
//! never retried): its supervisor restarts it and it recovers from disk again.
//!
//! The invariant the scenario checks after every event: **every acknowledged value is on
//! disk** — a node never recovers a counter below the largest value it acknowledged, its
//! live durable counter never falls below it, and acknowledged values only increase.
//! Progress in the liveness phase: every node of the healed core acknowledges new values.
//!
//! One disk fault is out of scope: a bit flip in a durable slot is latent corruption that
//! only replication can survive, so the scenario turns bit flips off for its runs.

use bytes::{BufMut, Bytes, BytesMut};
use synod_actor::{
    Actor, ActorId, ChildSpec, Context, DiskCompletion, DiskError, DiskOp, DiskReply, Inbound,
    Port, System,
};
use synod_core::{Duration, NodeId};
use xxhash_rust::xxh3::xxh3_64;

use crate::mix::FaultMix;
use crate::scenario::{ClusterView, Phase, Scenario};

/// The port the ping-pong actor binds on every node.
pub const PINGPONG_PORT: Port = Port(7);
/// The file holding the two counter slots.
pub const COUNTER_FILE: &str = "counter";
const SLOT_SIZE: usize = 16;
/// Pings waiting for the next durable write beyond this many are dropped and counted.
pub const WAITING_PINGS_MAX: usize = 256;
/// New acknowledgements every core node must make after healing.
pub const PROGRESS_ACKS_MIN: u64 = 3;
const ACTOR_NAME: &str = "pingpong";
const KIND_PING: u8 = 1;
const KIND_PONG: u8 = 2;

/// The actor reports this once it has recovered its counter from disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub counter: u64,
}

/// The actor reports this when a value is durable and its pongs go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    pub counter: u64,
    pub pings_count: usize,
}

#[derive(Debug)]
pub enum PingPongMessage {
    Network(Inbound),
    Tick,
    Recovered(DiskCompletion),
    Written(DiskCompletion),
    Synced(DiskCompletion),
    DirectorySynced(DiskCompletion),
}

impl From<Inbound> for PingPongMessage {
    fn from(inbound: Inbound) -> Self {
        PingPongMessage::Network(inbound)
    }
}

/// One counter slot as stored: the value and its checksum, little-endian.
pub fn encode_slot(value: u64) -> Bytes {
    let mut slot = BytesMut::with_capacity(SLOT_SIZE);
    slot.put_u64_le(value);
    slot.put_u64_le(xxh3_64(&value.to_le_bytes()) ^ 0x736c_6f74);
    slot.freeze()
}

/// The value of a slot whose checksum matches.
pub fn decode_slot(slot: &[u8]) -> Option<u64> {
    let value = u64::from_le_bytes(slot.get(0..8)?.try_into().ok()?);
    let checksum = u64::from_le_bytes(slot.get(8..16)?.try_into().ok()?);
    (checksum == xxh3_64(&value.to_le_bytes()) ^ 0x736c_6f74).then_some(value)
}

/// The durable counter in a file image: the larger valid slot, 0 if neither is valid.
pub fn recover_counter(file: &[u8]) -> u64 {
    let slot = |index: usize| file.get(index * SLOT_SIZE..(index + 1) * SLOT_SIZE);
    let values = [slot(0).and_then(decode_slot), slot(1).and_then(decode_slot)];
    values.into_iter().flatten().max().unwrap_or(0)
}

/// The actor of one node.
#[derive(Debug)]
pub struct PingPongActor {
    nodes_count: usize,
    ping_interval: Duration,
    recovered: bool,
    /// The latest value known durable.
    durable: u64,
    /// The value being written and synced, with the pings it will acknowledge.
    writing: Option<(u64, Vec<(NodeId, u64)>)>,
    /// Whether this incarnation has synced the directory since its first counter sync.
    directory_synced: bool,
    waiting: Vec<(NodeId, u64)>,
    ping_next: u64,
    pings_dropped_count: u64,
    malformed_count: u64,
}

impl PingPongActor {
    pub fn new(nodes_count: usize, ping_interval: Duration) -> PingPongActor {
        PingPongActor {
            nodes_count,
            ping_interval,
            recovered: false,
            durable: 0,
            writing: None,
            directory_synced: false,
            waiting: Vec::new(),
            ping_next: 1,
            pings_dropped_count: 0,
            malformed_count: 0,
        }
    }

    /// The latest value this incarnation knows is durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Pings this incarnation has sent.
    pub fn pings_sent_count(&self) -> u64 {
        self.ping_next - 1
    }

    pub fn is_recovered(&self) -> bool {
        self.recovered
    }

    fn on_recovered(&mut self, ctx: &mut Context<'_, PingPongMessage>, completion: DiskCompletion) {
        let counter = match completion.result {
            Ok(DiskReply::Data(file)) => recover_counter(&file),
            Err(DiskError::NotFound { .. }) => 0,
            Ok(other) => panic!("a read answered {other:?}"),
            Err(error) => return ctx.fail(format!("recovery read failed: {error}")),
        };
        self.durable = counter;
        self.recovered = true;
        ctx.observe(Recovered { counter });
        self.write_next(ctx);
    }

    fn on_network(&mut self, ctx: &mut Context<'_, PingPongMessage>, inbound: Inbound) {
        let payload = &inbound.payload;
        match (payload.first(), payload.len()) {
            (Some(&KIND_PING), 9) => {
                let number = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
                if self.waiting.len() >= WAITING_PINGS_MAX {
                    self.pings_dropped_count += 1;
                    return;
                }
                self.waiting.push((inbound.from, number));
                self.write_next(ctx);
            }
            (Some(&KIND_PONG), 17) => {}
            _ => self.malformed_count += 1,
        }
    }

    /// Starts writing the next value if recovered, idle and some ping waits for it.
    fn write_next(&mut self, ctx: &mut Context<'_, PingPongMessage>) {
        if !self.recovered || self.writing.is_some() || self.waiting.is_empty() {
            return;
        }
        let value = self.durable + 1;
        let offset = (value % 2) * SLOT_SIZE as u64;
        let op = DiskOp::Write {
            path: COUNTER_FILE.to_string(),
            offset,
            data: encode_slot(value),
        };
        if let Err(error) = ctx.disk(op, PingPongMessage::Written) {
            return ctx.fail(format!("disk write refused: {error}"));
        }
        self.writing = Some((value, std::mem::take(&mut self.waiting)));
    }

    fn on_written(&mut self, ctx: &mut Context<'_, PingPongMessage>, completion: DiskCompletion) {
        if let Err(error) = completion.result {
            return ctx.fail(format!("counter write failed: {error}"));
        }
        let sync = DiskOp::Sync {
            path: COUNTER_FILE.to_string(),
        };
        if let Err(error) = ctx.disk(sync, PingPongMessage::Synced) {
            ctx.fail(format!("disk sync refused: {error}"));
        }
    }

    fn on_synced(&mut self, ctx: &mut Context<'_, PingPongMessage>, completion: DiskCompletion) {
        if let Err(error) = completion.result {
            // Never retried: after a failed fsync the page cache may lie about the media.
            return ctx.fail(format!("counter sync failed: {error}"));
        }
        if self.directory_synced {
            return self.acknowledge(ctx);
        }
        // The file's name may not be durable yet (its first write created it): without a
        // directory sync a crash may take the whole file, synced bytes and all.
        if let Err(error) = ctx.disk(DiskOp::SyncDir, PingPongMessage::DirectorySynced) {
            ctx.fail(format!("directory sync refused: {error}"));
        }
    }

    fn on_directory_synced(
        &mut self,
        ctx: &mut Context<'_, PingPongMessage>,
        completion: DiskCompletion,
    ) {
        if let Err(error) = completion.result {
            return ctx.fail(format!("directory sync failed: {error}"));
        }
        self.directory_synced = true;
        self.acknowledge(ctx);
    }

    /// The value being written is durable: answer the pings it covers.
    fn acknowledge(&mut self, ctx: &mut Context<'_, PingPongMessage>) {
        let (value, covered) = self.writing.take().expect("a sync follows a write");
        self.durable = value;
        for (pinger, number) in &covered {
            let mut pong = BytesMut::with_capacity(17);
            pong.put_u8(KIND_PONG);
            pong.put_u64_le(*number);
            pong.put_u64_le(value);
            let _ = ctx.send_to_node(*pinger, PINGPONG_PORT, pong.freeze());
        }
        ctx.observe(Acknowledged {
            counter: value,
            pings_count: covered.len(),
        });
        self.write_next(ctx);
    }

    fn on_tick(&mut self, ctx: &mut Context<'_, PingPongMessage>) {
        ctx.set_timer(self.ping_interval, PingPongMessage::Tick);
        // A random other node (the node itself when it is alone).
        let nodes_count = self.nodes_count as u64;
        let me = ctx.node_id().0 - 1;
        let target = match nodes_count {
            1 => ctx.node_id(),
            _ => NodeId(1 + (me + 1 + ctx.random_u64() % (nodes_count - 1)) % nodes_count),
        };
        let mut ping = BytesMut::with_capacity(9);
        ping.put_u8(KIND_PING);
        ping.put_u64_le(self.ping_next);
        self.ping_next += 1;
        // A full path or unknown peer loses the ping, as the network may anyway.
        let _ = ctx.send_to_node(target, PINGPONG_PORT, ping.freeze());
    }
}

impl Actor for PingPongActor {
    type Message = PingPongMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, PingPongMessage>) {
        if let Err(error) = ctx.bind(PINGPONG_PORT) {
            return ctx.fail(format!("cannot bind the ping-pong port: {error}"));
        }
        let read = DiskOp::Read {
            path: COUNTER_FILE.to_string(),
            offset: 0,
            len: 2 * SLOT_SIZE as u32,
        };
        if let Err(error) = ctx.disk(read, PingPongMessage::Recovered) {
            return ctx.fail(format!("recovery read refused: {error}"));
        }
        ctx.set_timer(self.ping_interval, PingPongMessage::Tick);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, PingPongMessage>, message: PingPongMessage) {
        match message {
            PingPongMessage::Network(inbound) => self.on_network(ctx, inbound),
            PingPongMessage::Tick => self.on_tick(ctx),
            PingPongMessage::Recovered(completion) => self.on_recovered(ctx, completion),
            PingPongMessage::Written(completion) => self.on_written(ctx, completion),
            PingPongMessage::Synced(completion) => self.on_synced(ctx, completion),
            PingPongMessage::DirectorySynced(completion) => {
                self.on_directory_synced(ctx, completion)
            }
        }
    }
}

/// The scenario: the actors above plus the invariant and the progress rule.
#[derive(Debug)]
pub struct PingPong {
    nodes_count: usize,
    ping_interval: Duration,
    liveness_bound: Duration,
    /// The next observation index to read.
    observed_end: u64,
    /// Per node: the largest value it acknowledged, ever.
    acked_max: Vec<u64>,
    /// Per node: acknowledgements since the core was healed.
    acks_after_heal: Vec<u64>,
    /// Per node: the boot and id of its actor, found once per boot.
    actors: Vec<Option<(u64, ActorId)>>,
    recoveries_count: u64,
    acks_count: u64,
}

impl PingPong {
    pub fn new(nodes_count: usize) -> PingPong {
        PingPong {
            nodes_count,
            ping_interval: Duration::from_millis(20),
            liveness_bound: Duration::from_secs(10),
            observed_end: 0,
            acked_max: vec![0; nodes_count],
            acks_after_heal: vec![0; nodes_count],
            actors: vec![None; nodes_count],
            recoveries_count: 0,
            acks_count: 0,
        }
    }

    /// Sets the ping interval of every node.
    pub fn with_ping_interval(mut self, ping_interval: Duration) -> PingPong {
        self.ping_interval = ping_interval;
        self
    }

    pub fn with_liveness_bound(mut self, liveness_bound: Duration) -> PingPong {
        self.liveness_bound = liveness_bound;
        self
    }

    pub fn acked_max(&self, node: NodeId) -> u64 {
        self.acked_max[slot(node)]
    }

    pub fn recoveries_count(&self) -> u64 {
        self.recoveries_count
    }

    pub fn acks_count(&self) -> u64 {
        self.acks_count
    }

    /// Reads the new observations in order and checks each against the invariant.
    fn absorb_observations(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        let healed_at = match view.phase() {
            Phase::Liveness { healed_at } => Some(healed_at),
            Phase::Safety => None,
        };
        for (index, record) in view.observations_since(self.observed_end) {
            self.observed_end = index + 1;
            let node = slot(record.node);
            if let Some(recovered) = record.downcast::<Recovered>() {
                self.recoveries_count += 1;
                if recovered.counter < self.acked_max[node] {
                    return Err(format!(
                        "{} (boot {}) recovered counter {} after acknowledging {}: an \
                         acknowledged write was lost",
                        record.node, record.boot, recovered.counter, self.acked_max[node]
                    ));
                }
            } else if let Some(acknowledged) = record.downcast::<Acknowledged>() {
                if acknowledged.counter <= self.acked_max[node] {
                    return Err(format!(
                        "{} (boot {}) acknowledged {} after already acknowledging {}",
                        record.node, record.boot, acknowledged.counter, self.acked_max[node]
                    ));
                }
                self.acked_max[node] = acknowledged.counter;
                self.acks_count += 1;
                if healed_at.is_some_and(|healed_at| record.at >= healed_at) {
                    self.acks_after_heal[node] += 1;
                }
            }
        }
        Ok(())
    }

    /// The live actor of `node`, found by name once per boot.
    fn live_actor<'a>(
        &mut self,
        node: usize,
        system: &'a System,
        boot: u64,
    ) -> Option<&'a PingPongActor> {
        let id = match self.actors[node] {
            Some((known_boot, id)) if known_boot == boot => id,
            _ => {
                let id = system.find(ACTOR_NAME)?;
                self.actors[node] = Some((boot, id));
                id
            }
        };
        system.actor::<PingPongActor>(id)
    }
}

fn slot(node: NodeId) -> usize {
    crate::node_index(node).expect("cluster node")
}

impl Scenario for PingPong {
    fn name(&self) -> &str {
        "pingpong"
    }

    fn nodes_count(&self) -> usize {
        self.nodes_count
    }

    fn adjust_fault_mix(&self, mix: &mut FaultMix) {
        mix.disk.bit_flip_probability = 0.0;
    }

    fn boot(&mut self, _node: NodeId, system: &mut System) {
        let (nodes_count, interval) = (self.nodes_count, self.ping_interval);
        let spec = ChildSpec::new(ACTOR_NAME, move || {
            PingPongActor::new(nodes_count, interval)
        });
        system.spawn(spec).expect("spawning the ping-pong actor");
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        self.absorb_observations(view)?;
        for node in view.node_ids() {
            let index = slot(node);
            let Some(system) = view.system(node) else {
                continue;
            };
            let boot = view.boot_generation(node);
            let Some(actor) = self.live_actor(index, system, boot) else {
                continue;
            };
            if actor.is_recovered() && actor.durable() < self.acked_max[index] {
                return Err(format!(
                    "{node} believes {} is durable after acknowledging {}",
                    actor.durable(),
                    self.acked_max[index]
                ));
            }
        }
        Ok(())
    }

    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        view.core_nodes()
            .iter()
            .all(|node| self.acks_after_heal[slot(*node)] >= PROGRESS_ACKS_MIN)
    }

    fn liveness_bound(&self) -> Duration {
        self.liveness_bound
    }

    fn report(&mut self, view: &ClusterView<'_>) -> Vec<(String, String)> {
        let counters: Vec<String> = view
            .node_ids()
            .map(|node| format!("{node}={}", self.acked_max[slot(node)]))
            .collect();
        vec![
            (
                "acknowledged writes".to_string(),
                self.acks_count.to_string(),
            ),
            ("recoveries".to_string(), self.recoveries_count.to_string()),
            (
                "largest acknowledged counter".to_string(),
                counters.join(" "),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_takes_the_larger_valid_slot() {
        // Checks the slot format: a table of file images (empty, one slot, both, one torn,
        // garbage) and the counter recovered from each.
        let both = [encode_slot(6), encode_slot(7)].concat();
        let mut torn_newer = both.clone();
        torn_newer[SLOT_SIZE + 3] ^= 0x40;
        let table: [(Vec<u8>, u64); 6] = [
            (Vec::new(), 0),
            (encode_slot(4).to_vec(), 4),
            (both.clone(), 7),
            (torn_newer, 6),
            (vec![0xAB; 2 * SLOT_SIZE], 0),
            (vec![0; 2 * SLOT_SIZE], 0),
        ];
        for (file, counter) in table {
            assert_eq!(recover_counter(&file), counter, "{file:?}");
        }
    }
}
