//! The network between the nodes, on one of two paths: the harness's TCP proxies on loopback
//! (`proxy.rs`, any user) or Linux network namespaces with iptables (`netns.rs`, root). The
//! faults see only this: a directed link's mode, a reset, a heal, and the address a node
//! dials for a peer.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};

use super::netns::{self, Netns};
use super::proxy::{LinkMode, Proxies};

/// `--net`: which path carries the peer traffic.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// A fault-injecting TCP proxy per directed link, on loopback.
    Proxy,
    /// A network namespace per node, partitions with iptables (root only).
    Netns,
    /// netns when running as root with `ip`, `ss` and `iptables` installed; else proxy.
    Auto,
}

/// Where one node listens and how it is started.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub id: u64,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    pub peer: SocketAddr,
    /// The command words put before `synod server ...` (empty, or `ip netns exec NS`).
    pub launcher: Vec<String>,
}

/// The network of one run.
#[derive(Debug)]
pub enum Network {
    Proxy(Proxies),
    Namespaces(Netns),
}

/// A free port on loopback now (another process may take it before the node binds it; the
/// node then fails to start and the harness reports it).
fn free_address() -> anyhow::Result<SocketAddr> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a port on 127.0.0.1")?;
    Ok(listener.local_addr()?)
}

impl Network {
    /// Builds the network for nodes 1..=`nodes_count` and says where each node listens.
    /// `auto` falls back to the proxies when the namespaces cannot be built (not root, a
    /// tool missing, no CAP_NET_ADMIN in a container); `netns` fails instead.
    pub async fn start(
        mode: NetMode,
        nodes_count: u64,
    ) -> anyhow::Result<(Network, Vec<NodeSetup>)> {
        match (mode, netns::unavailable_reason()) {
            (NetMode::Proxy, _) => start_proxies(nodes_count).await,
            (NetMode::Netns, None) => start_namespaces(nodes_count),
            (NetMode::Netns, Some(reason)) => bail!("--net netns cannot run here: {reason}"),
            (NetMode::Auto, Some(reason)) => {
                eprintln!("nemesis: network namespaces unavailable ({reason}); using proxies");
                start_proxies(nodes_count).await
            }
            (NetMode::Auto, None) => match start_namespaces(nodes_count) {
                Ok(started) => Ok(started),
                Err(error) => {
                    eprintln!("nemesis: network namespaces failed ({error:#}); using proxies");
                    start_proxies(nodes_count).await
                }
            },
        }
    }

    /// The address node `from` dials to reach node `to`'s peer listener.
    pub fn peer_address(&self, from: u64, to: u64) -> Option<SocketAddr> {
        match self {
            Network::Proxy(proxies) => proxies.address(from, to),
            Network::Namespaces(netns) => Some(netns.node_addresses(to).2),
        }
    }

    /// Drops or passes the directed link `from -> to`.
    pub fn set_mode(&mut self, from: u64, to: u64, mode: LinkMode) {
        match self {
            Network::Proxy(proxies) => proxies.set_mode(from, to, mode),
            Network::Namespaces(netns) => netns.set_mode(from, to, mode),
        }
    }

    /// Closes every open connection of the link `from -> to` (the nodes dial again).
    pub fn reset(&mut self, from: u64, to: u64) {
        match self {
            Network::Proxy(proxies) => proxies.reset(from, to),
            Network::Namespaces(netns) => netns.reset(from, to),
        }
    }

    /// Every link up again. Fails when the namespace path could not apply a rule.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        match self {
            Network::Proxy(proxies) => {
                proxies.heal();
                Ok(())
            }
            Network::Namespaces(netns) => netns.heal(),
        }
    }

    /// Stops the proxies, or removes the namespaces (the nodes must be dead by then).
    pub async fn shutdown(self) {
        match self {
            Network::Proxy(proxies) => proxies.shutdown().await,
            Network::Namespaces(netns) => drop(netns),
        }
    }
}

/// A namespace per node (`netns.rs`); everything built is removed again on failure.
fn start_namespaces(nodes_count: u64) -> anyhow::Result<(Network, Vec<NodeSetup>)> {
    if nodes_count > netns::NODES_MAX {
        bail!("--net netns supports at most {} nodes", netns::NODES_MAX);
    }
    let netns = Netns::start(nodes_count)?;
    let plan = netns.plan();
    eprintln!(
        "nemesis: network: namespaces {} .. {}, bridge {} on {}/24",
        plan.namespace(1),
        plan.namespace(nodes_count),
        plan.bridge(),
        plan.bridge_ip()
    );
    let setups = (1..=nodes_count)
        .map(|id| {
            let (resp, http, peer) = netns.node_addresses(id);
            NodeSetup {
                id,
                resp,
                http,
                peer,
                launcher: plan.launcher(id),
            }
        })
        .collect();
    Ok((Network::Namespaces(netns), setups))
}

/// A proxy per directed link on loopback (`proxy.rs`), the nodes on free loopback ports.
async fn start_proxies(nodes_count: u64) -> anyhow::Result<(Network, Vec<NodeSetup>)> {
    let mut setups = Vec::new();
    for id in 1..=nodes_count {
        setups.push(NodeSetup {
            id,
            resp: free_address()?,
            http: free_address()?,
            peer: free_address()?,
            launcher: Vec::new(),
        });
    }
    let peers: Vec<(u64, SocketAddr)> = setups.iter().map(|node| (node.id, node.peer)).collect();
    let proxies = Proxies::start(&peers).await?;
    eprintln!("nemesis: network: a proxy per directed link on 127.0.0.1");
    Ok((Network::Proxy(proxies), setups))
}
