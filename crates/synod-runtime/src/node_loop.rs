//! The node loop: one task that owns a node's `System` and feeds it every input.
//!
//! ```text
//! loop {
//!     system.run(services, budget)            // due timers, then up to `budget` messages
//!     deliver local sends and refused disk requests
//!     if the root supervisor gave up: stop
//!     if the system still has work: yield to the other tasks, then take inputs already there
//!     else wait for the first of: shutdown, a disk completion, a network arrival,
//!                                 an injected closure, the next timer deadline
//! }
//! ```
//!
//! Everything the system sees arrives here, in one task, so the actors run exactly as they
//! do under the simulator: one handler at a time, inputs in the order this loop takes them.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;

use synod_actor::{DiskCompletion, Inbound, System, SystemStatus};
use tokio::sync::mpsc;

use crate::config::NodeRuntimeConfig;
use crate::endpoint::{EndpointMessage, EndpointRoutes};
use crate::node::Injection;
use crate::services::RuntimeServices;

/// The most network arrivals taken from the channel for one round, so that a flood of them
/// cannot keep the system from running (each one is queued into a bounded mailbox).
const INBOUND_BATCH_MAX: usize = 1_024;

/// Counters of the node loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    pub rounds_count: u64,
    pub inbound_count: u64,
    pub disk_completions_count: u64,
    pub injections_count: u64,
    pub injection_panics_count: u64,
    pub timer_wakeups_count: u64,
    pub local_deliveries_count: u64,
    pub endpoint_sends_count: u64,
}

/// How the loop ended.
#[derive(Debug)]
pub(crate) enum LoopExit {
    Shutdown,
    Halted { reason: String },
}

enum Event {
    Shutdown,
    Disk(DiskCompletion),
    Inbound(Inbound),
    Injection(Injection),
    Endpoint(EndpointMessage),
    /// A timer may be due, or the system had work left and the loop yielded.
    Wake,
}

/// The inputs of one node's loop.
pub(crate) struct NodeLoop {
    pub(crate) system: System,
    pub(crate) services: RuntimeServices,
    inbound: mpsc::Receiver<Inbound>,
    disk_completions: Option<mpsc::Receiver<DiskCompletion>>,
    injections: mpsc::Receiver<Injection>,
    endpoints: EndpointRoutes,
    endpoint_outgoing: mpsc::Receiver<EndpointMessage>,
    run_budget: usize,
    pub(crate) stats: LoopStats,
}

impl NodeLoop {
    pub(crate) fn new(
        config: &NodeRuntimeConfig,
        services: RuntimeServices,
        inbound: mpsc::Receiver<Inbound>,
        disk_completions: Option<mpsc::Receiver<DiskCompletion>>,
        injections: mpsc::Receiver<Injection>,
        (endpoints, endpoint_outgoing): (EndpointRoutes, mpsc::Receiver<EndpointMessage>),
    ) -> NodeLoop {
        NodeLoop {
            system: System::new(config.system.clone()),
            services,
            inbound,
            disk_completions,
            injections,
            endpoints,
            endpoint_outgoing,
            run_budget: config.run_budget,
            stats: LoopStats::default(),
        }
    }

    /// Runs the system until `shutdown` completes or the root supervisor gives up.
    pub(crate) async fn drive<F: Future>(&mut self, mut shutdown: Pin<&mut F>) -> LoopExit {
        loop {
            let busy = self.run_round();
            if let SystemStatus::Halted { reason } = self.system.status() {
                return LoopExit::Halted {
                    reason: reason.clone(),
                };
            }
            match self.next_event(shutdown.as_mut(), busy).await {
                Event::Shutdown => return LoopExit::Shutdown,
                Event::Disk(completion) => {
                    self.stats.disk_completions_count += 1;
                    self.system.complete_disk(completion.id, completion.result);
                }
                Event::Inbound(inbound) => self.deliver_inbound(inbound),
                Event::Injection(injection) => self.inject(injection),
                Event::Endpoint(message) => self.send_from_endpoints(message),
                Event::Wake => {
                    if !busy {
                        self.stats.timer_wakeups_count += 1;
                    }
                }
            }
        }
    }

    /// One round of the system, then the deliveries the round produced for this node.
    /// Returns whether the system still has work.
    fn run_round(&mut self) -> bool {
        self.stats.rounds_count += 1;
        self.system.run(&mut self.services, self.run_budget);
        // Both queues are bounded and nothing adds to them while they are drained.
        while let Some(inbound) = self.services.local.pop_front() {
            self.stats.local_deliveries_count += 1;
            if let Some(inbound) = self.endpoints.route(inbound) {
                self.system.deliver(inbound);
            }
        }
        while let Some(completion) = self.services.disk_refused.pop_front() {
            self.system.complete_disk(completion.id, completion.result);
        }
        !self.system.is_idle()
    }

    /// Waits for the next input. When the system still has work the loop first yields, so
    /// the transport and other nodes' tasks on this worker run, and then only takes inputs
    /// that are already there.
    async fn next_event<F: Future>(&mut self, shutdown: Pin<&mut F>, busy: bool) -> Event {
        if busy {
            tokio::task::yield_now().await;
        }
        let deadline = match self.system.next_deadline() {
            Some(deadline) if !busy => Some(self.services.clock.to_tokio(deadline)),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = shutdown => Event::Shutdown,
            Some(completion) = recv_optional(&mut self.disk_completions) => Event::Disk(completion),
            Some(inbound) = self.inbound.recv() => Event::Inbound(inbound),
            Some(injection) = self.injections.recv() => Event::Injection(injection),
            Some(message) = self.endpoint_outgoing.recv() => Event::Endpoint(message),
            () = sleep_until_optional(deadline) => Event::Wake,
            () = std::future::ready(()), if busy => Event::Wake,
        }
    }

    fn deliver_inbound(&mut self, first: Inbound) {
        self.stats.inbound_count += 1;
        self.deliver(first);
        for _ in 1..INBOUND_BATCH_MAX {
            let Ok(inbound) = self.inbound.try_recv() else {
                return;
            };
            self.stats.inbound_count += 1;
            self.deliver(inbound);
        }
    }

    /// Delivers to the endpoint that serves the port, else to the actor bound to it.
    fn deliver(&mut self, inbound: Inbound) {
        if let Some(inbound) = self.endpoints.route(inbound) {
            self.system.deliver(inbound);
        }
    }

    /// Carries endpoints' sends out through the node's services, a bounded batch at a time.
    fn send_from_endpoints(&mut self, first: EndpointMessage) {
        use synod_actor::Services;
        let mut next = Some(first);
        for _ in 0..INBOUND_BATCH_MAX {
            let Some(message) = next.take() else {
                return;
            };
            self.stats.endpoint_sends_count += 1;
            if self
                .services
                .send_to_node(message.to, message.port, message.payload)
                .is_err()
            {
                let failures = &self.endpoints.send_failures;
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            next = self.endpoint_outgoing.try_recv().ok();
        }
    }

    /// Runs an injected closure. A panic in it is a bug in the code that sent it, not in the
    /// node: it is counted and reported, and the node goes on.
    fn inject(&mut self, injection: Injection) {
        self.stats.injections_count += 1;
        let system = &mut self.system;
        if catch_unwind(AssertUnwindSafe(|| injection(system))).is_err() {
            self.stats.injection_panics_count += 1;
            let logger = self.services.logger;
            logger.log(format_args!("an injected closure panicked"));
        }
    }

    /// Stops handing work to the IO tasks: closes the peer queues and the disk request
    /// channel, and gives back the disk completions so shutdown can wait for the IO thread.
    pub(crate) fn close_outputs(&mut self) -> Option<mpsc::Receiver<DiskCompletion>> {
        self.services.peers.clear();
        self.services.disk = None;
        self.disk_completions.take()
    }
}

async fn recv_optional<T>(receiver: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_optional(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
