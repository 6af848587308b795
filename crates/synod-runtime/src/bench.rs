//! The actor chain benchmark: how fast messages move through actors on this executor.
//!
//! A driver actor feeds tokens into the head of a chain of `chain_length` link actors; each
//! link forwards to the next, and the tail hands each token back to the driver. The driver
//! keeps at most [`BENCH_WINDOW`] tokens in flight, feeding one more for each that returns,
//! so every mailbox stays far below its bound whatever the chain length.

use std::sync::{Arc, Mutex};

use synod_actor::{Actor, Addr, ChildSpec, Context, SupervisorSpec, SystemConfig};
use synod_core::limits::{CHILDREN_COUNT_MAX, MAILBOX_CAPACITY_DEFAULT};
use synod_core::{ConfigError, Duration, Instant, NodeId};
use tokio::sync::oneshot;

use crate::config::NodeRuntimeConfig;
use crate::error::RuntimeError;
use crate::record::lock;

/// The most tokens in the chain at once.
pub const BENCH_WINDOW: u64 = 256;
/// The longest chain: the links are top-level actors, and the driver is one more.
pub const BENCH_CHAIN_LENGTH_MAX: usize = CHILDREN_COUNT_MAX - 1;

const _: () = assert!(BENCH_WINDOW as usize <= MAILBOX_CAPACITY_DEFAULT);

/// What one run of the benchmark measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChainReport {
    pub chain_length: usize,
    pub messages_count: u64,
    /// Tokens that came back to the driver; equals `messages_count` unless the run failed.
    pub delivered_count: u64,
    /// Tokens that came back in a different order than they were sent (expected: none).
    pub reordered_count: u64,
    /// From the first token sent to the last one back, on the node's monotonic clock.
    pub elapsed: Duration,
    /// Tokens through the whole chain per second.
    pub messages_per_second: f64,
    /// Actor-to-actor hand-offs per second (tokens times links, plus the return).
    pub hops_per_second: f64,
}

#[derive(Debug)]
enum ChainMessage {
    Start { head: Addr<ChainMessage> },
    Token(u64),
}

struct ChainLink {
    next: Addr<ChainMessage>,
}

impl Actor for ChainLink {
    type Message = ChainMessage;

    fn on_message(&mut self, ctx: &mut Context<'_, ChainMessage>, message: ChainMessage) {
        if let ChainMessage::Token(sequence) = message {
            // The window keeps every mailbox below its bound; a refusal is a bug.
            ctx.send(self.next, ChainMessage::Token(sequence))
                .expect("the window is below the mailbox capacity");
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct ChainOutcome {
    delivered_count: u64,
    reordered_count: u64,
    elapsed: Duration,
}

type OutcomeSlot = Arc<Mutex<Option<oneshot::Sender<ChainOutcome>>>>;

struct ChainDriver {
    messages_count: u64,
    head: Option<Addr<ChainMessage>>,
    sent_count: u64,
    delivered_count: u64,
    reordered_count: u64,
    started_at: Instant,
    outcome: OutcomeSlot,
}

impl ChainDriver {
    fn send_next(&mut self, ctx: &mut Context<'_, ChainMessage>) {
        let head = self.head.expect("started");
        ctx.send(head, ChainMessage::Token(self.sent_count))
            .expect("the window is below the mailbox capacity");
        self.sent_count += 1;
    }

    fn finish(&mut self, ctx: &mut Context<'_, ChainMessage>) {
        let outcome = ChainOutcome {
            delivered_count: self.delivered_count,
            reordered_count: self.reordered_count,
            elapsed: ctx.now() - self.started_at,
        };
        if let Some(sender) = lock(&self.outcome).take() {
            let _ = sender.send(outcome);
        }
    }
}

impl Actor for ChainDriver {
    type Message = ChainMessage;

    fn on_message(&mut self, ctx: &mut Context<'_, ChainMessage>, message: ChainMessage) {
        match message {
            ChainMessage::Start { head } => {
                self.head = Some(head);
                self.started_at = ctx.now();
                while self.sent_count < self.messages_count.min(BENCH_WINDOW) {
                    self.send_next(ctx);
                }
            }
            ChainMessage::Token(sequence) => {
                if sequence != self.delivered_count {
                    self.reordered_count += 1;
                }
                self.delivered_count += 1;
                if self.sent_count < self.messages_count {
                    self.send_next(ctx);
                }
            }
        }
        if self.delivered_count == self.messages_count {
            self.finish(ctx);
        }
    }
}

/// Pushes `messages_count` tokens through a chain of `chain_length` actors in one node on
/// this executor and measures the throughput with the real clock. Runs on the caller's tokio
/// runtime; needs no network and no disk.
pub async fn bench_actor_chain(
    chain_length: usize,
    messages_count: u64,
) -> Result<ChainReport, RuntimeError> {
    if !(1..=BENCH_CHAIN_LENGTH_MAX).contains(&chain_length) {
        let problem = format!("({chain_length}) must be between 1 and {BENCH_CHAIN_LENGTH_MAX}");
        return Err(ConfigError::new("chain_length", problem).into());
    }
    if messages_count == 0 {
        return Err(ConfigError::new("messages_count", "(0) must be positive").into());
    }
    let mut config = NodeRuntimeConfig::new(NodeId(1));
    config.seed = Some(0);
    config.log_to_stderr = false;
    // Any failure is a bug in the benchmark: halt at once instead of restarting actors.
    config.system = SystemConfig::new(NodeId(1));
    config.system.root_supervision = SupervisorSpec::default().intensity(0, Duration::from_secs(1));
    let (outcome_sender, outcome_receiver) = oneshot::channel();
    let outcome_slot: OutcomeSlot = Arc::new(Mutex::new(Some(outcome_sender)));
    let result: Arc<Mutex<Option<ChainOutcome>>> = Arc::new(Mutex::new(None));
    let result_for_shutdown = result.clone();
    let boot = move |system: &mut synod_actor::System| {
        let driver = system
            .spawn(ChildSpec::new("chain-driver", move || ChainDriver {
                messages_count,
                head: None,
                sent_count: 0,
                delivered_count: 0,
                reordered_count: 0,
                started_at: Instant::ZERO,
                outcome: outcome_slot.clone(),
            }))
            .expect("spawn the chain driver");
        let mut next = driver;
        for index in (0..chain_length).rev() {
            let spec = ChildSpec::new(format!("chain-link-{index}"), move || ChainLink { next });
            next = system.spawn(spec).expect("spawn a chain link");
        }
        system
            .send(driver, ChainMessage::Start { head: next })
            .expect("start the chain driver");
    };
    let shutdown = async move {
        if let Ok(outcome) = outcome_receiver.await {
            *lock(&result_for_shutdown) = Some(outcome);
        }
    };
    crate::node::run_node(config, boot, shutdown).await?;
    let outcome = lock(&result)
        .take()
        .expect("the run ended after the outcome arrived");
    let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
    let hops_count = messages_count as f64 * (chain_length as f64 + 1.0);
    Ok(ChainReport {
        chain_length,
        messages_count,
        delivered_count: outcome.delivered_count,
        reordered_count: outcome.reordered_count,
        elapsed: outcome.elapsed,
        messages_per_second: messages_count as f64 / seconds,
        hops_per_second: hops_count / seconds,
    })
}
