//! The outgoing half of the TCP transport: one task and one bounded queue per peer.
//!
//! `Services::send_to_node` puts a frame into the peer's queue with `try_send`, so the node
//! loop never waits for the network; a full queue is a counted `QueueFull`. The task dials
//! the peer when it has something to send, says hello, and writes frames in batches: it takes
//! what is queued (up to a limit), writes it through a buffer and flushes once. When the
//! connection breaks it dials again with exponential backoff and jitter.
//!
//! Each peer has two queues: frames to the configured priority ports (Raft's and the
//! failure detector's, in a synod server) and everything else (client requests forwarded
//! to the leader and their answers). The task always writes what the priority queue holds
//! first, so a backlog of client traffic never delays a heartbeat, an append or its
//! acknowledgement behind it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use synod_actor::Port;
use synod_core::{Duration, NodeId, Prng};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};

use crate::frame::{self, Hello};
use crate::transport::{Direction, PeerCounters, PeerError, PeerErrorKind, TransportShared};

/// The most frames written between two flushes.
pub(crate) const WRITE_BATCH_FRAMES_MAX: usize = 256;
/// The size of the write buffer that gathers a batch of small frames into few system calls.
const WRITE_BUFFER_SIZE: usize = 64 * 1024;

/// One message waiting for its peer's connection.
#[derive(Debug)]
pub(crate) struct OutgoingFrame {
    pub(crate) port: Port,
    pub(crate) payload: Bytes,
}

/// The node loop's side of a peer: its queues and its counters.
#[derive(Debug)]
pub(crate) struct PeerLink {
    pub(crate) queue: mpsc::Sender<OutgoingFrame>,
    /// Frames to the priority ports.
    pub(crate) priority: mpsc::Sender<OutgoingFrame>,
    pub(crate) counters: Arc<PeerCounters>,
}

/// The task's side of a peer's two queues.
#[derive(Debug)]
pub(crate) struct PeerQueues {
    pub(crate) priority: mpsc::Receiver<OutgoingFrame>,
    pub(crate) queue: mpsc::Receiver<OutgoingFrame>,
}

impl PeerQueues {
    /// The next frame, a priority one whenever one is waiting; `None` once the node has
    /// dropped both senders and both queues are drained.
    pub(crate) async fn recv(&mut self) -> Option<OutgoingFrame> {
        tokio::select! {
            biased;
            Some(frame) = self.priority.recv() => Some(frame),
            Some(frame) = self.queue.recv() => Some(frame),
            else => None,
        }
    }

    /// A frame already waiting, a priority one first.
    pub(crate) fn try_recv(&mut self) -> Option<OutgoingFrame> {
        self.priority
            .try_recv()
            .or_else(|_| self.queue.try_recv())
            .ok()
    }
}

/// Delays between connection attempts: doubling from `min` to `max`, each drawn from the
/// upper half of its nominal value so that peers that lost a node at the same moment do not
/// dial it again in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) prng: Prng,
}

impl Backoff {
    /// The delay after the `failures_count`-th failed attempt in a row (counting from 1).
    pub(crate) fn delay(&mut self, failures_count: u32) -> Duration {
        let doublings = failures_count.saturating_sub(1).min(32);
        let nominal = self.min.saturating_mul(1u64 << doublings).min(self.max);
        let half = nominal.as_nanos() / 2;
        Duration::from_nanos(half + self.prng.below(half + 1))
    }
}

/// Why a connection's writing loop ended.
enum StreamEnd {
    /// The node dropped the queue: everything queued was written; the task ends.
    QueueClosed,
    /// The connection broke or the peer closed it; dial again when there is work.
    Disconnected,
}

/// The task that owns one peer's connection.
#[derive(Debug)]
pub(crate) struct PeerSender {
    pub(crate) peer: NodeId,
    pub(crate) address: SocketAddr,
    pub(crate) queue: PeerQueues,
    pub(crate) counters: Arc<PeerCounters>,
    pub(crate) shared: Arc<TransportShared>,
    pub(crate) backoff: Backoff,
    pub(crate) connect_timeout: Duration,
    /// How long written bytes may stay unacknowledged before the connection is given up.
    pub(crate) stall_timeout: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) connected_before: bool,
}

impl PeerSender {
    /// Runs until the node drops the queue (after writing what it holds) or, while not
    /// connected, until shutdown. The loop is driven by queue arrivals: an idle peer costs no
    /// connection attempts.
    pub(crate) async fn run(mut self) {
        while let Some(first) = self.queue.recv().await {
            let Some(stream) = self.connect().await else {
                return;
            };
            match self.stream_frames(stream, first).await {
                StreamEnd::QueueClosed => return,
                StreamEnd::Disconnected => {}
            }
        }
    }

    fn record(&self, kind: PeerErrorKind) {
        self.shared.record(PeerError {
            direction: Direction::Outgoing,
            remote: self.address,
            claimed_node: Some(self.peer),
            kind,
        });
    }

    /// Dials until a connection is up and greeted; `None` on shutdown. Only the first failure
    /// of a streak is logged, so a peer that is down for long does not flood the log.
    async fn connect(&mut self) -> Option<TcpStream> {
        let mut failures_count: u32 = 0;
        loop {
            let attempt = tokio::time::timeout(
                self.connect_timeout.to_std(),
                TcpStream::connect(self.address),
            );
            let result = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stopping| *stopping) => return None,
                result = attempt => result,
            };
            let failure = match result {
                Ok(Ok(stream)) => match self.greet(stream).await {
                    Ok(stream) => return Some(stream),
                    Err(kind) => kind,
                },
                Ok(Err(error)) => PeerErrorKind::Connect {
                    message: error.to_string(),
                },
                Err(_elapsed) => PeerErrorKind::Connect {
                    message: format!("no answer within {}", self.connect_timeout),
                },
            };
            failures_count = failures_count.saturating_add(1);
            self.counters.count_connect_failure();
            self.counters.connection_failed(self.shared.clock.now());
            if failures_count == 1 {
                self.record(failure);
            }
            let delay = self.backoff.delay(failures_count);
            tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stopping| *stopping) => return None,
                () = tokio::time::sleep(delay.to_std()) => {}
            }
        }
    }

    async fn greet(&mut self, mut stream: TcpStream) -> Result<TcpStream, PeerErrorKind> {
        // Frames are small and latency matters more than packet count; the write buffer does
        // the batching.
        let _ = stream.set_nodelay(true);
        crate::transport::bound_stalls(&stream, self.stall_timeout);
        let hello = frame::encode_hello(Hello {
            from: self.shared.node,
            to: self.peer,
        });
        stream
            .write_all(&hello)
            .await
            .map_err(|error| PeerErrorKind::Write {
                message: error.to_string(),
            })?;
        self.counters.count_connection(self.connected_before);
        if self.connected_before {
            let logger = self.shared.logger;
            logger.log(format_args!(
                "reconnected to {} at {}",
                self.peer, self.address
            ));
        }
        self.connected_before = true;
        Ok(stream)
    }

    /// Writes `first` and everything after it until the queue closes or the connection ends.
    async fn stream_frames(&mut self, stream: TcpStream, first: OutgoingFrame) -> StreamEnd {
        let (mut reader, writer) = stream.into_split();
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER_SIZE, writer);
        let mut next = first;
        loop {
            if let Err(kind) = self.write_batch(&mut writer, next).await {
                self.record(kind);
                self.counters.count_disconnect();
                self.counters.connection_failed(self.shared.clock.now());
                return StreamEnd::Disconnected;
            }
            // The acceptor never writes, so any read result (end of stream, an error, or
            // unexpected bytes) means the connection is over. Watching for it lets a dead
            // connection be noticed while idle instead of at the next lost frame.
            let mut probe = [0u8; 1];
            next = tokio::select! {
                frame = self.queue.recv() => match frame {
                    Some(frame) => frame,
                    None => return StreamEnd::QueueClosed,
                },
                _ = reader.read(&mut probe) => {
                    self.counters.count_disconnect();
                    self.counters.connection_failed(self.shared.clock.now());
                    return StreamEnd::Disconnected;
                }
            };
        }
    }

    /// Writes `first` and up to a batch of already queued frames, then flushes once.
    async fn write_batch(
        &mut self,
        writer: &mut BufWriter<OwnedWriteHalf>,
        first: OutgoingFrame,
    ) -> Result<(), PeerErrorKind> {
        let node = self.shared.node;
        let mut frames_count: u64 = 0;
        let mut bytes_count: u64 = 0;
        let mut next = Some(first);
        let mut result = Ok(());
        while let Some(frame) = next.take() {
            let header = frame::encode_frame_header(node, frame.port, &frame.payload);
            frames_count += 1;
            bytes_count += (header.len() + frame.payload.len()) as u64;
            result = async {
                writer.write_all(&header).await?;
                writer.write_all(&frame.payload).await
            }
            .await;
            if result.is_err() || frames_count as usize >= WRITE_BATCH_FRAMES_MAX {
                break;
            }
            next = self.queue.try_recv();
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        match result {
            Ok(()) => {
                self.counters.count_sent(frames_count, bytes_count);
                Ok(())
            }
            Err(error) => {
                self.counters.count_write_failure(frames_count);
                Err(PeerErrorKind::Write {
                    message: error.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        // Checks each delay lies in [nominal/2, nominal] for nominal = 50ms doubling to 2s.
        let mut backoff = Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(2),
            prng: Prng::from_seed(11),
        };
        let nominal_ms = [50, 100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000];
        for (index, nominal) in nominal_ms.into_iter().enumerate() {
            let failures_count = index as u32 + 1;
            let delay = backoff.delay(failures_count).as_nanos();
            let nominal = Duration::from_millis(nominal).as_nanos();
            assert!(
                (nominal / 2..=nominal).contains(&delay),
                "failure {failures_count}: {delay}ns"
            );
        }
        assert!(backoff.delay(u32::MAX) <= Duration::from_secs(2));
    }

    fn frame(port: u16, byte: u8) -> OutgoingFrame {
        OutgoingFrame {
            port: Port(port),
            payload: Bytes::from(vec![byte]),
        }
    }

    #[tokio::test]
    async fn priority_frames_go_first_and_both_queues_drain_before_the_end() {
        // Checks the order the peer task writes in: every frame waiting in the priority
        // queue before any bulk frame (whatever their arrival order), bulk frames in
        // arrival order, and the end only once both queues are closed and empty.
        let (bulk_sender, queue) = mpsc::channel(8);
        let (priority_sender, priority) = mpsc::channel(8);
        let mut queues = PeerQueues { priority, queue };
        bulk_sender.try_send(frame(3, 1)).unwrap();
        bulk_sender.try_send(frame(3, 2)).unwrap();
        priority_sender.try_send(frame(2, 3)).unwrap();
        priority_sender.try_send(frame(2, 4)).unwrap();
        drop((bulk_sender, priority_sender));
        let first = queues.recv().await.expect("a frame");
        let mut order = vec![first.payload[0]];
        while let Some(next) = queues.try_recv() {
            order.push(next.payload[0]);
        }
        assert_eq!(order, vec![3, 4, 1, 2]);
        assert!(queues.recv().await.is_none());
    }
}
