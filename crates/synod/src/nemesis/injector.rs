//! The fault loop: when to start each fault and heal it (one at a time, or overlapping with
//! `--overlap`), and how each kind is injected and healed: kill, pause and partition through
//! faults.rs, clock skew and membership changes through the nodes' HTTP admin API, a full
//! disk through the filler of the node's tmpfs.

use std::time::{Duration, Instant};

use super::Nemesis;
use super::admin;
use super::faults;
use super::report::FaultRecord;
use super::schedule::{self, ClockFault, Fault, Kind, MembershipChange, Rounds, View};

/// Time after the start before the first fault.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long a fault lasts: uniformly in [min, max] milliseconds.
const FAULT_MS_MIN: u64 = 1_500;
const FAULT_MS_MAX: u64 = 3_500;
/// How long a fault that starts alone waits for the cluster to settle after the last
/// heal (every node healthy, every voter caught up), and how often it looks.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// The pause between the heal of the last fault in force and the next fault.
const GAP_MS_MIN: u64 = 800;
const GAP_MS_MAX: u64 = 2_000;
/// A fault that overlaps starts this long after the one before it at least.
const OVERLAP_DELAY_MS_MIN: u64 = 300;
/// The most faults of one run.
const FAULTS_MAX: usize = 1_000;
/// The most passes of the loop (each injects, heals or sleeps until one is due).
const PASSES_MAX: usize = 4 * FAULTS_MAX + FLAPS_MAX;
/// The most turns of flapping partitions in one run.
const FLAPS_MAX: usize = 16 * FAULTS_MAX;
/// How long one membership step (add, promote, remove, transfer) is retried.
const MEMBERSHIP_STEP_TIMEOUT: Duration = Duration::from_secs(4);
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(200);
/// How long a leadership transfer may take to show.
const LEADER_CHANGE_TIMEOUT: Duration = Duration::from_secs(1);
/// Lines of a node's log quoted in a disk fault's note at most.
const LOG_LINES_QUOTED_MAX: usize = 3;

/// The most times one flapping partition turns its links down or up.
const FLAPS_PER_FAULT_MAX: u32 = 256;

/// A fault in force.
struct Active {
    fault: Fault,
    start: u64,
    heal_at: Instant,
    note: String,
    /// Why the cluster had not settled when this fault started alone (`None`: it had, or
    /// the fault overlaps another on purpose).
    unsettled: Option<String>,
    /// A flapping partition's next turn: when, and whether its links go down then.
    flap: Option<Flap>,
}

#[derive(Debug, Clone, Copy)]
struct Flap {
    at: Instant,
    down: bool,
    turns: u32,
}

/// What a disk fault saw when it started: the node's log size and its disk error count.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiskBaseline {
    log_bytes: u64,
    errors: Option<f64>,
}

fn millis(range: (u64, u64), prng: &mut synod_core::Prng) -> Duration {
    Duration::from_millis(prng.range_inclusive(range.0, range.1))
}

impl Nemesis<'_> {
    /// Injects faults until the quiet period; then heals everything and waits for `stop_at`.
    pub(super) async fn run_faults(&mut self, stop_at: Instant) -> anyhow::Result<()> {
        let mut rounds = Rounds::new(&self.kinds);
        let faults_end = stop_at - self.args.quiet();
        let mut active: Vec<Active> = Vec::new();
        let mut next_start = Some(self.origin + WARM_UP);
        let mut finished = false;
        for _ in 0..PASSES_MAX {
            let now = Instant::now();
            if let Some(index) = active.iter().position(|fault| fault.heal_at <= now) {
                let fault = active.remove(index);
                self.heal(fault).await?;
                if active.is_empty() && next_start.is_none() && !finished {
                    next_start =
                        Some(Instant::now() + millis((GAP_MS_MIN, GAP_MS_MAX), &mut self.prng));
                }
                continue;
            }
            if let Some(active) = active
                .iter_mut()
                .find(|fault| fault.flap.is_some_and(|flap| flap.at <= now))
            {
                self.flap(active);
                continue;
            }
            if let Some(start) = next_start
                && start <= now
            {
                next_start = self
                    .start_next(&mut rounds, &mut active, faults_end)
                    .await?;
                finished = next_start.is_none() && active.is_empty();
                continue;
            }
            let heal_at = active.iter().map(|fault| fault.heal_at).min();
            let flap_at = active
                .iter()
                .filter_map(|fault| fault.flap)
                .map(|flap| flap.at)
                .min();
            let Some(wake) = heal_at.into_iter().chain(flap_at).chain(next_start).min() else {
                break;
            };
            self.sleep_watching(wake).await?;
        }
        for fault in std::mem::take(&mut active) {
            self.heal(fault).await?;
        }
        self.heal_all().await?;
        self.sleep_watching(stop_at).await
    }

    /// Starts the next fault if one fits before `faults_end`; returns when the one after
    /// it may start (`None`: once every fault in force has healed, or never when the run
    /// has no room left and nothing is in force).
    async fn start_next(
        &mut self,
        rounds: &mut Rounds,
        active: &mut Vec<Active>,
        faults_end: Instant,
    ) -> anyhow::Result<Option<Instant>> {
        // A fault alone starts on a settled cluster, so what it measures is its own effect
        // and not the tail of the last one (a node still restarting its storage after a
        // full disk, a voter still catching up after a pause).
        let unsettled = match active.is_empty() {
            true => self.wait_settled().await?,
            false => None,
        };
        let length = millis((FAULT_MS_MIN, FAULT_MS_MAX), &mut self.prng);
        if Instant::now() + length > faults_end || self.faults.len() >= FAULTS_MAX {
            return Ok(None);
        }
        let leader = self.cluster.leader().await;
        let in_force: Vec<Fault> = active.iter().map(|fault| fault.fault.clone()).collect();
        let mut planned = None;
        let mut deferred = Vec::new();
        for _ in 0..self.kinds.len() {
            let Some(kind) = rounds.next_kind(&mut self.prng) else {
                break;
            };
            let view = View {
                voters: &self.voters,
                learners: &self.learners,
                nodes: &self.node_ids(),
                leader,
                disk_node: self.disk.as_ref().map(|disk| disk.0),
                drift_bound_ppm: super::cluster::LEASE_DRIFT_BOUND_PPM,
            };
            planned = schedule::plan(kind, &view, &in_force, &mut self.prng);
            if planned.is_some() {
                break;
            }
            deferred.push(kind);
        }
        // The kinds that could not start beside the faults in force come again later.
        for kind in deferred.into_iter().rev() {
            rounds.put_back(kind);
        }
        let Some(fault) = planned else {
            // Nothing may start beside what is in force: wait for it to heal.
            return Ok(match active.is_empty() {
                true => Some(Instant::now() + millis((GAP_MS_MIN, GAP_MS_MAX), &mut self.prng)),
                false => None,
            });
        };
        let start = self.now();
        eprintln!("nemesis: {:>6.2} s  {fault}", start as f64 / 1e9);
        let note = self.inject(&fault).await?;
        let heal_at = match fault.kind() {
            // A membership change is done when its steps are; nothing undoes it.
            Kind::Membership => Instant::now(),
            _ => Instant::now() + length,
        };
        let flap = match &fault {
            Fault::Basic(faults::Fault::Partition { flapping: true, .. }) => Some(Flap {
                at: Instant::now() + self.flap_interval(),
                down: false,
                turns: 0,
            }),
            _ => None,
        };
        if let Some(reason) = &unsettled {
            eprintln!("nemesis: started before the cluster settled: {reason}");
        }
        active.push(Active {
            fault,
            start,
            heal_at,
            note,
            unsettled,
            flap,
        });
        let overlap = self.args.overlap > 0.0
            && active.len() < schedule::FAULTS_AT_ONCE_MAX
            && self.prng.chance(self.args.overlap);
        if !overlap {
            return Ok(None);
        }
        let latest = (length.as_millis() as u64).saturating_sub(OVERLAP_DELAY_MS_MIN);
        let delay = millis(
            (OVERLAP_DELAY_MS_MIN, latest.max(OVERLAP_DELAY_MS_MIN)),
            &mut self.prng,
        );
        Ok(Some(Instant::now() + delay))
    }

    /// Waits until the cluster is settled, at most `SETTLE_TIMEOUT`; returns why it is not
    /// when it did not settle in time.
    async fn wait_settled(&mut self) -> anyhow::Result<Option<String>> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let polls_max = SETTLE_TIMEOUT.as_millis() / SETTLE_POLL.as_millis() + 1;
        let mut reason = None;
        for _ in 0..polls_max {
            reason = self.cluster.unsettled().await;
            if reason.is_none() || Instant::now() >= deadline {
                break;
            }
            self.sleep_watching(Instant::now() + SETTLE_POLL).await?;
        }
        Ok(reason)
    }

    fn flap_interval(&mut self) -> Duration {
        millis((faults::FLAP_MS_MIN, faults::FLAP_MS_MAX), &mut self.prng)
    }

    /// Turns a flapping partition's links down or up, and plans the next turn (none after
    /// `FLAPS_PER_FAULT_MAX`: the links then stay as they are until the heal).
    fn flap(&mut self, active: &mut Active) {
        let (Some(flap), Fault::Basic(faults::Fault::Partition { links, reset, .. })) =
            (active.flap, &active.fault)
        else {
            return;
        };
        faults::set_links(links, flap.down, *reset, &mut self.network);
        let turns = flap.turns + 1;
        active.flap = (turns < FLAPS_PER_FAULT_MAX).then(|| Flap {
            at: Instant::now() + self.flap_interval(),
            down: !flap.down,
            turns,
        });
    }

    fn node_ids(&self) -> Vec<u64> {
        self.cluster.nodes.iter().map(|node| node.id).collect()
    }

    fn http_of(&self, id: u64) -> std::net::SocketAddr {
        let node = self.cluster.nodes.iter().find(|node| node.id == id);
        node.expect("a node of the cluster").http
    }

    /// Starts `fault`; returns what the harness saw, for the report.
    async fn inject(&mut self, fault: &Fault) -> anyhow::Result<String> {
        Ok(match fault {
            Fault::Basic(basic) => {
                faults::inject(basic, &mut self.cluster, &mut self.network);
                String::new()
            }
            Fault::Clock(clock) => {
                self.set_clock(clock.node, clock.drift_ppm, clock.offset_ms)
                    .await
            }
            Fault::Membership(change) => self.change_membership(*change).await,
            Fault::Disk { node } => self.fill_disk(*node).await,
            Fault::SlowDisk { node, delay_ms, .. } => self.set_disk(*node, *delay_ms, false).await,
            Fault::FailingDisk { node, .. } => self.set_disk(*node, 0, true).await,
        })
    }

    /// Ends `fault` and records it.
    async fn heal(&mut self, active: Active) -> anyhow::Result<()> {
        let Active {
            fault,
            start,
            mut note,
            unsettled,
            ..
        } = active;
        let healed = match &fault {
            Fault::Basic(basic) => {
                faults::heal(basic, &mut self.cluster, &mut self.network)?;
                String::new()
            }
            Fault::Clock(ClockFault { node, .. }) => self.set_clock(*node, 0, 0).await,
            Fault::Membership(_) => String::new(),
            Fault::Disk { node } => self.empty_disk(*node).await,
            Fault::SlowDisk { node, .. } | Fault::FailingDisk { node, .. } => {
                self.set_disk(*node, 0, false).await
            }
        };
        if !healed.is_empty() {
            note = match note.is_empty() {
                true => format!("heal: {healed}"),
                false => format!("{note}; heal: {healed}"),
            };
        }
        let end = self.now();
        eprintln!("nemesis: {:>6.2} s  healed: {fault}", end as f64 / 1e9);
        self.faults.push(FaultRecord {
            fault,
            start,
            end,
            note,
            unsettled,
        });
        Ok(())
    }

    /// Heals every link, continues every paused node, starts every stopped one, sets every
    /// clock right and empties the full disk.
    pub(super) async fn heal_all(&mut self) -> anyhow::Result<()> {
        self.network.heal()?;
        for node in self.node_ids() {
            self.cluster.resume(node);
            self.cluster.restart(node)?;
        }
        if self.kinds.contains(&Kind::Clock) {
            for node in self.node_ids() {
                self.set_clock(node, 0, 0).await;
            }
        }
        if self.kinds.contains(&Kind::SlowDisk) || self.kinds.contains(&Kind::FailingDisk) {
            for node in self.node_ids() {
                self.set_disk(node, 0, false).await;
            }
        }
        if let Some((_, mount)) = &self.disk
            && let Err(error) = mount.empty()
        {
            eprintln!("nemesis: cannot remove the disk filler: {error}");
        }
        Ok(())
    }

    /// Sets node `node`'s clock faults; answers "" when it took them, else why not.
    async fn set_clock(&self, node: u64, drift_ppm: i64, offset_ms: i64) -> String {
        let body = format!("{{\"drift_ppm\":{drift_ppm},\"offset_ms\":{offset_ms}}}");
        match admin::request(self.http_of(node), "POST", "/faults/clock", &body).await {
            Ok(answer) if answer.ok() => String::new(),
            Ok(answer) => format!("node {node} refused the clock fault: {}", answer.message()),
            Err(error) => format!("clock fault not set on node {node}: {error}"),
        }
    }

    /// Sets node `node`'s disk faults (a sync delay, a failing disk); answers "" when it
    /// took them, else why not.
    async fn set_disk(&self, node: u64, delay_ms: u64, failing: bool) -> String {
        let body = format!("{{\"sync_delay_ms\":{delay_ms},\"failing\":{failing}}}");
        match admin::request(self.http_of(node), "POST", "/faults/disk", &body).await {
            Ok(answer) if answer.ok() => String::new(),
            Ok(answer) => format!("node {node} refused the disk fault: {}", answer.message()),
            Err(error) => format!("disk fault not set on node {node}: {error}"),
        }
    }

    /// Sends one membership request to the leader, retrying refusals (a change in
    /// progress, a learner not caught up, no leader) for MEMBERSHIP_STEP_TIMEOUT.
    async fn members_step(&self, body: &str) -> Result<(), String> {
        let deadline = Instant::now() + MEMBERSHIP_STEP_TIMEOUT;
        let mut last = String::from("no leader");
        // Bounded by the deadline: each pass takes at least MEMBERSHIP_RETRY.
        while Instant::now() < deadline {
            if let Some(leader) = self.cluster.leader().await {
                match admin::request(self.http_of(leader), "POST", "/members", body).await {
                    Ok(answer) if answer.ok() => return Ok(()),
                    Ok(answer) => last = answer.message(),
                    Err(error) => last = error,
                }
            }
            tokio::time::sleep(MEMBERSHIP_RETRY).await;
        }
        Err(last)
    }

    /// Carries out `change` step by step; returns what each step did and the voters after.
    async fn change_membership(&mut self, change: MembershipChange) -> String {
        let mut steps: Vec<(String, String)> = Vec::new();
        match change {
            MembershipChange::Replace {
                add,
                add_is_learner,
                remove,
            } => {
                if !add_is_learner {
                    steps.push((format!("add learner {add}"), add_learner_body(add)));
                }
                steps.push((format!("promote {add}"), action_body("promote", add)));
                steps.push((format!("remove {remove}"), action_body("remove", remove)));
            }
            MembershipChange::Remove { node } => {
                steps.push((format!("remove {node}"), action_body("remove", node)));
            }
            MembershipChange::TransferLeader { to, .. } => {
                let body = format!("{{\"action\":\"transfer_leader\",\"to\":{to}}}");
                steps.push((format!("transfer to {to}"), body));
            }
        }
        let mut notes = Vec::new();
        for (name, body) in steps {
            match self.members_step(&body).await {
                Ok(()) => notes.push(format!("{name}: done")),
                Err(reason) => {
                    // A later step depends on this one: stop here.
                    notes.push(format!("{name}: refused ({reason})"));
                    break;
                }
            }
        }
        if let MembershipChange::TransferLeader { to, .. } = change {
            let outcome = match self.wait_leader_is(to).await {
                true => "leads",
                false => "did not take over within 1 s",
            };
            notes.push(format!("node {to} {outcome}"));
        }
        self.refresh_members().await;
        notes.push(format!(
            "voters now {:?}, learners {:?}",
            self.voters, self.learners
        ));
        notes.join("; ")
    }

    /// Reads the voters and learners from the leader (kept as they were when it cannot).
    pub(super) async fn refresh_members(&mut self) {
        let Some(leader) = self.cluster.leader().await else {
            return;
        };
        if let Ok(members) = admin::members(self.http_of(leader)).await
            && !members.voters.is_empty()
        {
            self.voters = members.voters;
            self.learners = members.learners;
        }
    }

    /// Fills node `node`'s filesystem; notes the bytes written.
    async fn fill_disk(&mut self, node: u64) -> String {
        let Some((_, mount)) = &self.disk else {
            return "no disk to fill".into();
        };
        let log_bytes = self.log_size(node);
        let errors = admin::metric_sum(self.http_of(node), "disk_errors")
            .await
            .ok();
        self.disk_baseline = Some(DiskBaseline { log_bytes, errors });
        let mut note = match mount.fill() {
            Ok(bytes) => format!("filled with {} MiB", bytes >> 20),
            Err(error) => format!("filling failed: {error}"),
        };
        // The WAL writes into preallocated segments, so a full disk only bites when the
        // node must create or grow a file: its term and vote on an election. Hand it the
        // leadership, so that every node moves to a new term while its disk is full.
        if self.voters.contains(&node) && self.cluster.leader().await != Some(node) {
            let body = format!("{{\"action\":\"transfer_leader\",\"to\":{node}}}");
            let outcome = match self.members_step(&body).await {
                Ok(()) => match self.wait_leader_is(node).await {
                    true => "it leads".to_string(),
                    false => "accepted, but it did not take over".to_string(),
                },
                Err(reason) => format!("refused ({reason})"),
            };
            note.push_str(&format!("; leadership handed to it: {outcome}"));
        }
        note
    }

    /// Whether node `node` leads within LEADER_CHANGE_TIMEOUT.
    async fn wait_leader_is(&self, node: u64) -> bool {
        let deadline = Instant::now() + LEADER_CHANGE_TIMEOUT;
        // Bounded by the deadline.
        while Instant::now() < deadline {
            if self.cluster.leader().await == Some(node) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn log_size(&self, node: u64) -> u64 {
        let path = self
            .cluster
            .nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.log_path());
        path.and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |meta| meta.len())
    }

    /// Empties node `node`'s filesystem; notes how the node took the full disk: its disk
    /// errors, whether it exited, and what its log said meanwhile.
    async fn empty_disk(&mut self, node: u64) -> String {
        let mut notes = Vec::new();
        if let Some((_, mount)) = &self.disk
            && let Err(error) = mount.empty()
        {
            notes.push(format!("cannot remove the filler: {error}"));
        }
        let baseline = self.disk_baseline.take();
        let errors = admin::metric_sum(self.http_of(node), "disk_errors")
            .await
            .ok();
        match (baseline.and_then(|b| b.errors), errors) {
            (Some(before), Some(after)) => notes.push(format!("disk errors +{}", after - before)),
            _ => notes.push("disk errors unknown (node not answering)".into()),
        }
        if let Some(baseline) = baseline {
            notes.extend(self.log_lines_since(node, baseline.log_bytes));
        }
        notes.join("; ")
    }

    /// The lines node `node` logged after byte `offset` that mention the disk.
    fn log_lines_since(&self, node: u64, offset: u64) -> Vec<String> {
        let path = self
            .cluster
            .nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.log_path());
        let text = path
            .and_then(|path| std::fs::read(path).ok())
            .unwrap_or_default();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(text.len());
        let recent = String::from_utf8_lossy(&text[start..]).into_owned();
        let mentions = |line: &&str| {
            let line = line.to_ascii_lowercase();
            ["space", "disk", "storage", "wal", "panic", "fatal"]
                .iter()
                .any(|word| line.contains(word))
        };
        recent
            .lines()
            .filter(mentions)
            .take(LOG_LINES_QUOTED_MAX)
            .map(|line| format!("log: {}", line.chars().take(200).collect::<String>()))
            .collect()
    }
}

fn add_learner_body(node: u64) -> String {
    action_body("add_learner", node)
}

fn action_body(action: &str, node: u64) -> String {
    format!("{{\"action\":\"{action}\",\"node\":{node}}}")
}
