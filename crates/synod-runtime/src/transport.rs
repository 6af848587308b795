//! The incoming half of the TCP transport, and the counters and error log both halves share.
//!
//! Each node dials every peer it sends to (see `peer.rs`), so a connection carries traffic in
//! one direction only: the dialer sends a hello and then frames, the acceptor only reads. The
//! accept loop gives every connection a reader task; the reader checks the hello, decodes
//! frames and hands them to the node loop through the bounded inbound channel. Bad bytes end
//! only the connection that sent them: the error names the remote address and the node the
//! connection claimed to be, it is counted and logged, and the node keeps serving.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use synod_actor::Inbound;
use synod_core::{Duration, Instant, NodeId};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use synod_resilience::{BreakerState, Rejected};

use crate::clock::Clock;
use crate::frame::{self, FrameError, Hello};
use crate::peer_breaker::PeerBreaker;
use crate::record::{BoundedLog, Logger, lock};

/// How many bytes a reader asks the socket for at a time.
const READ_CHUNK_SIZE: usize = 64 * 1024;
/// How long the accept loop pauses after a failed accept (for example, out of file
/// descriptors), so that a persistent failure does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Live counters of one peer (or of the connections that never identified themselves).
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    connections: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    write_failures: AtomicU64,
    frames_lost: AtomicU64,
    malformed_frames: AtomicU64,
    queue_full_drops: AtomicU64,
    refused_connections: AtomicU64,
    breaker_rejections: AtomicU64,
    /// Whether the peer answers; `None`: no breaker (frames are always queued).
    breaker: Mutex<Option<PeerBreaker>>,
}

/// A snapshot of one peer's counters, for reports and status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub frames_sent_count: u64,
    pub bytes_sent_count: u64,
    pub frames_received_count: u64,
    pub bytes_received_count: u64,
    /// Outgoing connections established.
    pub connections_count: u64,
    /// Outgoing connections established after an earlier one was lost.
    pub reconnects_count: u64,
    pub connect_failures_count: u64,
    /// Outgoing connections the peer closed or that broke.
    pub disconnects_count: u64,
    pub write_failures_count: u64,
    /// Frames that were written into a connection that then failed.
    pub frames_lost_count: u64,
    /// Incoming connections closed because of malformed bytes.
    pub malformed_frames_count: u64,
    /// Sends refused because the peer's queue was full.
    pub queue_full_drops_count: u64,
    /// Incoming connections refused before any frame (bad hello, too many connections).
    pub refused_connections_count: u64,
    /// The peer's circuit breaker (`None`: none configured).
    pub breaker_state: Option<BreakerState>,
    /// Frames refused because the peer's breaker was open.
    pub breaker_rejections_count: u64,
    /// Times the peer's breaker opened.
    pub breaker_opened_count: u64,
}

pub(crate) fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

impl PeerCounters {
    pub(crate) fn count_sent(&self, frames: u64, bytes: u64) {
        add(&self.frames_sent, frames);
        add(&self.bytes_sent, bytes);
    }

    pub(crate) fn count_connection(&self, reconnect: bool) {
        add(&self.connections, 1);
        if reconnect {
            add(&self.reconnects, 1);
        }
    }

    pub(crate) fn count_connect_failure(&self) {
        add(&self.connect_failures, 1);
    }

    pub(crate) fn count_disconnect(&self) {
        add(&self.disconnects, 1);
    }

    pub(crate) fn count_write_failure(&self, frames_lost: u64) {
        add(&self.write_failures, 1);
        add(&self.frames_lost, frames_lost);
    }

    pub(crate) fn count_queue_full(&self) {
        add(&self.queue_full_drops, 1);
    }

    /// Gives the peer a circuit breaker (before the node runs).
    pub(crate) fn install_breaker(&self, breaker: PeerBreaker) {
        *lock(&self.breaker) = Some(breaker);
    }

    /// Whether a frame may go to the peer at `now` (see [`PeerBreaker::admit`]); a refusal
    /// is counted.
    pub(crate) fn admit(&self, now: Instant, refusable: bool) -> Result<(), Rejected> {
        let mut breaker = lock(&self.breaker);
        let Some(breaker) = breaker.as_mut() else {
            return Ok(());
        };
        let admitted = breaker.admit(now, refusable);
        if admitted.is_err() {
            add(&self.breaker_rejections, 1);
        }
        admitted
    }

    /// A frame arrived from the peer.
    pub(crate) fn heard(&self, now: Instant) {
        if let Some(breaker) = lock(&self.breaker).as_mut() {
            breaker.heard(now);
        }
    }

    /// A connection to the peer failed.
    pub(crate) fn connection_failed(&self, now: Instant) {
        if let Some(breaker) = lock(&self.breaker).as_mut() {
            breaker.connection_failed(now);
        }
    }

    pub(crate) fn snapshot(&self, now: Instant) -> PeerStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (breaker_state, breaker_opened_count) = match lock(&self.breaker).as_mut() {
            Some(breaker) => (
                Some(breaker.state(now)),
                breaker.stats().transitions_to_open,
            ),
            None => (None, 0),
        };
        PeerStats {
            frames_sent_count: read(&self.frames_sent),
            bytes_sent_count: read(&self.bytes_sent),
            frames_received_count: read(&self.frames_received),
            bytes_received_count: read(&self.bytes_received),
            connections_count: read(&self.connections),
            reconnects_count: read(&self.reconnects),
            connect_failures_count: read(&self.connect_failures),
            disconnects_count: read(&self.disconnects),
            write_failures_count: read(&self.write_failures),
            frames_lost_count: read(&self.frames_lost),
            malformed_frames_count: read(&self.malformed_frames),
            queue_full_drops_count: read(&self.queue_full_drops),
            refused_connections_count: read(&self.refused_connections),
            breaker_state,
            breaker_rejections_count: read(&self.breaker_rejections),
            breaker_opened_count,
        }
    }
}

/// Which way the failed connection went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A peer connected to this node.
    Incoming,
    /// This node connected to a peer.
    Outgoing,
}

/// What went wrong on one connection.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PeerErrorKind {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the hello claims node {claimed}, which is not in this node's peer list: refused")]
    UnknownNode { claimed: NodeId },
    #[error("the hello is addressed to node {to}, but this is node {this}: refused")]
    WrongDestination { to: NodeId, this: NodeId },
    #[error("a frame claims to come from {frame_from}, but the connection's hello said otherwise")]
    SenderMismatch { frame_from: NodeId },
    #[error("no hello within {timeout}: closed")]
    HelloTimeout { timeout: Duration },
    #[error("{connections_max} connections are already open (connections_max): refused")]
    TooManyConnections { connections_max: usize },
    #[error("read failed: {message}")]
    Read { message: String },
    #[error("connect failed: {message}")]
    Connect { message: String },
    #[error("write failed: {message}")]
    Write { message: String },
}

/// A connection-level error that names the peer: its address and the node it claimed to be.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub struct PeerError {
    pub direction: Direction,
    pub remote: SocketAddr,
    /// The node the connection claimed to be in its hello (incoming) or the node dialed
    /// (outgoing); `None` when no valid hello arrived.
    pub claimed_node: Option<NodeId>,
    pub kind: PeerErrorKind,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.direction, self.claimed_node) {
            (Direction::Incoming, Some(node)) => {
                write!(f, "connection from {} (claims {node})", self.remote)?;
            }
            (Direction::Incoming, None) => {
                write!(f, "connection from {} (no valid hello)", self.remote)?;
            }
            (Direction::Outgoing, Some(node)) => {
                write!(f, "connection to {node} at {}", self.remote)?;
            }
            (Direction::Outgoing, None) => write!(f, "connection to {}", self.remote)?,
        }
        write!(f, ": {}", self.kind)
    }
}

/// A network error with the node's clock reading when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkErrorRecord {
    pub at: Instant,
    pub error: PeerError,
}

/// State both halves of the transport share with the node loop and with node handles.
#[derive(Debug)]
pub(crate) struct TransportShared {
    pub(crate) node: NodeId,
    pub(crate) clock: Clock,
    pub(crate) logger: Logger,
    /// Fixed when the node starts running; a reader looks its peer up once, after the hello.
    pub(crate) peers: Mutex<BTreeMap<NodeId, Arc<PeerCounters>>>,
    /// Connections that closed before a valid hello named their node.
    pub(crate) unidentified: PeerCounters,
    pub(crate) errors: Mutex<BoundedLog<NetworkErrorRecord>>,
}

impl TransportShared {
    pub(crate) fn new(
        node: NodeId,
        clock: Clock,
        logger: Logger,
        errors_capacity: usize,
    ) -> TransportShared {
        TransportShared {
            node,
            clock,
            logger,
            peers: Mutex::new(BTreeMap::new()),
            unidentified: PeerCounters::default(),
            errors: Mutex::new(BoundedLog::new(errors_capacity)),
        }
    }

    pub(crate) fn counters_of(&self, node: NodeId) -> Option<Arc<PeerCounters>> {
        lock(&self.peers).get(&node).cloned()
    }

    /// Logs and keeps an error for the report.
    pub(crate) fn record(&self, error: PeerError) {
        self.logger.log(format_args!("{error}"));
        let record = NetworkErrorRecord {
            at: self.clock.now(),
            error,
        };
        lock(&self.errors).push(record);
    }

    pub(crate) fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        let peers = lock(&self.peers);
        peers
            .iter()
            .map(|(node, counters)| (*node, counters.snapshot(self.clock.now())))
            .collect()
    }

    pub(crate) fn errors(&self) -> Vec<NetworkErrorRecord> {
        lock(&self.errors).iter().cloned().collect()
    }
}

/// What the accept loop and its readers need.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) shared: Arc<TransportShared>,
    pub(crate) inbound: mpsc::Sender<Inbound>,
    pub(crate) hello_timeout: Duration,
    pub(crate) stall_timeout: Duration,
    pub(crate) connections_max: usize,
}

/// Makes a connection that a partition cut fail within about `stall_timeout` instead of
/// retransmitting for many minutes: written bytes unacknowledged for that long abort it
/// (TCP_USER_TIMEOUT), and an idle one is probed by keepalives within that span. The
/// dialer then dials again and the acceptor's reader ends, so that after a partition heals
/// a fresh connection carries the traffic. Where the system lacks an option, the
/// connection keeps the system's defaults.
pub(crate) fn bound_stalls(stream: &TcpStream, stall_timeout: Duration) {
    let socket = socket2::SockRef::from(stream);
    let stall = stall_timeout.to_std();
    let probe_interval = (stall / 4).max(std::time::Duration::from_millis(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_interval)
        .with_interval(probe_interval)
        .with_retries(4);
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = socket.set_tcp_user_timeout(Some(stall));
}

/// Accepts connections until shutdown, each served by its own reader task. The readers are
/// aborted when this task ends (or is aborted), so no connection outlives the node.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    incoming: Arc<Incoming>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut readers = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished readers, so the connection bound counts live connections only.
        while readers.try_join_next().is_some() {}
        match accepted {
            Ok((stream, remote)) => {
                if readers.len() >= incoming.connections_max {
                    add(&incoming.shared.unidentified.refused_connections, 1);
                    incoming.shared.record(PeerError {
                        direction: Direction::Incoming,
                        remote,
                        claimed_node: None,
                        kind: PeerErrorKind::TooManyConnections {
                            connections_max: incoming.connections_max,
                        },
                    });
                    continue;
                }
                readers.spawn(serve_connection(incoming.clone(), stream, remote));
            }
            Err(error) => {
                let logger = incoming.shared.logger;
                logger.log(format_args!("accept failed: {error}; retrying"));
                tokio::time::sleep(ACCEPT_RETRY_DELAY.to_std()).await;
            }
        }
    }
    readers.shutdown().await;
}

/// Reads one incoming connection until it ends, fails or sends bad bytes.
async fn serve_connection(incoming: Arc<Incoming>, mut stream: TcpStream, remote: SocketAddr) {
    let shared = &incoming.shared;
    bound_stalls(&stream, incoming.stall_timeout);
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_SIZE);
    let timeout = incoming.hello_timeout;
    let hello =
        match tokio::time::timeout(timeout.to_std(), read_hello(&mut stream, &mut buffer)).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(kind)) => return refuse(shared, remote, None, kind),
            Err(_elapsed) => {
                return refuse(
                    shared,
                    remote,
                    None,
                    PeerErrorKind::HelloTimeout { timeout },
                );
            }
        };
    if hello.to != shared.node {
        let kind = PeerErrorKind::WrongDestination {
            to: hello.to,
            this: shared.node,
        };
        return refuse(shared, remote, Some(hello.from), kind);
    }
    let counters = match shared.counters_of(hello.from) {
        Some(counters) if hello.from != shared.node => counters,
        _ => {
            let kind = PeerErrorKind::UnknownNode {
                claimed: hello.from,
            };
            return refuse(shared, remote, Some(hello.from), kind);
        }
    };
    let outcome = read_frames(&incoming, &mut stream, &mut buffer, hello.from, &counters).await;
    if let Err(kind) = outcome {
        add(&counters.malformed_frames, u64::from(is_malformed(&kind)));
        shared.record(PeerError {
            direction: Direction::Incoming,
            remote,
            claimed_node: Some(hello.from),
            kind,
        });
    }
}

fn is_malformed(kind: &PeerErrorKind) -> bool {
    matches!(
        kind,
        PeerErrorKind::Frame(_) | PeerErrorKind::SenderMismatch { .. }
    )
}

/// Counts and records a connection refused before its first frame; dropping the stream by
/// returning closes it.
fn refuse(
    shared: &TransportShared,
    remote: SocketAddr,
    claimed_node: Option<NodeId>,
    kind: PeerErrorKind,
) {
    add(&shared.unidentified.refused_connections, 1);
    add(
        &shared.unidentified.malformed_frames,
        u64::from(is_malformed(&kind)),
    );
    shared.record(PeerError {
        direction: Direction::Incoming,
        remote,
        claimed_node,
        kind,
    });
}

/// Reads more bytes into `buffer`; `Ok(false)` at the end of the stream.
async fn fill(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<bool, PeerErrorKind> {
    buffer.reserve(READ_CHUNK_SIZE);
    match stream.read_buf(buffer).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => Err(PeerErrorKind::Read {
            message: error.to_string(),
        }),
    }
}

async fn read_hello(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<Hello, PeerErrorKind> {
    loop {
        if let Some(hello) = frame::decode_hello(buffer)? {
            return Ok(hello);
        }
        if !fill(stream, buffer).await? {
            // A stream that ends before a whole hello is truncated, even when it is empty.
            let received = buffer.len();
            let expected = frame::LENGTH_PREFIX_SIZE + frame::HELLO_BODY_SIZE;
            return Err(FrameError::Truncated { received, expected }.into());
        }
    }
}

/// Decodes frames and hands them to the node loop until the stream ends or fails.
async fn read_frames(
    incoming: &Incoming,
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    peer: NodeId,
    counters: &PeerCounters,
) -> Result<(), PeerErrorKind> {
    loop {
        while let Some(frame) = frame::decode_frame(buffer)? {
            if frame.from != peer {
                return Err(PeerErrorKind::SenderMismatch {
                    frame_from: frame.from,
                });
            }
            add(&counters.frames_received, 1);
            counters.heard(incoming.shared.clock.now());
            let size = frame::LENGTH_PREFIX_SIZE + frame::FRAME_HEADER_SIZE + frame.payload.len();
            add(&counters.bytes_received, size as u64);
            let inbound = Inbound {
                from: frame.from,
                port: frame.port,
                payload: frame.payload,
            };
            // Waiting here when the node loop is behind is the backpressure the transport
            // wants: this reader stops reading, TCP's window closes, the peer's writer
            // blocks and its bounded queue fills, so the overload surfaces at the sender as
            // counted QueueFull refusals instead of as silent drops of accepted frames.
            if incoming.inbound.send(inbound).await.is_err() {
                return Ok(());
            }
        }
        if !fill(stream, buffer).await? {
            frame::check_end_of_stream(buffer)?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bounded_connection_gives_up_unacknowledged_bytes_and_probes_when_idle() {
        // Checks that bound_stalls sets the options that end a connection a partition cut:
        // TCP_USER_TIMEOUT at the stall timeout (on Linux) and keepalive probes.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let stream = TcpStream::connect(address).await.expect("connect");
        bound_stalls(&stream, Duration::from_millis(800));
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().expect("keepalive"));
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().expect("user timeout"),
            Some(std::time::Duration::from_millis(800))
        );
    }
}
