//! One node on tokio: the node loop that drives a `System`, its start and its shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use synod_actor::{ActorInfo, PanicRecord, Port, System, SystemStats};
use synod_core::limits::DISK_REQUESTS_COUNT_MAX;
use synod_core::{Duration, NodeId, Validate};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, ClockFaultSettings};
use crate::config::NodeRuntimeConfig;
use crate::disk::{self, DataDirLock, DiskCounters, DiskStats};
use crate::endpoint::{
    Endpoint, EndpointCounters, EndpointMessage, EndpointRoutes, EndpointSender,
};
use crate::error::RuntimeError;
use crate::node_loop::{LoopExit, LoopStats, NodeLoop};
use crate::peer_breaker::PeerBreaker;
use crate::record::{BoundedLog, Logger, lock};
use crate::services::{ObservationLog, ObservationRecord, RuntimeServices, ServicesStats};
use crate::transport::{NetworkErrorRecord, PeerCounters, PeerStats, TransportShared};
use crate::wiring;

/// A closure run inside the node loop with the node's system, between two rounds.
pub type Injection = Box<dyn FnOnce(&mut System) + Send>;

/// Why an injection did not reach the node loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum InjectError {
    #[error("the node's injection queue is full ({capacity} closures)")]
    Full { capacity: usize },
    #[error("the node is not running")]
    Stopped,
}

/// What a node did, returned when it stops.
#[derive(Debug)]
pub struct NodeReport {
    pub node: NodeId,
    /// The seed of the node's PRNG (drawn from the operating system if none was given).
    pub seed: u64,
    pub uptime: Duration,
    pub system: SystemStats,
    /// The supervision tree just before shutdown.
    pub tree: Vec<ActorInfo>,
    pub tree_text: String,
    pub panics: Vec<PanicRecord>,
    pub services: ServicesStats,
    pub loop_stats: LoopStats,
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Incoming connections that never named a node with a valid hello.
    pub unidentified: PeerStats,
    pub network_errors: Vec<NetworkErrorRecord>,
    pub network_errors_dropped_count: u64,
    pub disk: DiskStats,
    pub observations: Vec<ObservationRecord>,
    pub observations_dropped_count: u64,
}

impl NodeReport {
    /// The observations of type `T`, oldest first.
    pub fn observations_of<T: 'static>(&self) -> Vec<&T> {
        self.observations
            .iter()
            .filter_map(|record| record.observation.as_any().downcast_ref::<T>())
            .collect()
    }
}

/// A cloneable handle to a node: injects closures into its loop and reads its live logs.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    node: NodeId,
    injections: mpsc::Sender<Injection>,
    injection_capacity: usize,
    observations: ObservationLog,
    transport: Arc<TransportShared>,
    disk: Arc<DiskCounters>,
    /// Whether disk faults may be injected.
    disk_faults: bool,
    clock: Clock,
}

impl NodeHandle {
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Queues `injection` to run inside the node loop; never waits.
    pub fn inject(
        &self,
        injection: impl FnOnce(&mut System) + Send + 'static,
    ) -> Result<(), InjectError> {
        self.injections
            .try_send(Box::new(injection))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => InjectError::Full {
                    capacity: self.injection_capacity,
                },
                mpsc::error::TrySendError::Closed(_) => InjectError::Stopped,
            })
    }

    /// Runs `call` inside the node loop and returns its result, waiting for room in the
    /// queue and for the loop to get to it.
    pub async fn call<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut System) -> R + Send + 'static,
    ) -> Result<R, InjectError> {
        let (reply, result) = oneshot::channel();
        let injection: Injection = Box::new(move |system| {
            let _ = reply.send(call(system));
        });
        self.injections
            .send(injection)
            .await
            .map_err(|_| InjectError::Stopped)?;
        result.await.map_err(|_| InjectError::Stopped)
    }

    /// Copies of the observations of type `T` in the node's log so far, oldest first.
    pub fn observations_of<T: Clone + 'static>(&self) -> Vec<T> {
        let log = lock(&self.observations);
        log.iter()
            .filter_map(|record| record.observation.as_any().downcast_ref::<T>())
            .cloned()
            .collect()
    }

    /// The network errors in the node's log so far, oldest first.
    pub fn network_errors(&self) -> Vec<NetworkErrorRecord> {
        self.transport.errors()
    }

    /// The live counters of every configured peer.
    pub fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        self.transport.peer_stats()
    }

    /// Sets the node's injected clock faults (drift of its clocks' rate, offset of its wall
    /// clock). Refused unless the node was configured with `clock_faults`.
    pub fn set_clock_faults(&self, settings: ClockFaultSettings) -> Result<(), String> {
        self.clock.set_faults(settings)
    }

    /// Sets this node's injected disk faults: a sync delay (a slow disk; zero: none) and a
    /// failing disk. Refused unless the node was configured with `disk_faults`, or beyond
    /// [`crate::DISK_SYNC_DELAY_MAX`].
    pub fn set_disk_faults(&self, settings: crate::DiskFaultSettings) -> Result<(), String> {
        if !self.disk_faults {
            return Err("disk faults are disabled on this node".to_string());
        }
        let sync_delay = settings.sync_delay;
        if sync_delay > crate::DISK_SYNC_DELAY_MAX {
            return Err(format!(
                "a sync delay of {sync_delay} exceeds the most a node accepts ({})",
                crate::DISK_SYNC_DELAY_MAX
            ));
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.disk
            .sync_delay_us
            .store(sync_delay.as_micros(), relaxed);
        self.disk.failing.store(settings.failing, relaxed);
        Ok(())
    }

    /// The injected disk faults in force (`None`: this node does not allow disk faults).
    pub fn disk_faults(&self) -> Option<crate::DiskFaultSettings> {
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.disk_faults.then(|| crate::DiskFaultSettings {
            sync_delay: synod_core::Duration::from_micros(self.disk.sync_delay_us.load(relaxed)),
            failing: self.disk.failing.load(relaxed),
        })
    }

    /// The clock faults in force (`None`: this node does not allow them).
    pub fn clock_faults(&self) -> Option<ClockFaultSettings> {
        self.clock.fault_settings()
    }

    /// The node's disk counters so far (operations, bytes, syncs, errors).
    pub fn disk_stats(&self) -> DiskStats {
        self.disk.snapshot()
    }

    /// Counters of incoming connections that never named a node with a valid hello.
    pub fn unidentified_stats(&self) -> PeerStats {
        self.transport
            .unidentified
            .snapshot(self.transport.clock.now())
    }
}

/// A node that has bound its listener and locked its data directory, ready to run.
///
/// Building and running are separate so that a cluster on one machine can bind every node on
/// port 0 first, learn the real addresses, and then give each node the others' addresses.
#[derive(Debug)]
pub struct NodeRuntime {
    config: NodeRuntimeConfig,
    seed: u64,
    clock: Clock,
    listener: Option<std::net::TcpListener>,
    local_address: Option<SocketAddr>,
    lock: Option<DataDirLock>,
    injections: (mpsc::Sender<Injection>, mpsc::Receiver<Injection>),
    observations: ObservationLog,
    transport: Arc<TransportShared>,
    endpoint_outgoing: (
        mpsc::Sender<EndpointMessage>,
        mpsc::Receiver<EndpointMessage>,
    ),
    endpoints: EndpointRoutes,
    disk_counters: Arc<DiskCounters>,
}

impl NodeRuntime {
    /// Validates `config`, locks the data directory and binds the listener.
    pub fn new(config: NodeRuntimeConfig) -> Result<NodeRuntime, RuntimeError> {
        config.validate()?;
        let lock = match &config.data_dir {
            Some(dir) => Some(disk::lock_data_dir(dir)?),
            None => None,
        };
        let (listener, local_address) = match config.listen_address {
            Some(address) => {
                let listener = bind(address)?;
                let local = listener
                    .local_addr()
                    .map_err(|error| RuntimeError::Listen {
                        address,
                        message: error.to_string(),
                    })?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let clock = Clock::start(
            config
                .clock_faults
                .then(|| Arc::new(crate::clock::ClockFaults::default())),
        );
        let logger = Logger {
            node: config.node(),
            enabled: config.log_to_stderr,
        };
        let transport = Arc::new(TransportShared::new(
            config.node(),
            clock.clone(),
            logger,
            config.network_errors_capacity,
        ));
        let mut runtime = NodeRuntime {
            seed: config
                .seed
                .unwrap_or_else(crate::services::seed_from_entropy),
            clock,
            listener,
            local_address,
            lock,
            injections: mpsc::channel(config.injection_capacity),
            observations: Arc::new(Mutex::new(BoundedLog::new(config.observations_capacity))),
            transport,
            endpoint_outgoing: mpsc::channel(config.inbound_capacity),
            disk_counters: Arc::new(DiskCounters::default()),
            endpoints: EndpointRoutes {
                ports: BTreeMap::new(),
                send_failures: Arc::default(),
            },
            config,
        };
        let peers = runtime.config.peers.clone();
        for (node, address) in peers {
            runtime.set_peer(node, address);
        }
        Ok(runtime)
    }

    /// The address the node accepts connections on (with the real port if 0 was asked for).
    pub fn local_address(&self) -> Option<SocketAddr> {
        self.local_address
    }

    pub fn node(&self) -> NodeId {
        self.config.node()
    }

    /// Adds or changes a peer's address before the node runs. This node's own entry is
    /// ignored, so one map can serve the whole cluster.
    pub fn set_peer(&mut self, node: NodeId, address: SocketAddr) {
        if node == self.config.node() {
            return;
        }
        self.config.peers.insert(node, address);
        let breaker = self.config.peer_breaker;
        let answer_timeout = self.config.peer_answer_timeout;
        lock(&self.transport.peers).entry(node).or_insert_with(|| {
            let counters = PeerCounters::default();
            if let Some(config) = breaker {
                counters.install_breaker(PeerBreaker::new(config, answer_timeout));
            }
            Arc::new(counters)
        });
    }

    /// Opens `port` on this node for a task outside the actor system: what actors and peers
    /// send to the port goes to the endpoint (at most `capacity` waiting; more are dropped and
    /// counted), and the endpoint's sender reaches any node and port through the node loop.
    /// An actor must not bind the same port.
    pub fn open_endpoint(&mut self, port: Port, capacity: usize) -> Result<Endpoint, RuntimeError> {
        if self.endpoints.ports.contains_key(&port) {
            return Err(RuntimeError::EndpointTaken { port: port.0 });
        }
        let capacity = capacity.clamp(1, synod_core::limits::MAILBOX_CAPACITY_MAX);
        let (sender, incoming) = mpsc::channel(capacity);
        let counters = Arc::new(EndpointCounters::default());
        self.endpoints
            .ports
            .insert(port, (sender, counters.clone()));
        let sender = EndpointSender {
            outgoing: self.endpoint_outgoing.0.clone(),
            capacity: self.config.inbound_capacity,
            counters,
            send_failures: self.endpoints.send_failures.clone(),
        };
        Ok(Endpoint::new(port, incoming, sender))
    }

    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            node: self.config.node(),
            injections: self.injections.0.clone(),
            injection_capacity: self.config.injection_capacity,
            observations: self.observations.clone(),
            transport: self.transport.clone(),
            disk: self.disk_counters.clone(),
            disk_faults: self.config.disk_faults,
            clock: self.clock.clone(),
        }
    }

    /// Runs the node: `boot` spawns its actors, then the node loop runs until `shutdown`
    /// completes (an orderly stop, returning the report) or the root supervisor gives up
    /// (returning [`RuntimeError::Halted`]).
    pub async fn run(
        self,
        boot: impl FnOnce(&mut System),
        shutdown: impl Future,
    ) -> Result<NodeReport, RuntimeError> {
        let NodeRuntime {
            config,
            seed,
            clock,
            listener,
            local_address: _,
            lock,
            injections: (_, injections),
            observations,
            transport,
            endpoint_outgoing: (_, endpoint_outgoing),
            endpoints,
            disk_counters,
        } = self;
        let logger = transport.logger;
        let services = RuntimeServices::new(
            config.node(),
            seed,
            clock.clone(),
            logger,
            config.local_queue_capacity,
            observations.clone(),
        );
        let (wiring, inputs) = wiring::start(
            &config,
            listener,
            lock,
            services,
            &transport,
            &disk_counters,
        )?;
        let mut node_loop = NodeLoop::new(
            &config,
            inputs.services,
            inputs.inbound,
            inputs.disk_completions,
            injections,
            (endpoints, endpoint_outgoing),
        );
        logger.log(format_args!("running with seed {seed}"));
        boot(&mut node_loop.system);
        let exit = node_loop.drive(std::pin::pin!(shutdown)).await;
        let tree = node_loop.system.tree();
        let tree_text = node_loop.system.render_tree();
        // The actors stop first (their last sends and writes are queued), then the queues
        // close and the IO tasks drain them.
        node_loop.system.shutdown(&mut node_loop.services);
        let disk_completions = node_loop.close_outputs();
        wiring
            .stop(config.shutdown_flush_timeout, disk_completions)
            .await;
        let mut report = collect_report(&node_loop, &transport, &observations, clock);
        (report.seed, report.tree, report.tree_text) = (seed, tree, tree_text);
        report.disk = disk_counters.snapshot();
        match exit {
            LoopExit::Shutdown => {
                logger.log(format_args!("stopped"));
                Ok(report)
            }
            LoopExit::Halted { reason } => Err(RuntimeError::Halted {
                node: config.node(),
                reason,
                report: Box::new(report),
            }),
        }
    }
}

/// The report of a node whose loop has ended and whose IO has stopped. The caller fills in
/// what only it knows (seed, tree, disk).
fn collect_report(
    node_loop: &NodeLoop,
    transport: &TransportShared,
    observations: &ObservationLog,
    clock: Clock,
) -> NodeReport {
    // Each log is locked in its own statement: a guard in the struct literal below would live
    // to the end of it, and locking the same log twice there would deadlock.
    let (network_errors, network_errors_dropped_count) = {
        let mut errors = lock(&transport.errors);
        (errors.take(), errors.dropped_count())
    };
    let (observations, observations_dropped_count) = {
        let mut log = lock(observations);
        (log.take(), log.dropped_count())
    };
    NodeReport {
        node: node_loop.system.node(),
        seed: 0,
        uptime: clock.now() - synod_core::Instant::ZERO,
        system: node_loop.system.stats().clone(),
        tree: Vec::new(),
        tree_text: String::new(),
        panics: node_loop.system.panics().cloned().collect(),
        services: node_loop.services.stats,
        loop_stats: node_loop.stats,
        peers: transport.peer_stats(),
        unidentified: transport.unidentified.snapshot(transport.clock.now()),
        network_errors,
        network_errors_dropped_count,
        disk: DiskStats::default(),
        observations,
        observations_dropped_count,
    }
}

/// Binds a listener now, so the address is known (and taken) before the node runs.
fn bind(address: SocketAddr) -> Result<std::net::TcpListener, RuntimeError> {
    let failed = |error: std::io::Error| RuntimeError::Listen {
        address,
        message: error.to_string(),
    };
    let listener = std::net::TcpListener::bind(address).map_err(failed)?;
    // tokio takes the socket over when the node runs; it must not block the runtime.
    listener.set_nonblocking(true).map_err(failed)?;
    Ok(listener)
}

/// Builds a [`NodeRuntime`] from `config` and runs it (see [`NodeRuntime::run`]).
pub async fn run_node(
    config: NodeRuntimeConfig,
    boot: impl FnOnce(&mut System),
    shutdown: impl Future,
) -> Result<NodeReport, RuntimeError> {
    NodeRuntime::new(config)?.run(boot, shutdown).await
}

/// The disk request channel holds as many requests as may be outstanding, so a submit never
/// finds it full.
pub(crate) const DISK_CHANNEL_CAPACITY: usize = DISK_REQUESTS_COUNT_MAX;
