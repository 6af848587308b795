//! The log under the simulator: every node runs synod-node's `WalActor` with a writer that
//! keeps appending, through crashes, power losses, torn writes, failing writes and fsyncs.
//!
//! Safety, checked after every event: whenever a log recovers, what it holds is exactly a
//! sequence of entries that were appended (nothing invented, nothing altered) and it holds
//! every entry whose append was acknowledged (nothing acknowledged lost). Liveness, after
//! the core is healed: every core node acknowledges new appends.
//!
//! Latent bit flips are turned off in this scenario: a flipped acknowledged record is
//! corruption in the middle of one node's log, which the log reports (with file and offset)
//! but cannot repair alone; replication repairs it by refetching from peers.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use synod_actor::{Actor, Addr, ChildSpec, Context, System};
use synod_core::{Duration, Instant, NodeId};
use synod_node::{WalAccepted, WalActor, WalContents, WalMessage, WalReply};
use synod_wal::WalConfig;

use crate::mix::FaultMix;
use crate::scenario::{ClusterView, Phase, Scenario};

/// The name `synod sim --scenario` knows this scenario by.
pub const WAL_SCENARIO: &str = "wal";
/// Appends a writer keeps outstanding at once.
pub const OUTSTANDING_MAX: usize = 8;
/// Appends one writer makes per boot (bounds the log a run builds).
pub const APPENDS_PER_BOOT_MAX: u64 = 50_000;
/// Acknowledgements each core node must produce after healing.
pub const PROGRESS_ACKS_MIN: u64 = 20;

/// Small segments, so runs roll segments often.
pub fn scenario_wal_config() -> WalConfig {
    WalConfig {
        segment_size: 64 << 10,
        record_size_max: 1 << 10,
        batch_size_max: 16 << 10,
        read_size_max: 64 << 10,
        ..WalConfig::default()
    }
}

/// Observation: the log acknowledged `sequence` to the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalAcknowledged {
    pub sequence: u64,
}

#[derive(Debug)]
pub enum WriterMessage {
    Tick,
    Reply(WalReply),
}

impl From<WalReply> for WriterMessage {
    fn from(reply: WalReply) -> Self {
        WriterMessage::Reply(reply)
    }
}

/// Appends records of random length, a few at a time, and reports acknowledgements.
pub struct Writer {
    wal: Addr<WalMessage<WriterMessage>>,
    boot_tag: u64,
    next_token: u64,
    /// Token -> when it was sent; an append lost with a crashed log expires after a while.
    outstanding: BTreeMap<u64, Instant>,
}

impl Writer {
    fn payload(&self, ctx: &mut Context<'_, WriterMessage>, token: u64) -> Bytes {
        let padding = (ctx.random_u64() % 300) as usize;
        let mut buffer = BytesMut::with_capacity(16 + padding);
        buffer.put_u64_le(self.boot_tag);
        buffer.put_u64_le(token);
        for index in 0..padding {
            buffer.put_u8((token as usize + index) as u8);
        }
        buffer.freeze()
    }

    fn on_tick(&mut self, ctx: &mut Context<'_, WriterMessage>) {
        ctx.set_timer(Duration::from_millis(5), WriterMessage::Tick);
        let now = ctx.now();
        self.outstanding
            .retain(|_, sent| now.saturating_duration_since(*sent) < Duration::from_secs(2));
        if self.outstanding.len() >= OUTSTANDING_MAX || self.next_token >= APPENDS_PER_BOOT_MAX {
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        let payload = self.payload(ctx, token);
        let reply = ctx.myself();
        if ctx
            .send(
                self.wal,
                WalMessage::Append {
                    token,
                    payload,
                    reply,
                },
            )
            .is_ok()
        {
            self.outstanding.insert(token, now);
        }
    }
}

impl Actor for Writer {
    type Message = WriterMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, WriterMessage>) {
        self.boot_tag = ctx.random_u64();
        ctx.set_timer(Duration::from_millis(5), WriterMessage::Tick);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, WriterMessage>, message: WriterMessage) {
        match message {
            WriterMessage::Tick => self.on_tick(ctx),
            WriterMessage::Reply(WalReply::Durable { token, sequence }) => {
                self.outstanding.remove(&token);
                ctx.observe(WalAcknowledged { sequence });
            }
            WriterMessage::Reply(WalReply::Refused { token, .. }) => {
                self.outstanding.remove(&token);
            }
        }
    }
}

/// What the scenario knows of one node's log.
#[derive(Default)]
struct LogBook {
    /// Entries accepted into the log (durable or not), by sequence.
    accepted: BTreeMap<u64, Bytes>,
    /// Entries acknowledged as durable, by sequence.
    acknowledged: BTreeMap<u64, Bytes>,
    recoveries_count: u64,
    acknowledged_after_heal: u64,
}

/// The scenario.
pub struct WalScenario {
    nodes_count: usize,
    books: BTreeMap<NodeId, LogBook>,
    next: u64,
}

impl WalScenario {
    pub fn new(nodes_count: usize) -> WalScenario {
        WalScenario {
            nodes_count,
            books: BTreeMap::new(),
            next: 0,
        }
    }

    fn on_accepted(&mut self, node: NodeId, accepted: &WalAccepted) -> Result<(), String> {
        let book = self.books.entry(node).or_default();
        if let Some(durable) = book.acknowledged.get(&accepted.sequence)
            && *durable != accepted.payload
        {
            return Err(format!(
                "{node}: sequence {} was acknowledged, then reused for another entry",
                accepted.sequence
            ));
        }
        book.accepted
            .insert(accepted.sequence, accepted.payload.clone());
        Ok(())
    }

    fn on_acknowledged(
        &mut self,
        node: NodeId,
        sequence: u64,
        after_heal: bool,
    ) -> Result<(), String> {
        let book = self.books.entry(node).or_default();
        let Some(payload) = book.accepted.get(&sequence) else {
            return Err(format!(
                "{node}: sequence {sequence} acknowledged but never accepted"
            ));
        };
        book.acknowledged.insert(sequence, payload.clone());
        book.acknowledged_after_heal += u64::from(after_heal);
        Ok(())
    }

    fn on_contents(&mut self, node: NodeId, contents: &WalContents) -> Result<(), String> {
        let book = self.books.entry(node).or_default();
        book.recoveries_count += 1;
        let recovered: BTreeMap<u64, Bytes> = contents.entries.iter().cloned().collect();
        for (position, (sequence, payload)) in contents.entries.iter().enumerate() {
            if *sequence != position as u64 + 1 {
                return Err(format!(
                    "{node}: recovered log has sequence {sequence} at {position}"
                ));
            }
            if book.accepted.get(sequence) != Some(payload) {
                return Err(format!(
                    "{node}: recovered entry {sequence} was never appended"
                ));
            }
        }
        for (sequence, payload) in &book.acknowledged {
            if recovered.get(sequence) != Some(payload) {
                return Err(format!(
                    "{node}: acknowledged entry {sequence} is missing after recovery {} \
                     ({} entries recovered)",
                    book.recoveries_count,
                    contents.entries.len()
                ));
            }
        }
        // What was not recovered was never acknowledged; the log continues from here.
        book.accepted = recovered;
        Ok(())
    }
}

impl Scenario for WalScenario {
    fn name(&self) -> &str {
        WAL_SCENARIO
    }

    fn nodes_count(&self) -> usize {
        self.nodes_count
    }

    fn adjust_fault_mix(&self, mix: &mut FaultMix) {
        mix.disk.bit_flip_probability = 0.0;
    }

    fn boot(&mut self, node: NodeId, system: &mut System) {
        let log = ChildSpec::new("wal", || {
            WalActor::<WriterMessage>::new(scenario_wal_config())
        });
        let wal = match system.spawn(log) {
            Ok(wal) => wal,
            Err(error) => panic!("cannot boot the log of {node}: {error}"),
        };
        let writer = ChildSpec::new("writer", move || Writer {
            wal,
            boot_tag: 0,
            next_token: 0,
            outstanding: BTreeMap::new(),
        });
        if let Err(error) = system.spawn(writer) {
            panic!("cannot boot the writer of {node}: {error}");
        }
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        let healed_at = match view.phase() {
            Phase::Liveness { healed_at } => Some(healed_at),
            Phase::Safety => None,
        };
        let mut next = self.next;
        for (index, record) in view.observations_since(self.next) {
            next = index + 1;
            if let Some(accepted) = record.downcast::<WalAccepted>() {
                self.on_accepted(record.node, accepted)?;
            } else if let Some(acknowledged) = record.downcast::<WalAcknowledged>() {
                let after_heal = healed_at.is_some_and(|at| record.at >= at);
                self.on_acknowledged(record.node, acknowledged.sequence, after_heal)?;
            } else if let Some(contents) = record.downcast::<WalContents>() {
                self.on_contents(record.node, contents)?;
            }
        }
        self.next = next;
        Ok(())
    }

    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        view.core_nodes().iter().all(|node| {
            self.books
                .get(node)
                .is_some_and(|book| book.acknowledged_after_heal >= PROGRESS_ACKS_MIN)
        })
    }

    fn liveness_bound(&self) -> Duration {
        Duration::from_secs(20)
    }

    fn report(&mut self, _view: &ClusterView<'_>) -> Vec<(String, String)> {
        let acknowledged: usize = self
            .books
            .values()
            .map(|book| book.acknowledged.len())
            .sum();
        let recoveries: u64 = self.books.values().map(|book| book.recoveries_count).sum();
        vec![
            ("acknowledged_entries".to_string(), acknowledged.to_string()),
            ("recoveries_checked".to_string(), recoveries.to_string()),
        ]
    }
}
