//! The faults and their schedule: what each fault does to the cluster and how it is healed,
//! and a seeded random sequence of them.

use std::fmt;

use synod_core::Prng;

use super::cluster::Cluster;
use super::net::Network;
use super::proxy::LinkMode;

/// The families of fault this module injects (`schedule::Kind` is what `--faults` selects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 of a node (or of the leader), restarted on its data when healed.
    Kill,
    /// SIGSTOP of a node (or of the leader), SIGCONT when healed.
    Pause,
    /// A network partition (through the proxies or iptables in the namespaces).
    Partition,
}

/// The shape of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionShape {
    /// One node cut off from every other, both ways.
    Isolate,
    /// A minority and a majority, both ways.
    Halves,
    /// `from` can still send to `to`, but nothing from `to` reaches `from`.
    OneWay,
    /// Two halves that only one node (the bridge) connects.
    Bridge,
}

/// One fault, resolved to its targets when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Kill {
        node: u64,
        leader: bool,
    },
    Pause {
        node: u64,
        leader: bool,
    },
    Partition {
        shape: PartitionShape,
        /// The directed links dropped.
        links: Vec<(u64, u64)>,
        /// Whether open connections were also closed (else only black-holed).
        reset: bool,
        /// Whether the links go down and up again, every `FLAP_MS_MIN` to `FLAP_MS_MAX`,
        /// until the heal (else they stay down).
        flapping: bool,
        description: String,
        /// The node that led when the partition was planned, if one was known: which side
        /// it is on decides what the partition does to the cluster.
        leader: Option<u64>,
    },
}

/// The chance that a partition flaps.
const FLAPPING_CHANCE: f64 = 0.25;
/// How long a flapping partition's links stay in one state, at least and at most.
pub const FLAP_MS_MIN: u64 = 100;
pub const FLAP_MS_MAX: u64 = 500;

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Partition { .. } => FaultKind::Partition,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = |leader: bool| if leader { " (the leader)" } else { "" };
        match self {
            Fault::Kill { node, leader } => {
                write!(formatter, "kill -9 node {node}{}", role(*leader))
            }
            Fault::Pause { node, leader } => {
                write!(formatter, "pause (SIGSTOP) node {node}{}", role(*leader))
            }
            Fault::Partition {
                description,
                reset,
                flapping,
                leader,
                ..
            } => {
                let how = if *reset { "reset + drop" } else { "drop" };
                let flaps = if *flapping { ", flapping" } else { "" };
                write!(formatter, "partition {description} [{how}{flaps}]")?;
                match leader {
                    Some(leader) => write!(formatter, " (node {leader} leads)"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Picks the target of a node fault: the leader half of the time (when one is known).
fn pick_node(nodes: &[u64], leader: Option<u64>, prng: &mut Prng) -> (u64, bool) {
    if let Some(leader) = leader
        && prng.below(2) == 0
    {
        return (leader, true);
    }
    let node = nodes[prng.index(nodes.len())];
    (node, Some(node) == leader)
}

/// Builds a fault of `kind` against the current cluster.
pub fn plan(kind: FaultKind, nodes: &[u64], leader: Option<u64>, prng: &mut Prng) -> Fault {
    match kind {
        FaultKind::Kill => {
            let (node, leader) = pick_node(nodes, leader, prng);
            Fault::Kill { node, leader }
        }
        FaultKind::Pause => {
            let (node, leader) = pick_node(nodes, leader, prng);
            Fault::Pause { node, leader }
        }
        FaultKind::Partition => plan_partition(nodes, leader, prng),
    }
}

fn plan_partition(nodes: &[u64], leader: Option<u64>, prng: &mut Prng) -> Fault {
    let shapes: &[PartitionShape] = match nodes.len() {
        0 | 1 => &[PartitionShape::Isolate],
        2 => &[PartitionShape::Isolate, PartitionShape::OneWay],
        _ => &[
            PartitionShape::Isolate,
            PartitionShape::Halves,
            PartitionShape::OneWay,
            PartitionShape::Bridge,
        ],
    };
    let shape = shapes[prng.index(shapes.len())];
    let mut order = nodes.to_vec();
    prng.shuffle(&mut order);
    // Put the leader first half of the time, so it is the isolated node, in the minority,
    // or the sender that hears nothing back.
    if let Some(leader) = leader
        && prng.below(2) == 0
        && let Some(position) = order.iter().position(|&node| node == leader)
    {
        order.swap(0, position);
    }
    let mut links = Vec::new();
    let both_ways = |side_a: &[u64], side_b: &[u64], links: &mut Vec<(u64, u64)>| {
        for &a in side_a {
            for &b in side_b {
                links.push((a, b));
                links.push((b, a));
            }
        }
    };
    let description = match shape {
        PartitionShape::Isolate => {
            both_ways(&order[..1], &order[1..], &mut links);
            format!("isolate node {}", order[0])
        }
        PartitionShape::Halves => {
            let minority = order.len() / 2;
            both_ways(&order[..minority], &order[minority..], &mut links);
            format!("halves {:?} | {:?}", &order[..minority], &order[minority..])
        }
        PartitionShape::OneWay => {
            links.push((order[1], order[0]));
            format!(
                "one-way: {} -> {} flows, {} -> {} dropped",
                order[0], order[1], order[1], order[0]
            )
        }
        PartitionShape::Bridge => {
            let bridge = order[0];
            let rest = &order[1..];
            let half = rest.len() / 2;
            both_ways(&rest[..half], &rest[half..], &mut links);
            format!(
                "bridge {bridge} between {:?} and {:?}",
                &rest[..half],
                &rest[half..]
            )
        }
    };
    let reset = prng.below(2) == 0;
    Fault::Partition {
        shape,
        links,
        reset,
        flapping: prng.chance(FLAPPING_CHANCE),
        description,
        leader,
    }
}

/// Starts `fault`.
pub fn inject(fault: &Fault, cluster: &mut Cluster, network: &mut Network) {
    match fault {
        Fault::Kill { node, .. } => cluster.kill(*node),
        Fault::Pause { node, .. } => cluster.pause(*node),
        Fault::Partition { links, reset, .. } => set_links(links, true, *reset, network),
    }
}

/// Cuts (`down`) or restores a partition's links; a cut with `reset` also closes their
/// open connections.
pub fn set_links(links: &[(u64, u64)], down: bool, reset: bool, network: &mut Network) {
    let mode = if down {
        LinkMode::Dropped
    } else {
        LinkMode::Up
    };
    for &(from, to) in links {
        network.set_mode(from, to, mode);
        if down && reset {
            network.reset(from, to);
        }
    }
}

/// Ends `fault`: restarts, continues, or heals every link.
pub fn heal(fault: &Fault, cluster: &mut Cluster, network: &mut Network) -> anyhow::Result<()> {
    match fault {
        Fault::Kill { node, .. } => cluster.restart(*node)?,
        Fault::Pause { node, .. } => cluster.resume(*node),
        Fault::Partition { .. } => network.heal()?,
    }
    Ok(())
}

#[cfg(test)]
mod flapping_tests {
    use super::*;

    #[test]
    fn about_a_quarter_of_partitions_flap_and_say_so() {
        // Checks that plan_partition draws flapping partitions at about FLAPPING_CHANCE
        // over 400 seeds (between 15% and 35%), and that their name says "flapping" and
        // which node led when they were planned.
        let mut flapping = 0;
        for seed in 0..400 {
            let mut prng = Prng::from_seed(seed);
            let fault = plan(FaultKind::Partition, &[1, 2, 3], Some(1), &mut prng);
            let Fault::Partition {
                flapping: flaps, ..
            } = &fault
            else {
                panic!("a partition: {fault}");
            };
            assert_eq!(*flaps, fault.to_string().contains("flapping"), "{fault}");
            assert!(fault.to_string().ends_with("] (node 1 leads)"), "{fault}");
            flapping += usize::from(*flaps);
        }
        assert!((60..=140).contains(&flapping), "{flapping} of 400 flapped");
    }
}
