//! What the nemesis may inject now: the kinds `--faults` selects, the faults of the kinds
//! beyond kill, pause and partition (clock skew, membership changes, a full disk), and the
//! rules that bound several faults at once. Pure: the caller passes the cluster as it sees
//! it and the faults in force, and a seeded PRNG.
//!
//! The rules, so that a majority can always make progress once everything heals:
//! - at most [`FAULTS_AT_ONCE_MAX`] faults at once, at most one partition and one membership
//!   change among them, and no two faults on one node;
//! - a fault that starts alone may take down any voter (the old one-at-a-time schedule);
//!   one that overlaps another may only take down a voter (kill, pause, full disk) while
//!   fewer than a minority of voters are down, so a majority of voter processes keeps
//!   running whatever else is in force;
//! - a membership change keeps the voter count odd and at least 3, never removes a voter
//!   that is down, and never leaves fewer live voters than a majority of the new set.

use std::collections::BTreeSet;
use std::fmt;

use synod_core::Prng;

use super::faults::{self, FaultKind as BasicKind};

/// The most faults in force at once.
pub const FAULTS_AT_ONCE_MAX: usize = 2;
/// The largest wall-clock offset a clock fault sets, either way.
pub const CLOCK_OFFSET_MS_MAX: u64 = 3_000;
/// How often a clock fault drifts beyond the lease's drift bound (otherwise within it).
pub const CLOCK_BEYOND_BOUND_CHANCE: f64 = 0.2;
/// A drift beyond the bound is this many times the bound at least, and at most...
const CLOCK_BEYOND_FACTOR_MIN: u64 = 2;
const CLOCK_BEYOND_FACTOR_MAX: u64 = 10;
/// ...and never beyond what a node accepts (synod-runtime's `CLOCK_DRIFT_PPM_MAX`).
const CLOCK_DRIFT_PPM_MAX: u64 = 500_000;
/// The range of a slow disk's delay per sync.
const SLOW_DISK_DELAY_MS_MIN: u64 = 20;
const SLOW_DISK_DELAY_MS_MAX: u64 = 400;

/// The kinds of fault `--faults` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// kill -9 of a node (or of the leader), restarted on its data when healed.
    Kill,
    /// SIGSTOP of a node (or of the leader), SIGCONT when healed.
    Pause,
    /// A network partition through the proxies.
    Partition,
    /// A node's clocks drift and its wall clock is offset (POST /faults/clock).
    Clock,
    /// Add a learner, promote it and remove a voter, or transfer leadership.
    Membership,
    /// A node's data directory is a small tmpfs, filled up (root only).
    Disk,
    /// A node's disk syncs are slowed (POST /faults/disk).
    SlowDisk,
    /// A node's disk fails: every write and sync errors (POST /faults/disk).
    FailingDisk,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Kill,
        Kind::Pause,
        Kind::Partition,
        Kind::Clock,
        Kind::Membership,
        Kind::Disk,
        Kind::SlowDisk,
        Kind::FailingDisk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Clock => "clock",
            Kind::Membership => "membership",
            Kind::Disk => "disk",
            Kind::SlowDisk => "slow-disk",
            Kind::FailingDisk => "failing-disk",
        }
    }
}

/// One item of `--faults`: a kind, or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    Kind(Kind),
    All,
}

/// Parses one item of `--faults`.
pub fn parse_selection(text: &str) -> Result<Selection, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(Selection::All);
    }
    <Kind as clap::ValueEnum>::from_str(text, true)
        .map(Selection::Kind)
        .map_err(|_| {
            format!(
                "unknown fault kind '{text}': use kill, pause, partition, clock, membership, \
                 disk, slow-disk, failing-disk or all"
            )
        })
}

/// The kinds to inject, sorted, and why each selected kind that cannot be injected on this
/// machine is left out (`disk_unavailable`: why the disk kind cannot be, if it cannot).
pub fn resolve(
    selections: &[Selection],
    disk_unavailable: Option<&str>,
) -> (Vec<Kind>, Vec<String>) {
    let mut kinds = BTreeSet::new();
    for selection in selections {
        match selection {
            Selection::Kind(kind) => {
                kinds.insert(*kind);
            }
            Selection::All => kinds.extend(Kind::ALL),
        }
    }
    let mut skipped = Vec::new();
    if let Some(reason) = disk_unavailable
        && kinds.remove(&Kind::Disk)
    {
        skipped.push(format!("disk faults skipped: {reason}"));
    }
    (kinds.into_iter().collect(), skipped)
}

/// Draws kinds in rounds: each round is a random order of every selected kind, so a run
/// with room for k rounds tries every kind at least k times.
#[derive(Debug)]
pub struct Rounds {
    kinds: Vec<Kind>,
    round: Vec<Kind>,
}

impl Rounds {
    pub fn new(kinds: &[Kind]) -> Rounds {
        Rounds {
            kinds: kinds.to_vec(),
            round: Vec::new(),
        }
    }

    pub fn next_kind(&mut self, prng: &mut Prng) -> Option<Kind> {
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            prng.shuffle(&mut self.round);
        }
        self.round.pop()
    }

    /// Gives back a kind that could not start now: it comes again after the rest of the
    /// round, before the next round starts, so that it is not skipped.
    pub fn put_back(&mut self, kind: Kind) {
        self.round.insert(0, kind);
    }
}

/// A clock fault: node `node`'s clocks run `drift_ppm` fast (slow when negative) and its
/// wall clock is `offset_ms` ahead (behind); healed by setting both to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockFault {
    pub node: u64,
    pub leader: bool,
    pub drift_ppm: i64,
    pub offset_ms: i64,
    /// The drift exceeds the lease's drift bound.
    pub beyond_bound: bool,
}

/// A membership change, made through `POST /members` on the leader. Nothing undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add `add` as a learner (unless it is one already), promote it, remove voter `remove`.
    Replace {
        add: u64,
        add_is_learner: bool,
        remove: u64,
    },
    /// Remove voter `node`: a replace that promoted but did not remove left an even count.
    Remove { node: u64 },
    /// Ask the leader `from` to hand leadership to voter `to`.
    TransferLeader { from: u64, to: u64 },
}

/// One fault, resolved to its targets when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Kill, pause or partition (faults.rs).
    Basic(faults::Fault),
    Clock(ClockFault),
    Membership(MembershipChange),
    /// Node `node`'s data filesystem filled up; healed by removing the filler.
    Disk {
        node: u64,
    },
    /// Every disk sync of node `node` waits `delay_ms` first; healed by setting it to 0.
    SlowDisk {
        node: u64,
        leader: bool,
        delay_ms: u64,
    },
    /// Every write and sync of node `node`'s disk fails; healed by clearing the fault.
    FailingDisk {
        node: u64,
        leader: bool,
    },
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Basic(fault) => match fault.kind() {
                BasicKind::Kill => Kind::Kill,
                BasicKind::Pause => Kind::Pause,
                BasicKind::Partition => Kind::Partition,
            },
            Fault::Clock(_) => Kind::Clock,
            Fault::Membership(_) => Kind::Membership,
            Fault::Disk { .. } => Kind::Disk,
            Fault::SlowDisk { .. } => Kind::SlowDisk,
            Fault::FailingDisk { .. } => Kind::FailingDisk,
        }
    }

    /// The nodes the fault acts on, sorted (a partition: every node with a cut link).
    pub fn nodes(&self) -> Vec<u64> {
        let mut nodes = match self {
            Fault::Basic(faults::Fault::Kill { node, .. })
            | Fault::Basic(faults::Fault::Pause { node, .. })
            | Fault::Clock(ClockFault { node, .. })
            | Fault::SlowDisk { node, .. }
            | Fault::FailingDisk { node, .. }
            | Fault::Disk { node } => vec![*node],
            Fault::Basic(faults::Fault::Partition { links, .. }) => {
                links.iter().flat_map(|&(from, to)| [from, to]).collect()
            }
            Fault::Membership(MembershipChange::Replace { add, remove, .. }) => {
                vec![*add, *remove]
            }
            Fault::Membership(MembershipChange::Remove { node }) => vec![*node],
            Fault::Membership(MembershipChange::TransferLeader { from, to }) => vec![*from, *to],
        };
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// Whether it is a kill -9 of the node that led when it started.
    pub fn is_leader_kill(&self) -> bool {
        matches!(self, Fault::Basic(faults::Fault::Kill { leader: true, .. }))
    }

    pub fn is_partition(&self) -> bool {
        matches!(self, Fault::Basic(faults::Fault::Partition { .. }))
    }

    /// The node it takes down (not running, stopped, or unable to write), if any.
    fn down_node(&self) -> Option<u64> {
        match self {
            Fault::Basic(faults::Fault::Kill { node, .. })
            | Fault::Basic(faults::Fault::Pause { node, .. })
            | Fault::FailingDisk { node, .. }
            | Fault::Disk { node } => Some(*node),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Basic(fault) => write!(formatter, "{fault}"),
            Fault::Clock(clock) => write!(
                formatter,
                "clock node {}{}: drift {:+} ppm{}, offset {:+} ms",
                clock.node,
                if clock.leader { " (the leader)" } else { "" },
                clock.drift_ppm,
                if clock.beyond_bound {
                    " (beyond the lease bound)"
                } else {
                    ""
                },
                clock.offset_ms
            ),
            Fault::Membership(MembershipChange::Replace {
                add,
                add_is_learner,
                remove,
            }) => {
                let how = if *add_is_learner {
                    format!("promote learner {add}")
                } else {
                    format!("add learner {add}, promote {add}")
                };
                write!(formatter, "membership: {how}, remove voter {remove}")
            }
            Fault::Membership(MembershipChange::Remove { node }) => {
                write!(formatter, "membership: remove voter {node}")
            }
            Fault::Membership(MembershipChange::TransferLeader { from, to }) => {
                write!(formatter, "membership: transfer leadership {from} -> {to}")
            }
            Fault::Disk { node } => write!(formatter, "disk full on node {node}"),
            Fault::SlowDisk {
                node,
                leader,
                delay_ms,
            } => write!(
                formatter,
                "slow disk on node {node}{}: every sync waits {delay_ms} ms",
                if *leader { " (the leader)" } else { "" }
            ),
            Fault::FailingDisk { node, leader } => write!(
                formatter,
                "failing disk on node {node}{}: every write and sync fails",
                if *leader { " (the leader)" } else { "" }
            ),
        }
    }
}

/// The cluster as the harness sees it when it plans a fault.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The voters, sorted.
    pub voters: &'a [u64],
    /// The learners, sorted.
    pub learners: &'a [u64],
    /// Every node the harness runs, sorted.
    pub nodes: &'a [u64],
    pub leader: Option<u64>,
    /// The node whose data directory is a small filesystem the harness can fill.
    pub disk_node: Option<u64>,
    /// The lease's clock drift bound, in parts per million.
    pub drift_bound_ppm: u64,
}

/// What the faults in force occupy.
#[derive(Debug, Default)]
struct Busy {
    /// Nodes killed, paused or with a full disk.
    down: BTreeSet<u64>,
    /// Nodes any fault acts on.
    touched: BTreeSet<u64>,
    partition: bool,
    membership: bool,
}

fn busy(active: &[Fault]) -> Busy {
    let mut busy = Busy::default();
    for fault in active {
        busy.down.extend(fault.down_node());
        if fault.is_partition() {
            busy.partition = true;
        } else {
            busy.touched.extend(fault.nodes());
        }
        busy.membership |= fault.kind() == Kind::Membership;
    }
    busy
}

fn majority(voters_count: usize) -> usize {
    voters_count / 2 + 1
}

impl View<'_> {
    /// Whether one more voter may be taken down now.
    fn may_take_down_voter(&self, busy: &Busy, alone: bool) -> bool {
        let down = self.voters.iter().filter(|v| busy.down.contains(v)).count();
        alone || down < (self.voters.len() - 1) / 2
    }
}

/// A fault of `kind` against the cluster `view` with `active` in force, or `None` when no
/// fault of that kind is allowed now.
pub fn plan(kind: Kind, view: &View<'_>, active: &[Fault], prng: &mut Prng) -> Option<Fault> {
    if active.len() >= FAULTS_AT_ONCE_MAX || view.voters.is_empty() {
        return None;
    }
    let busy = busy(active);
    let alone = active.is_empty();
    match kind {
        Kind::Kill | Kind::Pause => plan_process(kind, view, &busy, alone, prng),
        Kind::Partition if busy.partition => None,
        Kind::Partition => Some(Fault::Basic(faults::plan(
            BasicKind::Partition,
            view.voters,
            view.leader,
            prng,
        ))),
        Kind::Clock => plan_clock(view, &busy, prng),
        Kind::SlowDisk => plan_slow_disk(view, &busy, prng),
        // A failing disk leaves its node unable to write: it takes a voter down.
        Kind::FailingDisk if !view.may_take_down_voter(&busy, alone) => None,
        Kind::FailingDisk => {
            pick_untouched_voter(view, &busy, prng).map(|node| Fault::FailingDisk {
                node,
                leader: Some(node) == view.leader,
            })
        }
        Kind::Membership if busy.membership => None,
        Kind::Membership => plan_membership(view, &busy, prng).map(Fault::Membership),
        Kind::Disk => {
            let node = view.disk_node?;
            let voter = view.voters.contains(&node);
            let allowed =
                !busy.touched.contains(&node) && (!voter || view.may_take_down_voter(&busy, alone));
            allowed.then_some(Fault::Disk { node })
        }
    }
}

fn plan_process(
    kind: Kind,
    view: &View<'_>,
    busy: &Busy,
    alone: bool,
    prng: &mut Prng,
) -> Option<Fault> {
    if !view.may_take_down_voter(busy, alone) {
        return None;
    }
    let (candidates, leader) = untouched_voters(view, busy)?;
    let basic = match kind {
        Kind::Kill => BasicKind::Kill,
        _ => BasicKind::Pause,
    };
    Some(Fault::Basic(faults::plan(basic, &candidates, leader, prng)))
}

/// The voters no fault touches (`None`: none), and the leader if it is one of them.
fn untouched_voters(view: &View<'_>, busy: &Busy) -> Option<(Vec<u64>, Option<u64>)> {
    let candidates: Vec<u64> = view
        .voters
        .iter()
        .copied()
        .filter(|node| !busy.touched.contains(node))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let leader = view.leader.filter(|leader| candidates.contains(leader));
    Some((candidates, leader))
}

/// A voter no fault touches, the leader half the time when it is one.
fn pick_untouched_voter(view: &View<'_>, busy: &Busy, prng: &mut Prng) -> Option<u64> {
    let (candidates, leader) = untouched_voters(view, busy)?;
    Some(match leader {
        Some(leader) if prng.below(2) == 0 => leader,
        _ => candidates[prng.index(candidates.len())],
    })
}

/// A slow disk on a voter: each sync waits 20 to 400 ms (a device far slower than any the
/// cluster should meet, yet one that still completes).
fn plan_slow_disk(view: &View<'_>, busy: &Busy, prng: &mut Prng) -> Option<Fault> {
    let node = pick_untouched_voter(view, busy, prng)?;
    Some(Fault::SlowDisk {
        node,
        leader: Some(node) == view.leader,
        delay_ms: prng.range_inclusive(SLOW_DISK_DELAY_MS_MIN, SLOW_DISK_DELAY_MS_MAX),
    })
}

fn plan_clock(view: &View<'_>, busy: &Busy, prng: &mut Prng) -> Option<Fault> {
    let node = pick_untouched_voter(view, busy, prng)?;
    let bound = view.drift_bound_ppm;
    let beyond_bound = bound > 0 && prng.chance(CLOCK_BEYOND_BOUND_CHANCE);
    let magnitude = if beyond_bound {
        let low = (bound * CLOCK_BEYOND_FACTOR_MIN).min(CLOCK_DRIFT_PPM_MAX);
        let high = (bound * CLOCK_BEYOND_FACTOR_MAX).min(CLOCK_DRIFT_PPM_MAX);
        prng.range_inclusive(low, high)
    } else {
        prng.range_inclusive(0, bound)
    };
    let sign = if prng.below(2) == 0 { 1 } else { -1 };
    let offset = prng.range_inclusive(0, 2 * CLOCK_OFFSET_MS_MAX) as i64;
    Some(Fault::Clock(ClockFault {
        node,
        leader: Some(node) == view.leader,
        drift_ppm: sign * magnitude as i64,
        offset_ms: offset - CLOCK_OFFSET_MS_MAX as i64,
        beyond_bound,
    }))
}

/// Whether the voters `next` keep a live majority with `busy.down` down.
fn keeps_live_majority(next: &[u64], busy: &Busy) -> bool {
    let live = next.iter().filter(|node| !busy.down.contains(node)).count();
    live >= majority(next.len())
}

fn plan_membership(view: &View<'_>, busy: &Busy, prng: &mut Prng) -> Option<MembershipChange> {
    let free = |node: &u64| !busy.down.contains(node) && !busy.touched.contains(node);
    let without = |node: u64| -> Vec<u64> {
        let mut next: Vec<u64> = view.voters.iter().copied().filter(|&v| v != node).collect();
        next.sort_unstable();
        next
    };
    // A replace that promoted but could not remove left an even count: remove one first.
    let voters_count = view.voters.len();
    if voters_count.is_multiple_of(2) && voters_count >= 4 {
        let removable: Vec<u64> = view
            .voters
            .iter()
            .copied()
            .filter(|&node| free(&node) && keeps_live_majority(&without(node), busy))
            .collect();
        if !removable.is_empty() {
            let node = removable[prng.index(removable.len())];
            return Some(MembershipChange::Remove { node });
        }
    }
    let transfer = view.leader.and_then(|from| {
        let targets: Vec<u64> = view
            .voters
            .iter()
            .copied()
            .filter(|&to| to != from && free(&to))
            .collect();
        (!targets.is_empty()).then_some((from, targets))
    });
    let replace = plan_replace(view, busy, &free, &without);
    let choose_replace = match (&transfer, &replace) {
        (Some(_), Some(_)) => prng.below(2) == 0,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    if choose_replace {
        let (add, add_is_learner, removable) = replace?;
        let remove = removable[prng.index(removable.len())];
        return Some(MembershipChange::Replace {
            add,
            add_is_learner,
            remove,
        });
    }
    let (from, targets) = transfer?;
    let to = targets[prng.index(targets.len())];
    Some(MembershipChange::TransferLeader { from, to })
}

/// The node a replace adds (a learner first, else a node outside the cluster), whether it
/// is a learner already, and the voters it may remove; `None` when no replace is allowed.
fn plan_replace(
    view: &View<'_>,
    busy: &Busy,
    free: &dyn Fn(&u64) -> bool,
    without: &dyn Fn(u64) -> Vec<u64>,
) -> Option<(u64, bool, Vec<u64>)> {
    let voters_count = view.voters.len();
    if voters_count < 3 || voters_count.is_multiple_of(2) {
        return None;
    }
    let outsiders = view
        .nodes
        .iter()
        .filter(|node| !view.voters.contains(node) && !view.learners.contains(node));
    let (add, add_is_learner) = match view.learners.iter().find(|node| free(node)) {
        Some(learner) => (*learner, true),
        None => (
            *outsiders
                .copied()
                .collect::<Vec<_>>()
                .iter()
                .find(|n| free(n))?,
            false,
        ),
    };
    let removable: Vec<u64> = view
        .voters
        .iter()
        .copied()
        .filter(|&node| {
            let mut next = without(node);
            next.push(add);
            // The joint configuration needs a live majority of the old voters too.
            free(&node)
                && keeps_live_majority(&next, busy)
                && keeps_live_majority(view.voters, busy)
        })
        .collect();
    (!removable.is_empty()).then_some((add, add_is_learner, removable))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOTERS_3: [u64; 3] = [1, 2, 3];

    fn view<'a>(voters: &'a [u64], learners: &'a [u64], nodes: &'a [u64]) -> View<'a> {
        View {
            voters,
            learners,
            nodes,
            leader: Some(1),
            disk_node: None,
            drift_bound_ppm: 10_000,
        }
    }

    fn kill(node: u64) -> Fault {
        Fault::Basic(faults::Fault::Kill {
            node,
            leader: false,
        })
    }

    /// Every fault `plan` gives over `seeds` seeds.
    fn outcomes(kind: Kind, view: &View<'_>, active: &[Fault], seeds: u64) -> Vec<Fault> {
        let mut seen = Vec::new();
        for seed in 0..seeds {
            let mut prng = Prng::from_seed(seed);
            if let Some(fault) = plan(kind, view, active, &mut prng)
                && !seen.contains(&fault)
            {
                seen.push(fault);
            }
        }
        seen
    }

    fn targets(faults: &[Fault]) -> BTreeSet<u64> {
        faults.iter().flat_map(Fault::nodes).collect()
    }

    #[test]
    fn a_fault_alone_may_take_down_any_voter() {
        // Checks that with nothing in force a kill or pause may hit every voter, as the
        // one-at-a-time schedule did.
        let view = view(&VOTERS_3, &[], &VOTERS_3);
        for kind in [Kind::Kill, Kind::Pause] {
            let seen = outcomes(kind, &view, &[], 200);
            assert_eq!(targets(&seen), BTreeSet::from([1, 2, 3]), "{kind:?}");
        }
    }

    #[test]
    fn overlapping_faults_leave_a_majority_of_voters_running() {
        // Checks the overlap bounds: with 3 voters and one killed no second voter goes down
        // (kill, pause, full or failing disk), while a clock fault or partition may still
        // start; a failing disk counts as a voter down, and alone it may hit any voter; with
        // 5 voters and one killed a second kill spares the killed node; at most two faults.
        let mut three = view(&VOTERS_3, &[], &VOTERS_3);
        three.disk_node = Some(3);
        let killed = [kill(2)];
        for kind in [Kind::Kill, Kind::Pause, Kind::Disk, Kind::FailingDisk] {
            assert!(outcomes(kind, &three, &killed, 100).is_empty(), "{kind:?}");
        }
        // A failing disk takes its voter down: beside it, no second voter goes down.
        let failing = [Fault::FailingDisk {
            node: 2,
            leader: false,
        }];
        assert!(outcomes(Kind::Kill, &three, &failing, 100).is_empty());
        let alone = outcomes(Kind::FailingDisk, &three, &[], 200);
        assert_eq!(targets(&alone), BTreeSet::from([1, 2, 3]));
        let clocks = outcomes(Kind::Clock, &three, &killed, 200);
        assert_eq!(targets(&clocks), BTreeSet::from([1, 3]));
        assert!(!outcomes(Kind::Partition, &three, &killed, 20).is_empty());
        let five_nodes = [1, 2, 3, 4, 5];
        let five = view(&five_nodes, &[], &five_nodes);
        let seen = outcomes(Kind::Kill, &five, &[kill(1)], 300);
        assert_eq!(targets(&seen), BTreeSet::from([2, 3, 4, 5]));
        let full = [kill(1), kill(2)];
        for kind in Kind::ALL {
            assert!(outcomes(kind, &five, &full, 50).is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn partitions_and_membership_changes_do_not_overlap_their_own_kind() {
        // Checks that a second partition or a second membership change never starts while
        // one is in force.
        let nodes = [1, 2, 3, 4];
        let view = view(&VOTERS_3, &[], &nodes);
        let mut prng = Prng::from_seed(1);
        let partition = plan(Kind::Partition, &view, &[], &mut prng).expect("a partition");
        assert!(outcomes(Kind::Partition, &view, &[partition], 50).is_empty());
        let transfer = Fault::Membership(MembershipChange::TransferLeader { from: 1, to: 2 });
        assert!(outcomes(Kind::Membership, &view, &[transfer], 50).is_empty());
    }

    #[test]
    fn membership_changes_spare_down_voters_and_keep_the_count_odd() {
        // Checks with voters 1-3, node 3 killed, leader 1 and spare node 4: a replace adds 4
        // and removes 1 or 2 (never the killed 3), and a transfer goes to 2 only.
        let nodes = [1, 2, 3, 4];
        let view = view(&VOTERS_3, &[], &nodes);
        let seen = outcomes(Kind::Membership, &view, &[kill(3)], 300);
        let mut expected = vec![
            Fault::Membership(MembershipChange::Replace {
                add: 4,
                add_is_learner: false,
                remove: 1,
            }),
            Fault::Membership(MembershipChange::Replace {
                add: 4,
                add_is_learner: false,
                remove: 2,
            }),
            Fault::Membership(MembershipChange::TransferLeader { from: 1, to: 2 }),
        ];
        let mut seen_sorted: Vec<String> = seen.iter().map(ToString::to_string).collect();
        seen_sorted.sort();
        let mut expected_sorted: Vec<String> = expected.drain(..).map(|f| f.to_string()).collect();
        expected_sorted.sort();
        assert_eq!(seen_sorted, expected_sorted);
    }

    #[test]
    fn membership_never_leaves_fewer_live_voters_than_a_majority() {
        // Checks with 4 voters (a replace that did not finish), nodes 3 and 4 down: removing
        // 1 or 2 would leave 1 live voter of 3, and 3 or 4 are down, so only a transfer to
        // 2 remains; with 4 voters and nothing down, one of them is removed.
        let voters = [1, 2, 3, 4];
        let nodes = [1, 2, 3, 4, 5];
        let four = view(&voters, &[], &nodes);
        let down = [
            kill(3),
            Fault::Basic(faults::Fault::Pause {
                node: 4,
                leader: false,
            }),
        ];
        // Two faults in force is the limit, so look at the rule itself with one fault less.
        let busy = busy(&down);
        let mut changes = BTreeSet::new();
        for seed in 0..200 {
            let mut prng = Prng::from_seed(seed);
            changes.insert(format!("{:?}", plan_membership(&four, &busy, &mut prng)));
        }
        let transfer = MembershipChange::TransferLeader { from: 1, to: 2 };
        assert_eq!(changes, BTreeSet::from([format!("{:?}", Some(transfer))]));
        let removed = outcomes(Kind::Membership, &four, &[], 200);
        let expected: Vec<Fault> = voters
            .iter()
            .map(|&node| Fault::Membership(MembershipChange::Remove { node }))
            .collect();
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(removed.iter().all(|fault| expected.contains(fault)));
    }

    #[test]
    fn clock_drift_stays_within_the_bound_unless_marked_beyond() {
        // Checks that drift within the bound is at most the bound, drift beyond it is 2 to 10
        // times the bound, offsets stay within 3 s, and both choices occur.
        let view = view(&VOTERS_3, &[], &VOTERS_3);
        let mut beyond_count = 0;
        for seed in 0..500 {
            let mut prng = Prng::from_seed(seed);
            let Some(Fault::Clock(clock)) = plan(Kind::Clock, &view, &[], &mut prng) else {
                panic!("seed {seed}: no clock fault");
            };
            let drift = clock.drift_ppm.unsigned_abs();
            if clock.beyond_bound {
                beyond_count += 1;
                assert!(
                    (20_000..=100_000).contains(&drift),
                    "seed {seed}: {clock:?}"
                );
            } else {
                assert!(drift <= 10_000, "seed {seed}: {clock:?}");
            }
            assert!(clock.offset_ms.unsigned_abs() <= CLOCK_OFFSET_MS_MAX);
        }
        assert!((1..500).contains(&beyond_count), "{beyond_count}");
    }

    #[test]
    fn a_kind_put_back_comes_again_before_the_next_round() {
        // Checks that every kind comes once per round and that a kind given back comes
        // after the rest of its round, before any kind of the next round.
        let kinds = [Kind::Kill, Kind::Pause, Kind::Clock];
        let mut rounds = Rounds::new(&kinds);
        let mut prng = Prng::from_seed(5);
        let first = rounds.next_kind(&mut prng).expect("a kind");
        rounds.put_back(first);
        let mut drawn: Vec<Kind> = (0..3).filter_map(|_| rounds.next_kind(&mut prng)).collect();
        assert_eq!(drawn.last(), Some(&first));
        drawn.sort();
        assert_eq!(drawn, kinds.to_vec());
        let mut next: Vec<Kind> = (0..3).filter_map(|_| rounds.next_kind(&mut prng)).collect();
        next.sort();
        assert_eq!(next, kinds.to_vec());
    }

    #[test]
    fn all_selects_every_kind_the_machine_allows() {
        // Checks that `all` expands to every kind, that disk is dropped with a message when
        // it cannot be arranged, and that kinds are deduplicated.
        let all = [Selection::All, Selection::Kind(Kind::Kill)];
        assert_eq!(resolve(&all, None), (Kind::ALL.to_vec(), Vec::new()));
        let (kinds, skipped) = resolve(&all, Some("not root"));
        let without_full_disk: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|kind| *kind != Kind::Disk)
            .collect();
        assert_eq!(kinds, without_full_disk);
        assert_eq!(skipped, vec!["disk faults skipped: not root".to_string()]);
        assert_eq!(parse_selection("ALL"), Ok(Selection::All));
        assert_eq!(parse_selection("clock"), Ok(Selection::Kind(Kind::Clock)));
        assert_eq!(
            parse_selection("slow-disk"),
            Ok(Selection::Kind(Kind::SlowDisk))
        );
        assert!(parse_selection("flood").is_err());
    }
}
