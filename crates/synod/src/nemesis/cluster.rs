//! The cluster under test: N `synod server` processes whose peer traffic goes through the
//! run's network (`net.rs`: proxies on loopback or namespaces), and the process-level
//! faults (kill -9 and restart, SIGSTOP and SIGCONT). Every process it started is killed by
//! pid when it is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use synod_client::{Connection, parse_status};

use super::net::{Network, NodeSetup};
use crate::server::{MemberAddresses, config_text, pings, spawn_server};

/// How long a node may take to answer PING after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a status query may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// How far behind the leader a voter of a settled cluster may be, in entries.
const SETTLED_LAG_ENTRIES_MAX: u64 = 256;

/// The election timeout of every node: short, so that a fault shows within a second or two.
pub const ELECTION_TIMEOUT_MS: u64 = 300;
/// The lease's clock drift bound of every node (written out, so clock faults know it).
pub const LEASE_DRIFT_BOUND_PPM: u64 = 10_000;

/// Raft timings, the lease bound, clock and disk faults allowed (`POST /faults/clock`,
/// `/faults/disk`), and the
/// request timeout.
fn raft_section() -> String {
    format!(
        "\n[raft]\nelection_timeout_ms = {ELECTION_TIMEOUT_MS}\nheartbeat_interval_ms = 50\n\
         lease_drift_bound_ppm = {LEASE_DRIFT_BOUND_PPM}\n\n[faults]\nclock = true\ndisk = true\n\
         \n[limits]\nrequest_timeout_ms = 1500\n"
    )
}

/// One node's process and files.
#[derive(Debug)]
pub struct Node {
    pub id: u64,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    pub peer: SocketAddr,
    pub dir: PathBuf,
    /// The command words before `synod server` (`ip netns exec NS` on the namespace path).
    launcher: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("synod.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("synod.log")
    }
}

/// The processes of the cluster.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    exe: PathBuf,
    /// Nodes 1..=voters_count vote from the start; the others join when added as learners.
    voters_count: u64,
    /// Data directories other than `node-N/data` (the disk fault's tmpfs).
    data_dirs: BTreeMap<u64, PathBuf>,
}

/// Sends `signal` (a `kill` option such as `-STOP`) to `pid`; true when delivered.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

impl Cluster {
    /// The nodes where the network placed them (`Network::start`).
    pub fn plan(setups: Vec<NodeSetup>, dir: &Path) -> anyhow::Result<Cluster> {
        let exe = std::env::current_exe().context("cannot find the synod executable")?;
        let nodes: Vec<Node> = setups
            .into_iter()
            .map(|setup| Node {
                id: setup.id,
                resp: setup.resp,
                http: setup.http,
                peer: setup.peer,
                dir: dir.join(format!("node-{}", setup.id)),
                launcher: setup.launcher,
                child: None,
                paused: false,
            })
            .collect();
        let voters_count = nodes.len() as u64;
        Ok(Cluster {
            nodes,
            exe,
            voters_count,
            data_dirs: BTreeMap::new(),
        })
    }

    /// Only nodes 1..=`count` vote from the start (before `start`).
    pub fn set_voters_count(&mut self, count: u64) {
        self.voters_count = count;
    }

    /// Node `id` keeps its data in `path` instead of `node-N/data` (before `start`).
    pub fn set_data_dir(&mut self, id: u64, path: PathBuf) {
        self.data_dirs.insert(id, path);
    }

    pub fn resp_addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.resp.to_string())
            .collect()
    }

    /// Writes every node's config (peers as the network says) and starts every node.
    pub fn start(&mut self, network: &Network) -> anyhow::Result<()> {
        for index in 0..self.nodes.len() {
            let node = &self.nodes[index];
            let mut members = Vec::new();
            for other in &self.nodes {
                let peer = match other.id == node.id {
                    true => other.peer,
                    false => network
                        .peer_address(node.id, other.id)
                        .context("every link has a peer address")?,
                };
                members.push(MemberAddresses {
                    id: other.id,
                    peer,
                    resp: other.resp,
                    http: other.http,
                    voter: other.id <= self.voters_count,
                });
            }
            std::fs::create_dir_all(&node.dir)
                .with_context(|| format!("cannot create {}", node.dir.display()))?;
            let comment = "Written by `synod nemesis`: peers are the harness's proxies or \
                           namespace addresses.";
            let data = self.data_dirs.get(&node.id).cloned();
            let data = data.unwrap_or_else(|| node.dir.join("data"));
            let mut text = config_text(comment, node.id, &data, &members)?;
            text.push_str(&raft_section());
            std::fs::write(node.config_path(), text)
                .with_context(|| format!("cannot write {}", node.config_path().display()))?;
            self.spawn(index)?;
        }
        Ok(())
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let child = spawn_server(
            &node.launcher,
            &self.exe,
            &node.config_path(),
            &node.log_path(),
        )?;
        std::fs::write(node.dir.join("synod.pid"), format!("{}\n", child.id()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Waits until every running node answers PING.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &mut self.nodes {
            if node.child.is_none() {
                continue;
            }
            while !pings(node.resp) {
                if let Some(child) = node.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    bail!(
                        "node {} exited ({status}) while starting: see {}",
                        node.id,
                        node.log_path().display()
                    );
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {} did not answer on {} within {} s: see {}",
                        node.id,
                        node.resp,
                        START_TIMEOUT.as_secs(),
                        node.log_path().display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The leader the running, unpaused nodes agree on at the highest term they report.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for node in &self.nodes {
            if node.child.is_none() || node.paused {
                continue;
            }
            let Some(status) = status_of(&node.resp.to_string()).await else {
                continue;
            };
            if let Some(leader) = status.leader
                && best.is_none_or(|(term, _)| status.term > term)
            {
                best = Some((status.term, leader));
            }
        }
        best.map(|(_, leader)| leader)
    }

    /// Why the cluster is not settled, or `None` when it is: every running node answers,
    /// every member says it is healthy (not degraded, not read-only), the leader they
    /// name leads, and it hears every voter and finds none more than
    /// `SETTLED_LAG_ENTRIES_MAX` behind.
    pub async fn unsettled(&self) -> Option<String> {
        let mut best: Option<(u64, u64)> = None;
        let mut statuses = BTreeMap::new();
        for node in &self.nodes {
            if node.child.is_none() || node.paused {
                continue;
            }
            let Some(status) = status_of(&node.resp.to_string()).await else {
                return Some(format!("node {} does not answer", node.id));
            };
            if let Some(leader) = status.leader
                && best.is_none_or(|(term, _)| status.term > term)
            {
                best = Some((status.term, leader));
            }
            statuses.insert(node.id, status);
        }
        let Some((_, leader)) = best else {
            return Some("no node knows a leader".into());
        };
        let Some(status) = statuses
            .get(&leader)
            .filter(|status| status.role == "leader")
        else {
            return Some(format!(
                "node {leader}, named leader, does not say it leads"
            ));
        };
        // A spare outside the configuration hears no leader and says so; members (the
        // leader and the followers it replicates to) may not.
        for (id, member) in &statuses {
            let is_member =
                *id == leader || status.followers.iter().any(|follower| follower.node == *id);
            if let (true, Some(reason)) = (is_member, &member.degraded) {
                return Some(format!("node {id} is degraded: {reason}"));
            }
        }
        let voters = status.followers.iter().filter(|follower| follower.voter);
        for follower in voters {
            if !follower.active {
                return Some(format!("the leader has not heard voter {}", follower.node));
            }
            if follower.lag_entries > SETTLED_LAG_ENTRIES_MAX {
                return Some(format!(
                    "voter {} is {} entries behind the leader",
                    follower.node, follower.lag_entries
                ));
            }
        }
        None
    }

    /// Waits until some node reports a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                bail!("no leader within {} s", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn index(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .expect("a member id")
    }

    /// kill -9 of node `id` (no-op when it is not running).
    pub fn kill(&mut self, id: u64) {
        let index = self.index(id);
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Starts node `id` again on its data directory (no-op when it is running).
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let index = self.index(id);
        if self.nodes[index].child.is_some() {
            return Ok(());
        }
        self.spawn(index)
    }

    /// SIGSTOP of node `id`.
    pub fn pause(&mut self, id: u64) {
        let index = self.index(id);
        let node = &mut self.nodes[index];
        if let Some(pid) = node.pid() {
            node.paused = signal(pid, "-STOP");
        }
    }

    /// SIGCONT of node `id`.
    pub fn resume(&mut self, id: u64) {
        let index = self.index(id);
        let node = &mut self.nodes[index];
        if let Some(pid) = node.pid()
            && node.paused
        {
            signal(pid, "-CONT");
            node.paused = false;
        }
    }

    /// Nodes that exited without being killed by the harness: (id, status).
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push((node.id, status.to_string()));
                node.child = None;
            }
        }
        exited
    }
}

impl Drop for Cluster {
    /// Kills every process the harness started, by pid (a paused one is continued first so
    /// that it can die at once).
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if node.paused {
                    signal(child.id(), "-CONT");
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A node's answer to SYNOD.STATUS at `address`, or `None` when it does not answer in time.
pub(crate) async fn status_of(address: &str) -> Option<synod_client::ClusterStatus> {
    let query = async {
        let mut connection = Connection::connect(address, STATUS_TIMEOUT).await.ok()?;
        let reply = connection.call(&[b"SYNOD.STATUS"]).await.ok()?;
        parse_status(&reply).ok()
    };
    tokio::time::timeout(STATUS_TIMEOUT * 2, query)
        .await
        .ok()
        .flatten()
}
