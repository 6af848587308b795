//! Helpers shared by the integration tests: test actors, starting and stopping nodes on
//! loopback, scratch directories, and waiting on a condition with a deadline.
//!
//! Each test binary uses a different part of this module, so the rest is dead code there.
#![allow(dead_code)]

pub mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use synod_actor::{
    Actor, Addr, ChildSpec, Context, DiskCompletion, DiskOp, DiskReply, Inbound, NetSendError,
    Port, System,
};
use synod_core::{Duration, NodeId};
use synod_runtime::{NodeHandle, NodeReport, NodeRuntime, NodeRuntimeConfig, RuntimeError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The port the mailman binds.
pub const MAIL_PORT: Port = Port(25);

/// Observed by a mailman for each message it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub at: NodeId,
    pub from: NodeId,
    pub text: String,
}

/// Observed by a mailman for each send it was asked to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    pub to: NodeId,
    pub text: String,
    pub result: Result<(), NetSendError>,
}

#[derive(Debug)]
pub enum MailMessage {
    Arrived(Inbound),
    Send { to: NodeId, text: String },
}

impl From<Inbound> for MailMessage {
    fn from(inbound: Inbound) -> Self {
        MailMessage::Arrived(inbound)
    }
}

/// Sends text to other nodes when told to and observes what it receives.
pub struct Mailman;

impl Actor for Mailman {
    type Message = MailMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, MailMessage>) {
        ctx.bind(MAIL_PORT).expect("the mail port is free");
    }

    fn on_message(&mut self, ctx: &mut Context<'_, MailMessage>, message: MailMessage) {
        match message {
            MailMessage::Arrived(inbound) => {
                let text = String::from_utf8_lossy(&inbound.payload).into_owned();
                let at = ctx.node_id();
                ctx.observe(Received {
                    at,
                    from: inbound.from,
                    text,
                });
            }
            MailMessage::Send { to, text } => {
                let payload = Bytes::from(text.clone().into_bytes());
                let result = ctx.send_to_node(to, MAIL_PORT, payload);
                ctx.observe(SendOutcome { to, text, result });
            }
        }
    }
}

/// A slot the boot closure fills with an actor's address, for injections to use.
pub type AddrSlot<M> = Arc<Mutex<Option<Addr<M>>>>;

/// Boots a node with one mailman and returns where its address will be.
pub fn boot_mailman() -> (
    impl FnOnce(&mut System) + Send + 'static,
    AddrSlot<MailMessage>,
) {
    let slot: AddrSlot<MailMessage> = Arc::new(Mutex::new(None));
    let slot_for_boot = slot.clone();
    let boot = move |system: &mut System| {
        let addr = system
            .spawn(ChildSpec::new("mailman", || Mailman))
            .expect("spawn the mailman");
        *slot_for_boot.lock().unwrap() = Some(addr);
    };
    (boot, slot)
}

/// A config for tests: loopback on a free port, a fixed seed, short backoff, quiet logs.
pub fn test_config(node: NodeId) -> NodeRuntimeConfig {
    let mut config = NodeRuntimeConfig::new(node);
    config.listen_address = Some("127.0.0.1:0".parse().unwrap());
    config.seed = Some(node.get());
    config.reconnect_backoff_min = Duration::from_millis(5);
    config.reconnect_backoff_max = Duration::from_millis(100);
    config.shutdown_flush_timeout = Duration::from_secs(2);
    config.log_to_stderr = false;
    config
}

/// A node running in a tokio task.
pub struct TestNode {
    pub node: NodeId,
    /// `None` for a node without a listener.
    pub address: Option<SocketAddr>,
    pub handle: NodeHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<NodeReport, RuntimeError>>,
}

impl TestNode {
    /// Starts a node that was built and given its peers.
    pub fn spawn(
        runtime: NodeRuntime,
        boot: impl FnOnce(&mut System) + Send + 'static,
    ) -> TestNode {
        let (stop, stopped) = oneshot::channel::<()>();
        let node = runtime.node();
        let address = runtime.local_address();
        let handle = runtime.handle();
        let task = tokio::spawn(runtime.run(boot, stopped));
        TestNode {
            node,
            address,
            handle,
            stop,
            task,
        }
    }

    /// Where the node listens.
    pub fn address(&self) -> SocketAddr {
        self.address.expect("the node listens")
    }

    /// Stops the node in an orderly way and returns its report.
    pub async fn stop(self) -> NodeReport {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
        result
            .expect("the node stops within 10s")
            .expect("the node task does not panic")
            .expect("the node stops without error")
    }
}

/// Builds one runtime per config, gives each the others' real addresses, and starts them
/// with the boot closures `boot` makes per node.
pub fn start_cluster<B>(
    configs: Vec<NodeRuntimeConfig>,
    mut boot: impl FnMut(NodeId) -> B,
) -> Vec<TestNode>
where
    B: FnOnce(&mut System) + Send + 'static,
{
    let mut runtimes: Vec<NodeRuntime> = configs
        .into_iter()
        .map(|config| NodeRuntime::new(config).expect("build the node"))
        .collect();
    let addresses: Vec<(NodeId, SocketAddr)> = runtimes
        .iter()
        .map(|runtime| (runtime.node(), runtime.local_address().unwrap()))
        .collect();
    for runtime in &mut runtimes {
        for (node, address) in &addresses {
            runtime.set_peer(*node, *address);
        }
    }
    runtimes
        .into_iter()
        .map(|runtime| {
            let node = runtime.node();
            TestNode::spawn(runtime, boot(node))
        })
        .collect()
}

/// Polls `condition` until it holds, failing the test with `what` after `limit`.
pub async fn wait_until(
    what: &str,
    limit: std::time::Duration,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        // Polling with a short pause is waiting on a condition, not sleeping for timing.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Asks the mailman in `slot` on `node` to send `text` to `to`. The address is read inside
/// the node loop, where the boot closure has certainly run.
pub fn send_mail(node: &TestNode, slot: &AddrSlot<MailMessage>, to: NodeId, text: &str) {
    let slot = slot.clone();
    let text = text.to_string();
    node.handle
        .inject(move |system| {
            let addr = slot.lock().unwrap().expect("the mailman has started");
            system
                .send(addr, MailMessage::Send { to, text })
                .expect("the mailman takes mail");
        })
        .expect("the node takes injections");
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "synod-runtime-test-{}-{sequence}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Observed by a disk script for each step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskStep {
    pub index: usize,
    pub kind: &'static str,
    pub result: Result<DiskReply, synod_actor::DiskError>,
}

#[derive(Debug)]
pub enum ScriptMessage {
    Done(DiskCompletion),
}

/// Runs a list of disk operations one after another, each after the previous completed,
/// and observes every result.
pub struct DiskScript {
    pub steps: Vec<DiskOp>,
    pub next: usize,
}

impl DiskScript {
    /// Submits the next step; steps refused at submission are observed at once and the
    /// script moves on to the one after.
    fn submit_next(&mut self, ctx: &mut Context<'_, ScriptMessage>) {
        while let Some(op) = self.steps.get(self.next).cloned() {
            let kind = op.kind();
            let error = match ctx.disk(op, ScriptMessage::Done) {
                Ok(_) => return,
                Err(synod_actor::DiskSubmitError::Invalid(error)) => error,
                Err(other) => panic!("unexpected submit error {other}"),
            };
            let index = self.next;
            self.next += 1;
            ctx.observe(DiskStep {
                index,
                kind,
                result: Err(error),
            });
        }
    }
}

impl Actor for DiskScript {
    type Message = ScriptMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, ScriptMessage>) {
        self.submit_next(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, ScriptMessage>, message: ScriptMessage) {
        let ScriptMessage::Done(completion) = message;
        let index = self.next;
        let kind = self.steps[index].kind();
        self.next += 1;
        ctx.observe(DiskStep {
            index,
            kind,
            result: completion.result,
        });
        self.submit_next(ctx);
    }
}
