//! The fault-injecting TCP proxy: one listener per directed link i->j between two nodes.
//!
//! synod's transport uses one connection per direction (node i dials j for i->j messages and
//! j never writes back), so node i's config names the proxy of link i->j as j's peer address
//! and the proxy forwards to j's real peer listener. A link is `Up` (bytes flow both ways) or
//! `Dropped` (a black hole: open connections stay open but their bytes are read and discarded,
//! new connections are accepted and closed at once). `reset` closes every open connection of
//! the link. A connection that discarded bytes is closed when its link heals, since the frame
//! it was in the middle of is gone and the receiver would read garbage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Open connections of one link at once; more are accepted and closed.
const CONNECTIONS_PER_LINK_MAX: usize = 16;
/// The size of each direction's copy buffer.
const COPY_BUFFER_SIZE: usize = 16 * 1024;
/// How long the proxy waits for the node behind it to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long shutdown waits for the link tasks to end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a link carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Up,
    Dropped,
}

/// What every task of a link watches: the mode, a counter bumped by each reset, and the
/// shutdown flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkState {
    mode: LinkMode,
    resets_count: u64,
    stopping: bool,
}

/// One directed link `from -> to` and its listener.
#[derive(Debug)]
pub struct Link {
    pub from: u64,
    pub to: u64,
    /// Where node `from` dials to reach node `to`.
    pub listen: SocketAddr,
    state: watch::Sender<LinkState>,
}

/// Every link of a cluster, and the tasks that serve them.
#[derive(Debug)]
pub struct Proxies {
    links: Vec<Link>,
    tasks: JoinSet<()>,
}

impl Proxies {
    /// Binds a listener on loopback for every ordered pair of distinct members in `members`
    /// (id and real peer address) and starts forwarding.
    pub async fn start(members: &[(u64, SocketAddr)]) -> anyhow::Result<Proxies> {
        let mut proxies = Proxies {
            links: Vec::new(),
            tasks: JoinSet::new(),
        };
        for &(from, _) in members {
            for &(to, upstream) in members {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .context("cannot bind a proxy listener on 127.0.0.1")?;
                let listen = listener.local_addr()?;
                let (state, watcher) = watch::channel(LinkState {
                    mode: LinkMode::Up,
                    resets_count: 0,
                    stopping: false,
                });
                proxies
                    .tasks
                    .spawn(accept_loop(listener, upstream, watcher));
                proxies.links.push(Link {
                    from,
                    to,
                    listen,
                    state,
                });
            }
        }
        Ok(proxies)
    }

    /// The proxy address node `from` uses for node `to`.
    pub fn address(&self, from: u64, to: u64) -> Option<SocketAddr> {
        self.link(from, to).map(|link| link.listen)
    }

    fn link(&self, from: u64, to: u64) -> Option<&Link> {
        self.links
            .iter()
            .find(|link| link.from == from && link.to == to)
    }

    pub fn set_mode(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(link) = self.link(from, to) {
            link.state.send_modify(|state| state.mode = mode);
        }
    }

    /// Closes every open connection of the link (the nodes dial again).
    pub fn reset(&self, from: u64, to: u64) {
        if let Some(link) = self.link(from, to) {
            link.state.send_modify(|state| state.resets_count += 1);
        }
    }

    /// Every link up again.
    pub fn heal(&self) {
        for link in &self.links {
            link.state.send_modify(|state| state.mode = LinkMode::Up);
        }
    }

    /// Stops every listener and connection, waiting a bounded time for the tasks to end.
    pub async fn shutdown(mut self) {
        for link in &self.links {
            link.state.send_modify(|state| state.stopping = true);
        }
        let drained = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
    }
}

/// Accepts connections until shutdown; each gets its own task, at most
/// `CONNECTIONS_PER_LINK_MAX` at once.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mut watcher: watch::Receiver<LinkState>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = watcher.wait_for(|state| state.stopping) => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks so the set stays bounded.
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = *watcher.borrow();
        if state.mode == LinkMode::Dropped
            || open.load(Ordering::Relaxed) >= CONNECTIONS_PER_LINK_MAX
        {
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let open = Arc::clone(&open);
        let watcher = watcher.clone();
        connections.spawn(async move {
            forward(stream, upstream, watcher).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Why a forwarded connection should end.
fn should_close(state: &LinkState, resets_at_start: u64, discarded: bool) -> bool {
    state.stopping
        || state.resets_count != resets_at_start
        || (discarded && state.mode == LinkMode::Up)
}

/// Copies bytes between the dialing node and the node behind the proxy until either side
/// closes, the link is reset, or the proxy stops. While the link is dropped, bytes are read
/// and discarded in both directions.
async fn forward(client: TcpStream, upstream: SocketAddr, mut watcher: watch::Receiver<LinkState>) {
    let connected = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream));
    let Ok(Ok(server)) = connected.await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let resets_at_start = watcher.borrow().resets_count;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up_buffer = vec![0u8; COPY_BUFFER_SIZE];
    let mut down_buffer = vec![0u8; COPY_BUFFER_SIZE];
    let mut discarded = false;
    // Bounded by the connection's life: every pass reads bytes or ends it.
    loop {
        if should_close(&watcher.borrow(), resets_at_start, discarded) {
            return;
        }
        tokio::select! {
            changed = watcher.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = client_read.read(&mut up_buffer) => {
                let Ok(count @ 1..) = read else { return };
                if watcher.borrow().mode == LinkMode::Dropped {
                    discarded = true;
                } else if server_write.write_all(&up_buffer[..count]).await.is_err() {
                    return;
                }
            }
            read = server_read.read(&mut down_buffer) => {
                let Ok(count @ 1..) = read else { return };
                if watcher.borrow().mode == LinkMode::Dropped {
                    discarded = true;
                } else if client_write.write_all(&down_buffer[..count]).await.is_err() {
                    return;
                }
            }
        }
    }
}
