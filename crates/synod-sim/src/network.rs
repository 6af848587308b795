//! The simulated network: latency, loss, duplication, reordering, bounded in-flight messages
//! per directed path, partitions as sets of blocked directed links, and clogging.
//!
//! The network decides a message's fate when it is sent (lost, refused because its path is
//! full, or scheduled for delivery at a time) and again when it arrives (a link cut or
//! clogged since, a receiver that is down or paused). Without the reordering fault a path is
//! FIFO, like a TCP connection: a message is never delivered before one sent earlier on the
//! same path. Every outcome is counted per directed path.

use synod_core::config::check_range;
use synod_core::limits::NODES_COUNT_MAX;
use synod_core::{ConfigError, Duration, Instant, NodeId, Prng, Validate};

use crate::{node_id, node_index};

/// Settings of the simulated network that do not vary with the fault mix.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// The smallest one-way latency of a message between two nodes.
    pub latency_base: Duration,
    /// The mean of the exponential jitter added to `latency_base`.
    pub latency_jitter_mean: Duration,
    /// The cap on base plus jitter (reordering delay comes on top).
    pub latency_max: Duration,
    /// Messages in flight on one directed path beyond which sends are refused and counted,
    /// like a full socket buffer.
    pub in_flight_per_path_max: u32,
    /// Latency of a message a node sends to itself.
    pub loopback_latency: Duration,
    /// How long a message on a clogged link waits before it tries again.
    pub clog_retry: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency_base: Duration::from_micros(200),
            latency_jitter_mean: Duration::from_micros(300),
            latency_max: Duration::from_millis(50),
            in_flight_per_path_max: 1_024,
            loopback_latency: Duration::from_micros(5),
            clog_retry: Duration::from_millis(20),
        }
    }
}

impl Validate for NetworkConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.latency_max < self.latency_base {
            return Err(ConfigError::new(
                "latency_max",
                format!(
                    "({}) must be at least latency_base ({})",
                    self.latency_max, self.latency_base
                ),
            ));
        }
        check_range(
            "in_flight_per_path_max",
            self.in_flight_per_path_max,
            1,
            1 << 20,
        )?;
        if self.clog_retry.is_zero() {
            return Err(ConfigError::new("clog_retry", "(0) must be positive"));
        }
        Ok(())
    }
}

/// The network faults in force on a link; drawn per run by the fault mix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkFaults {
    pub loss_probability: f64,
    pub duplicate_probability: f64,
    /// The fraction of messages that get an extra delay and may overtake others.
    pub reorder_probability: f64,
    pub reorder_delay_max: Duration,
    /// Multiplies the configured jitter mean: a wider latency spread.
    pub jitter_factor: u32,
}

impl LinkFaults {
    /// A healthy link: no loss, duplication or reordering, normal jitter.
    pub const NONE: LinkFaults = LinkFaults {
        loss_probability: 0.0,
        duplicate_probability: 0.0,
        reorder_probability: 0.0,
        reorder_delay_max: Duration::ZERO,
        jitter_factor: 1,
    };
}

/// A set of blocked directed links: a partition. Bit `to` of `rows[from]` is set when
/// messages from `from` to `to` are dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkSet {
    rows: [u64; NODES_COUNT_MAX],
}

impl std::fmt::Debug for LinkSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.blocked_links()).finish()
    }
}

/// The node indices of `nodes` as a bit mask.
pub fn mask_of(nodes: &[NodeId]) -> u64 {
    nodes.iter().fold(0, |mask, node| {
        let index = node_index(*node).expect("node id within the cluster");
        mask | (1u64 << index)
    })
}

/// Every node of a cluster of `nodes_count` as a bit mask.
pub fn mask_all(nodes_count: usize) -> u64 {
    assert!(nodes_count <= NODES_COUNT_MAX);
    if nodes_count == 64 {
        u64::MAX
    } else {
        (1u64 << nodes_count) - 1
    }
}

impl LinkSet {
    /// No link blocked.
    pub const fn none() -> LinkSet {
        LinkSet {
            rows: [0; NODES_COUNT_MAX],
        }
    }

    /// Blocks every link from a node of `senders` to a node of `receivers` (bit masks).
    fn block_masks(&mut self, senders: u64, receivers: u64) {
        for (index, row) in self.rows.iter_mut().enumerate() {
            if senders & (1u64 << index) != 0 {
                *row |= receivers & !(1u64 << index);
            }
        }
    }

    /// A clean partition: `side` and the rest of the cluster cannot reach each other.
    pub fn split(nodes_count: usize, side: &[NodeId]) -> LinkSet {
        let side = mask_of(side);
        let rest = mask_all(nodes_count) & !side;
        let mut links = LinkSet::none();
        links.block_masks(side, rest);
        links.block_masks(rest, side);
        links
    }

    /// One node cut off from every other, both ways.
    pub fn isolate(nodes_count: usize, node: NodeId) -> LinkSet {
        LinkSet::split(nodes_count, &[node])
    }

    /// An asymmetric partition: messages from `senders` to `receivers` are dropped while the
    /// other direction works (the receivers are heard by the senders, but do not hear them).
    pub fn one_way(senders: &[NodeId], receivers: &[NodeId]) -> LinkSet {
        let mut links = LinkSet::none();
        links.block_masks(mask_of(senders), mask_of(receivers));
        links
    }

    /// Two halves that reach each other only through `bridge`, which talks to both.
    pub fn bridge(side_a: &[NodeId], side_b: &[NodeId], bridge: NodeId) -> LinkSet {
        let bridge_mask = mask_of(&[bridge]);
        let (a, b) = (
            mask_of(side_a) & !bridge_mask,
            mask_of(side_b) & !bridge_mask,
        );
        let mut links = LinkSet::none();
        links.block_masks(a, b);
        links.block_masks(b, a);
        links
    }

    /// Unblocks every link between two members of `core` (a bit mask), both ways.
    pub fn heal_among(&mut self, core: u64) {
        for (index, row) in self.rows.iter_mut().enumerate() {
            if core & (1u64 << index) != 0 {
                *row &= !core;
            }
        }
    }

    /// The union of two partitions.
    pub fn union(&self, other: &LinkSet) -> LinkSet {
        let mut rows = self.rows;
        for (row, extra) in rows.iter_mut().zip(other.rows.iter()) {
            *row |= extra;
        }
        LinkSet { rows }
    }

    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        match (node_index(from), node_index(to)) {
            (Some(from), Some(to)) => self.blocked_index(from, to),
            _ => false,
        }
    }

    fn blocked_index(&self, from: usize, to: usize) -> bool {
        self.rows[from] & (1u64 << to) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(|row| *row == 0)
    }

    /// A hash of the blocked links, for the trace.
    pub fn fingerprint(&self) -> u64 {
        let mut bytes = [0u8; NODES_COUNT_MAX * 8];
        for (chunk, row) in bytes.chunks_exact_mut(8).zip(self.rows.iter()) {
            chunk.copy_from_slice(&row.to_le_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// The blocked directed links in (from, to) order.
    pub fn blocked_links(&self) -> Vec<(NodeId, NodeId)> {
        let mut links = Vec::new();
        for (from, row) in self.rows.iter().enumerate() {
            for to in 0..NODES_COUNT_MAX {
                if row & (1u64 << to) != 0 {
                    links.push((node_id(from), node_id(to)));
                }
            }
        }
        links
    }
}

/// Counters of one directed path (or, summed, of the whole network).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Sends accepted onto the path (including those lost on the way).
    pub sent_count: u64,
    pub delivered_count: u64,
    pub dropped_loss_count: u64,
    pub dropped_partition_count: u64,
    /// Sends refused because the path already had its maximum in flight.
    pub dropped_full_count: u64,
    /// Arrivals at a node that was down, or held for a paused node that then crashed.
    pub dropped_down_count: u64,
    pub duplicated_count: u64,
    pub reordered_count: u64,
    /// Arrivals on a clogged link that were made to wait and try again.
    pub clog_delayed_count: u64,
    /// Arrivals held for a paused receiver until it resumed.
    pub held_count: u64,
}

impl PathStats {
    pub fn add(&mut self, other: &PathStats) {
        self.sent_count += other.sent_count;
        self.delivered_count += other.delivered_count;
        self.dropped_loss_count += other.dropped_loss_count;
        self.dropped_partition_count += other.dropped_partition_count;
        self.dropped_full_count += other.dropped_full_count;
        self.dropped_down_count += other.dropped_down_count;
        self.duplicated_count += other.duplicated_count;
        self.reordered_count += other.reordered_count;
        self.clog_delayed_count += other.clog_delayed_count;
        self.held_count += other.held_count;
    }
}

#[derive(Clone, Debug, Default)]
struct PathState {
    stats: PathStats,
    in_flight: u32,
    /// The latest delivery time scheduled in order on this path, which keeps it FIFO.
    fifo_last: u64,
}

/// What the network decided for a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendVerdict {
    /// The path is full; the message was not accepted.
    Full,
    /// Accepted, then lost (the sender cannot tell).
    Lost,
    /// The link is cut; accepted and dropped.
    Blocked,
    /// To be delivered at `at`, and a second copy at `duplicate_at` if duplicated.
    Deliver {
        at: Instant,
        duplicate_at: Option<Instant>,
    },
}

/// What the network decides when a message reaches its receiver's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivalVerdict {
    Arrive,
    Blocked,
    /// The link is clogged: try again at `retry_at`.
    Clogged {
        retry_at: Instant,
    },
}

/// The whole simulated network of one run.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    nodes_count: usize,
    paths: Vec<PathState>,
    partition: LinkSet,
    /// Nodes whose links are clogged (swizzle-clog), as a bit mask.
    clogged: u64,
    /// Faults on every link outside the calm set.
    faults: LinkFaults,
    /// Nodes between which the links are healthy (the healed core of the liveness phase).
    calm: u64,
}

impl Network {
    pub fn new(config: NetworkConfig, nodes_count: usize, faults: LinkFaults) -> Network {
        if let Err(error) = config.validate() {
            panic!("invalid network config: {error}");
        }
        assert!((1..=NODES_COUNT_MAX).contains(&nodes_count));
        Network {
            config,
            nodes_count,
            paths: vec![PathState::default(); nodes_count * nodes_count],
            partition: LinkSet::none(),
            clogged: 0,
            faults,
            calm: 0,
        }
    }

    fn path_mut(&mut self, from: usize, to: usize) -> &mut PathState {
        &mut self.paths[from * self.nodes_count + to]
    }

    pub fn path_stats(&self, from: NodeId, to: NodeId) -> PathStats {
        let (from, to) = (index_of(from), index_of(to));
        self.paths[from * self.nodes_count + to].stats
    }

    /// The counters of every path added up.
    pub fn totals(&self) -> PathStats {
        let mut totals = PathStats::default();
        for path in &self.paths {
            totals.add(&path.stats);
        }
        totals
    }

    pub fn in_flight(&self, from: NodeId, to: NodeId) -> u32 {
        self.paths[index_of(from) * self.nodes_count + index_of(to)].in_flight
    }

    pub fn partition(&self) -> &LinkSet {
        &self.partition
    }

    pub fn set_partition(&mut self, partition: LinkSet) {
        self.partition = partition;
    }

    /// Heals every blocked link and clog among the nodes of `core` and turns network faults
    /// off between them.
    pub fn heal_core(&mut self, core: u64) {
        self.partition.heal_among(core);
        self.clogged = 0;
        self.calm = core;
    }

    /// Sets the faults on every link outside the calm core.
    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    pub fn clog(&mut self, node: NodeId) {
        self.clogged |= 1u64 << index_of(node);
    }

    pub fn unclog(&mut self, node: NodeId) {
        self.clogged &= !(1u64 << index_of(node));
    }

    pub fn unclog_all(&mut self) {
        self.clogged = 0;
    }

    pub fn is_clogged(&self, node: NodeId) -> bool {
        self.clogged & (1u64 << index_of(node)) != 0
    }

    /// Whether a message from `from` to `to` would be dropped or delayed right now.
    pub fn is_link_blocked(&self, from: NodeId, to: NodeId) -> bool {
        let (from_index, to_index) = (index_of(from), index_of(to));
        let clogged = self.clogged & ((1u64 << from_index) | (1u64 << to_index)) != 0;
        from_index != to_index && (clogged || self.partition.blocked_index(from_index, to_index))
    }

    fn faults_on(&self, from: usize, to: usize) -> LinkFaults {
        let calm = self.calm & (1u64 << from) != 0 && self.calm & (1u64 << to) != 0;
        if calm { LinkFaults::NONE } else { self.faults }
    }

    fn latency(&self, faults: &LinkFaults, prng: &mut Prng) -> Duration {
        let mean = self
            .config
            .latency_jitter_mean
            .saturating_mul(u64::from(faults.jitter_factor));
        let cap = self
            .config
            .latency_max
            .saturating_sub(self.config.latency_base);
        let jitter = exponential_nanos(prng, mean.as_nanos(), cap.as_nanos());
        self.config.latency_base + Duration::from_nanos(jitter)
    }

    /// Decides the fate of a message sent at `now`, and accounts for it.
    pub fn send(&mut self, now: Instant, from: NodeId, to: NodeId, prng: &mut Prng) -> SendVerdict {
        let (from_index, to_index) = (index_of(from), index_of(to));
        let in_flight_max = self.config.in_flight_per_path_max;
        if from_index == to_index {
            let at = now + self.config.loopback_latency;
            let path = self.path_mut(from_index, to_index);
            if path.in_flight >= in_flight_max {
                path.stats.dropped_full_count += 1;
                return SendVerdict::Full;
            }
            path.stats.sent_count += 1;
            path.in_flight += 1;
            path.fifo_last = path.fifo_last.max(at.as_nanos());
            let at = Instant::from_nanos(path.fifo_last);
            return SendVerdict::Deliver {
                at,
                duplicate_at: None,
            };
        }
        let faults = self.faults_on(from_index, to_index);
        if self.path_mut(from_index, to_index).in_flight >= in_flight_max {
            self.path_mut(from_index, to_index).stats.dropped_full_count += 1;
            return SendVerdict::Full;
        }
        self.path_mut(from_index, to_index).stats.sent_count += 1;
        if self.partition.blocked_index(from_index, to_index) {
            self.path_mut(from_index, to_index)
                .stats
                .dropped_partition_count += 1;
            return SendVerdict::Blocked;
        }
        if prng.chance(faults.loss_probability) {
            self.path_mut(from_index, to_index).stats.dropped_loss_count += 1;
            return SendVerdict::Lost;
        }
        let at = self.delivery_time(now, from_index, to_index, &faults, prng);
        let duplicate_at = self.duplicate_time(now, from_index, to_index, &faults, prng);
        SendVerdict::Deliver { at, duplicate_at }
    }

    fn delivery_time(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        faults: &LinkFaults,
        prng: &mut Prng,
    ) -> Instant {
        let mut at = now + self.latency(faults, prng);
        let reordered = prng.chance(faults.reorder_probability);
        if reordered {
            let extra = prng.range_inclusive(0, faults.reorder_delay_max.as_nanos());
            at += Duration::from_nanos(extra);
        }
        let path = self.path_mut(from, to);
        path.in_flight += 1;
        if reordered {
            path.stats.reordered_count += 1;
            return at;
        }
        path.fifo_last = path.fifo_last.max(at.as_nanos());
        Instant::from_nanos(path.fifo_last)
    }

    fn duplicate_time(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        faults: &LinkFaults,
        prng: &mut Prng,
    ) -> Option<Instant> {
        if !prng.chance(faults.duplicate_probability) {
            return None;
        }
        // The copy takes its own way through the network; it is never FIFO-ordered.
        let at = now + self.latency(faults, prng) + self.latency(faults, prng);
        let in_flight_max = self.config.in_flight_per_path_max;
        let path = self.path_mut(from, to);
        if path.in_flight >= in_flight_max {
            return None;
        }
        path.in_flight += 1;
        path.stats.duplicated_count += 1;
        Some(at)
    }

    /// Decides what happens to a message reaching `to` at `now`. A message that is not
    /// clogged leaves the in-flight count when the caller reports its end.
    pub fn arrive(&mut self, now: Instant, from: NodeId, to: NodeId) -> ArrivalVerdict {
        let (from_index, to_index) = (index_of(from), index_of(to));
        if from_index == to_index {
            return ArrivalVerdict::Arrive;
        }
        if self.partition.blocked_index(from_index, to_index) {
            let path = self.path_mut(from_index, to_index);
            path.stats.dropped_partition_count += 1;
            path.in_flight -= 1;
            return ArrivalVerdict::Blocked;
        }
        if self.clogged & ((1u64 << from_index) | (1u64 << to_index)) != 0 {
            let retry_at = now + self.config.clog_retry;
            self.path_mut(from_index, to_index).stats.clog_delayed_count += 1;
            return ArrivalVerdict::Clogged { retry_at };
        }
        ArrivalVerdict::Arrive
    }

    /// A message left the network: handed to the receiver (`delivered`) or dropped because
    /// the receiver was down.
    pub fn finish(&mut self, from: NodeId, to: NodeId, delivered: bool) {
        let path = self.path_mut(index_of(from), index_of(to));
        assert!(
            path.in_flight > 0,
            "in-flight count underflow on {from}->{to}"
        );
        path.in_flight -= 1;
        if delivered {
            path.stats.delivered_count += 1;
        } else {
            path.stats.dropped_down_count += 1;
        }
    }

    /// A message arrived for a paused receiver and is held until it resumes.
    pub fn count_held(&mut self, from: NodeId, to: NodeId) {
        self.path_mut(index_of(from), index_of(to)).stats.held_count += 1;
    }

    pub fn nodes_count(&self) -> usize {
        self.nodes_count
    }
}

/// An approximately exponential span with the given mean, capped, in integer arithmetic.
///
/// `X = (K + V) * 2/3` where K counts the leading zero bits of a uniform word (geometric:
/// P(K = k) = 2^-(k+1), mean 1) and V is uniform in [0, 1): memoryless at whole steps like
/// the exponential, with mean exactly 1 after the 2/3. No logarithm is taken, because
/// `f64::ln` comes from the platform's libm and a last-bit difference would change a replay.
pub fn exponential_nanos(prng: &mut Prng, mean_nanos: u64, cap_nanos: u64) -> u64 {
    let word = prng.next_u64();
    let whole = u128::from(word.leading_zeros());
    let fraction = u128::from(prng.next_u64() >> 32);
    let fixed = (whole << 32) | fraction;
    let scaled = (u128::from(mean_nanos) * fixed * 2 / 3) >> 32;
    u64::try_from(scaled).unwrap_or(u64::MAX).min(cap_nanos)
}

fn index_of(node: NodeId) -> usize {
    node_index(node).expect("node id within the cluster")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(indices: &[u64]) -> Vec<NodeId> {
        indices.iter().map(|id| NodeId(*id)).collect()
    }

    fn links(set: &LinkSet) -> Vec<(u64, u64)> {
        set.blocked_links()
            .into_iter()
            .map(|(from, to)| (from.0, to.0))
            .collect()
    }

    #[test]
    fn partition_patterns_block_exactly_the_expected_directed_links() {
        // Checks each partition pattern on a 3- or 4-node cluster by listing every blocked
        // directed link (node ids start at 1).
        let halves = LinkSet::split(4, &ids(&[1, 2]));
        assert_eq!(
            links(&halves),
            vec![
                (1, 3),
                (1, 4),
                (2, 3),
                (2, 4),
                (3, 1),
                (3, 2),
                (4, 1),
                (4, 2)
            ]
        );
        let isolated = LinkSet::isolate(3, NodeId(2));
        assert_eq!(links(&isolated), vec![(1, 2), (2, 1), (2, 3), (3, 2)]);
        // 1 does not hear 2 and 3, but they hear 1.
        let one_way = LinkSet::one_way(&ids(&[2, 3]), &ids(&[1]));
        assert_eq!(links(&one_way), vec![(2, 1), (3, 1)]);
        assert!(!one_way.is_blocked(NodeId(1), NodeId(2)));
        let bridge = LinkSet::bridge(&ids(&[1, 2]), &ids(&[4]), NodeId(3));
        assert_eq!(links(&bridge), vec![(1, 4), (2, 4), (4, 1), (4, 2)]);
        assert!(!bridge.is_blocked(NodeId(3), NodeId(4)));
        assert!(!bridge.is_blocked(NodeId(1), NodeId(3)));
        let mut healed = halves.union(&one_way);
        healed.heal_among(mask_of(&ids(&[1, 2, 3])));
        assert_eq!(links(&healed), vec![(1, 4), (2, 4), (4, 1), (4, 2)]);
        assert!(LinkSet::none().is_empty());
    }

    #[test]
    fn clogging_a_node_blocks_all_its_links_until_unclogged() {
        // Checks swizzle-clog's primitive: a clogged node's links in both directions delay
        // arrivals, other links are unaffected, and unclogging restores them.
        let mut network = Network::new(NetworkConfig::default(), 3, LinkFaults::NONE);
        network.clog(NodeId(2));
        assert!(network.is_link_blocked(NodeId(1), NodeId(2)));
        assert!(network.is_link_blocked(NodeId(2), NodeId(3)));
        assert!(!network.is_link_blocked(NodeId(1), NodeId(3)));
        let verdict = network.arrive(Instant::ZERO, NodeId(3), NodeId(2));
        assert!(matches!(verdict, ArrivalVerdict::Clogged { .. }));
        network.unclog(NodeId(2));
        assert_eq!(
            network.arrive(Instant::ZERO, NodeId(3), NodeId(2)),
            ArrivalVerdict::Arrive
        );
    }

    #[test]
    fn sends_beyond_the_in_flight_bound_are_refused_and_counted() {
        // Checks the per-path bound: the fourth send on a path with three in flight is
        // refused, other paths are unaffected, and a finished message frees a place.
        let config = NetworkConfig {
            in_flight_per_path_max: 3,
            ..NetworkConfig::default()
        };
        let mut network = Network::new(config, 2, LinkFaults::NONE);
        let mut prng = Prng::from_seed(1);
        let (a, b) = (NodeId(1), NodeId(2));
        for _ in 0..3 {
            let verdict = network.send(Instant::ZERO, a, b, &mut prng);
            assert!(matches!(verdict, SendVerdict::Deliver { .. }));
        }
        assert_eq!(
            network.send(Instant::ZERO, a, b, &mut prng),
            SendVerdict::Full
        );
        assert!(matches!(
            network.send(Instant::ZERO, b, a, &mut prng),
            SendVerdict::Deliver { .. }
        ));
        network.finish(a, b, true);
        assert!(matches!(
            network.send(Instant::ZERO, a, b, &mut prng),
            SendVerdict::Deliver { .. }
        ));
        let stats = network.path_stats(a, b);
        assert_eq!((stats.sent_count, stats.dropped_full_count), (4, 1));
        assert_eq!((stats.delivered_count, network.in_flight(a, b)), (1, 3));
    }

    #[test]
    fn integer_exponential_has_the_requested_mean_and_respects_the_cap() {
        // Checks the jitter distribution: its sample mean over many draws is within 3% of
        // the requested mean, about a third of draws exceed the mean (e^-1 for a true
        // exponential), and nothing exceeds the cap.
        let mut prng = Prng::from_seed(8);
        let draws: Vec<u64> = (0..100_000)
            .map(|_| exponential_nanos(&mut prng, 1_000_000, 50_000_000))
            .collect();
        let mean = draws.iter().sum::<u64>() / draws.len() as u64;
        assert!((970_000..1_030_000).contains(&mean), "mean {mean}");
        let above = draws.iter().filter(|draw| **draw > 1_000_000).count();
        assert!((28_000..40_000).contains(&above), "above the mean: {above}");
        assert!(draws.iter().all(|draw| *draw <= 50_000_000));
        assert_eq!(exponential_nanos(&mut prng, 1_000, 0), 0);
    }

    #[test]
    fn without_reordering_a_path_is_fifo_and_latency_stays_capped() {
        // Checks that delivery times on one path never decrease without the reordering
        // fault, and every latency lies within [base, max].
        let config = NetworkConfig {
            in_flight_per_path_max: 100_000,
            ..NetworkConfig::default()
        };
        let faults = LinkFaults {
            jitter_factor: 20,
            ..LinkFaults::NONE
        };
        let mut network = Network::new(config.clone(), 2, faults);
        let mut prng = Prng::from_seed(3);
        let mut last = Instant::ZERO;
        for step in 0..10_000u64 {
            let now = Instant::from_nanos(step * 10_000);
            let SendVerdict::Deliver { at, .. } =
                network.send(now, NodeId(1), NodeId(2), &mut prng)
            else {
                panic!("healthy link refused a send");
            };
            assert!(at >= last);
            assert!(at - now >= config.latency_base);
            last = at;
        }
        let mut independent = Network::new(config.clone(), 2, faults);
        let now = Instant::from_nanos(1_000_000_000);
        for _ in 0..1_000 {
            if let SendVerdict::Deliver { at, .. } =
                independent.send(now, NodeId(1), NodeId(2), &mut prng)
            {
                independent.finish(NodeId(1), NodeId(2), true);
                assert!(at - now <= config.latency_max);
            }
        }
    }
}
