//! Starting and stopping a node's IO: the accept loop, one sender task per peer and the disk
//! thread, and the channels that connect them to the node loop.

use std::sync::Arc;

use synod_actor::{DiskCompletion, Inbound};
use synod_core::{Duration, Prng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::NodeRuntimeConfig;
use crate::disk::{self, DataDirLock, DiskCounters, DiskThreadParts};
use crate::error::RuntimeError;
use crate::node::DISK_CHANNEL_CAPACITY;
use crate::peer::{Backoff, PeerLink, PeerQueues, PeerSender};
use crate::services::RuntimeServices;
use crate::transport::{self, Incoming, TransportShared};

/// The running IO tasks of a node, and how to stop them.
#[derive(Debug)]
pub(crate) struct Wiring {
    shutdown: watch::Sender<bool>,
    /// The accept loop; it owns the reader tasks. Dropping the set aborts them all.
    accept_tasks: JoinSet<()>,
    peer_tasks: JoinSet<()>,
    disk_thread: Option<std::thread::JoinHandle<()>>,
    logger: crate::record::Logger,
}

/// What the node loop gets from the wiring.
pub(crate) struct LoopInputs {
    pub(crate) services: RuntimeServices,
    pub(crate) inbound: mpsc::Receiver<Inbound>,
    pub(crate) disk_completions: Option<mpsc::Receiver<DiskCompletion>>,
}

/// Starts the IO of a node and connects `services` to it. Must run inside a tokio runtime.
pub(crate) fn start(
    config: &NodeRuntimeConfig,
    listener: Option<std::net::TcpListener>,
    lock: Option<DataDirLock>,
    mut services: RuntimeServices,
    transport: &Arc<TransportShared>,
    disk_counters: &Arc<DiskCounters>,
) -> Result<(Wiring, LoopInputs), RuntimeError> {
    let (shutdown, shutdown_watch) = watch::channel(false);
    let mut wiring = Wiring {
        shutdown,
        accept_tasks: JoinSet::new(),
        peer_tasks: JoinSet::new(),
        disk_thread: None,
        logger: transport.logger,
    };
    let (inbound_sender, inbound) = mpsc::channel(config.inbound_capacity);
    if let Some(listener) = listener {
        let address = listener.local_addr().ok();
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|error| RuntimeError::Listen {
                address: address.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                message: error.to_string(),
            })?;
        let incoming = Arc::new(Incoming {
            shared: transport.clone(),
            inbound: inbound_sender,
            hello_timeout: config.hello_timeout,
            stall_timeout: config.stall_timeout,
            connections_max: config.connections_max,
        });
        let accept = transport::accept_loop(listener, incoming, shutdown_watch.clone());
        wiring.accept_tasks.spawn(accept);
    }
    start_peers(
        config,
        &mut services,
        transport,
        &mut wiring,
        &shutdown_watch,
    );
    let disk_completions = match &config.data_dir {
        Some(dir) => {
            let (request_sender, requests) = mpsc::channel(DISK_CHANNEL_CAPACITY);
            let (completion_sender, completions) = mpsc::channel(DISK_CHANNEL_CAPACITY);
            let thread = disk::start_disk_thread(DiskThreadParts {
                node: config.node(),
                lock: lock.ok_or_else(|| RuntimeError::DataDirectory {
                    dir: dir.clone(),
                    message: "the data directory was not locked before the disk thread started"
                        .to_string(),
                })?,
                requests,
                completions: completion_sender,
                counters: disk_counters.clone(),
            })?;
            wiring.disk_thread = Some(thread);
            services.disk = Some(request_sender);
            Some(completions)
        }
        None => None,
    };
    services.log_observations = config.log_observations;
    let inputs = LoopInputs {
        services,
        inbound,
        disk_completions,
    };
    Ok((wiring, inputs))
}

/// One sender task and queue per peer; each task's backoff jitter has its own PRNG stream.
fn start_peers(
    config: &NodeRuntimeConfig,
    services: &mut RuntimeServices,
    transport: &Arc<TransportShared>,
    wiring: &mut Wiring,
    shutdown_watch: &watch::Receiver<bool>,
) {
    services.peer_queue_capacity = config.peer_queue_capacity;
    services.priority_ports = config.priority_ports.clone();
    let mut jitter_seeds = Prng::from_seed(services.prng.next_u64());
    for (peer, address) in &config.peers {
        let Some(counters) = transport.counters_of(*peer) else {
            continue;
        };
        let (queue_sender, queue) = mpsc::channel(config.peer_queue_capacity);
        let (priority_sender, priority) = mpsc::channel(config.peer_queue_capacity);
        let sender = PeerSender {
            peer: *peer,
            address: *address,
            queue: PeerQueues { priority, queue },
            counters: counters.clone(),
            shared: transport.clone(),
            backoff: Backoff {
                min: config.reconnect_backoff_min,
                max: config.reconnect_backoff_max,
                prng: jitter_seeds.fork(),
            },
            connect_timeout: config.connect_timeout,
            stall_timeout: config.stall_timeout,
            shutdown: shutdown_watch.clone(),
            connected_before: false,
        };
        wiring.peer_tasks.spawn(sender.run());
        let link = PeerLink {
            queue: queue_sender,
            priority: priority_sender,
            counters,
        };
        services.peers.insert(*peer, link);
    }
}

impl Wiring {
    /// Stops the IO after the node loop closed its outputs: incoming connections end at once;
    /// peer tasks write what is queued and the disk thread finishes its requests, both
    /// within `flush_timeout`, after which what is left is abandoned.
    pub(crate) async fn stop(
        mut self,
        flush_timeout: Duration,
        disk_completions: Option<mpsc::Receiver<DiskCompletion>>,
    ) {
        let deadline = tokio::time::Instant::now() + flush_timeout.to_std();
        self.shutdown.send_replace(true);
        let accept_done = drain_before(&mut self.accept_tasks, deadline).await;
        let peers_done = drain_before(&mut self.peer_tasks, deadline).await;
        if !(accept_done && peers_done) {
            self.logger.log(format_args!(
                "network tasks did not finish within {flush_timeout}: aborted"
            ));
        }
        self.accept_tasks.shutdown().await;
        self.peer_tasks.shutdown().await;
        let Some(mut completions) = disk_completions else {
            return;
        };
        // The IO thread releases the directory lock and then drops its sender when it has
        // finished every request, which closes this channel; the completions themselves are
        // stale now and are discarded.
        let drained = tokio::time::timeout_at(deadline, async {
            while completions.recv().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.logger.log(format_args!(
                "the disk thread did not finish within {flush_timeout}: left to finish alone"
            ));
            return;
        }
        // With the channel closed the thread has nothing left but to return, so joining it
        // blocks this worker for a moment at most.
        if let Some(thread) = self.disk_thread.take()
            && thread.join().is_err()
        {
            self.logger.log(format_args!("the disk thread panicked"));
        }
    }
}

/// Waits for every task of `tasks` to end, until `deadline`; true if they all did.
async fn drain_before(tasks: &mut JoinSet<()>, deadline: tokio::time::Instant) -> bool {
    let joined = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    joined.is_ok()
}
