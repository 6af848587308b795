//! Admission of client requests: one controller per node, shared by every connection, that
//! decides at once whether a request may go to the replicas now, wait for a slot, or be
//! refused with `-BUSY ... retry later`.
//!
//! It drives two synod-resilience state machines:
//!
//! - a [`Bulkhead`] whose slots are the requests running (admitted and not yet answered)
//!   plus a bounded queue of requests waiting for one, with priorities: a request that
//!   does not fit is refused at once, low priorities first (reserves, and a waiting low
//!   request gives its place to a more important one);
//! - a [`ConcurrencyLimit`] (Gradient2) that sets the bulkhead's running limit from the
//!   latency it measures from admission to the answer: while latency stays near its
//!   long-term level the limit grows, when requests queue up behind the replicas it shrinks.
//!
//! On top of both, each connection group (by client name, see [`GroupConfig`]) may hold at
//! most its share of the slots, so one group cannot take them all.
//!
//! ```text
//! connection --plan--> admission.enter(priority, group)
//!     Refused          -> -BUSY at once
//!     Running(permit)  -> gateway.submit(request, permit); the gateway drops the permit
//!                         when it answers: the latency sample, the slot freed
//!     Waiting(permit)  -> wait (bounded by the request timeout) until a slot frees, then
//!                         as Running; shed or timed out -> -BUSY
//! ```
//!
//! The real clock is read here (this is the IO edge) and converted to the
//! `synod_core::Instant` the state machines take.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use synod_resilience::{
    Bulkhead, BulkheadConfig, ConcurrencyLimit, LimitConfig, Priority, RefusedReason, TicketId,
    Token,
};
use tokio::sync::oneshot;

use crate::command::Plan;
use crate::config::{GroupConfig, ResilienceSection};
use crate::metrics::Metrics;
use crate::status::ReadLevel;

/// The group of connections that match no configured group.
pub const DEFAULT_GROUP: &str = "default";

/// Which priority each kind of request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priorities {
    pub write: Priority,
    pub linearizable: Priority,
    pub lease: Priority,
    pub follower: Priority,
    pub stale: Priority,
    pub status: Priority,
}

impl Priorities {
    /// The priority of a plan; `None` for plans the connection answers itself (PING,
    /// CLIENT, errors...), which cost the replicas nothing and need no admission.
    pub fn of_plan(&self, plan: &Plan) -> Option<Priority> {
        match plan {
            Plan::Reply(_) | Plan::Close(_) => None,
            Plan::Write { .. } => Some(self.write),
            Plan::Read { level, .. } => Some(match level {
                ReadLevel::Linearizable => self.linearizable,
                ReadLevel::Lease => self.lease,
                ReadLevel::Follower => self.follower,
                ReadLevel::Stale => self.stale,
            }),
            Plan::Status { .. } => Some(self.status),
        }
    }
}

/// The controller's settings, from `[resilience]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// False: every request is admitted (no limit, no refusal).
    pub shedding: bool,
    pub limit: LimitConfig,
    pub bulkhead: BulkheadConfig,
    pub priorities: Priorities,
    pub groups: Vec<GroupConfig>,
    pub default_max_share_percent: u32,
}

impl AdmissionConfig {
    pub fn from_section(section: &ResilienceSection) -> AdmissionConfig {
        AdmissionConfig {
            shedding: section.shedding,
            limit: section.limit_config(),
            bulkhead: section.bulkhead_config(),
            priorities: Priorities {
                write: section.priority_write.priority(),
                linearizable: section.priority_linearizable.priority(),
                lease: section.priority_lease.priority(),
                follower: section.priority_follower.priority(),
                stale: section.priority_stale.priority(),
                status: section.priority_status.priority(),
            },
            groups: section.groups.clone(),
            default_max_share_percent: section.default_max_share_percent,
        }
    }
}

/// Why a request was refused; its `Display` is the text after `-BUSY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub running: u32,
    pub limit: u32,
    pub queued: u32,
    pub cause: RefusalCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalCause {
    /// Every slot this priority may take is taken.
    Full { priority: Priority, reserved: bool },
    /// The connection's group holds its share of the slots.
    GroupShare {
        group: String,
        held: u32,
        quota: u32,
    },
    /// It was waiting and a more important request took its place.
    Shed { priority: Priority },
    /// It waited for a running slot until its deadline.
    WaitedTooLong { waited_ms: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "synod is overloaded ({} requests running, limit {}, {} waiting): ",
            self.running, self.limit, self.queued
        )?;
        match &self.cause {
            RefusalCause::Full {
                priority,
                reserved: false,
            } => write!(f, "no slot is free for this {priority} priority request"),
            RefusalCause::Full {
                priority,
                reserved: true,
            } => write!(
                f,
                "the free slots are kept for requests more important than this {priority} \
                 priority one"
            ),
            RefusalCause::GroupShare { group, held, quota } => write!(
                f,
                "client group '{group}' holds {held} slots, its share is {quota}"
            ),
            RefusalCause::Shed { priority } => write!(
                f,
                "this {priority} priority request was waiting and gave its place to a more \
                 important one"
            ),
            RefusalCause::WaitedTooLong { waited_ms } => {
                write!(f, "no slot freed within {waited_ms} ms")
            }
        }?;
        f.write_str("; retry later")
    }
}

impl Refusal {
    /// The outcome label in metrics.
    fn outcome(&self) -> &'static str {
        match self.cause {
            RefusalCause::Full { .. } | RefusalCause::GroupShare { .. } => "refused",
            RefusalCause::Shed { .. } => "shed",
            RefusalCause::WaitedTooLong { .. } => "timed_out",
        }
    }
}

/// What [`Admission::enter`] let in.
#[derive(Debug)]
pub enum Entry {
    /// Go ahead; the request holds its slot until the permit is dropped.
    Running(Arc<Permit>),
    /// Wait on the receiver: `Ok` when the request runs (the permit then holds a running
    /// slot), `Err` when it was shed. Dropping the permit gives up the place.
    Waiting(Arc<Permit>, oneshot::Receiver<Result<(), Refusal>>),
    /// Admission is off (`shedding = false`).
    Unlimited,
}

/// A request's place in the admission controller; dropping it frees the place and, for a
/// running request, gives the limit its latency sample. Shared (`Arc`) by the gateway
/// submissions of one command.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ticket: TicketId,
    /// Set when the request ended in a way that signals overload (a timeout, a refusal
    /// further in): the limit then backs off.
    dropped: AtomicBool,
}

impl Permit {
    pub fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        self.admission.leave(self.ticket, dropped);
    }
}

struct Ticket {
    group: usize,
    priority: Priority,
    state: TicketState,
}

enum TicketState {
    Waiting(oneshot::Sender<Result<(), Refusal>>),
    Running { token: Token, since: Instant },
}

struct Inner {
    bulkhead: Bulkhead,
    limit: ConcurrencyLimit,
    /// Every ticket in the bulkhead; at most `running_max + queue_capacity`.
    tickets: BTreeMap<TicketId, Ticket>,
    /// Slots (running and waiting) each group holds, by group index.
    group_held: Vec<u32>,
}

/// The figures `/metrics` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionFigures {
    pub limit: u32,
    pub running: u32,
    pub queued: u32,
    /// The limit's long-term latency estimate, in microseconds (0 before the first window).
    pub rtt_long_us: u64,
}

/// The node's admission controller.
pub struct Admission {
    config: AdmissionConfig,
    origin: Instant,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
    /// Group names by index; the default group last.
    group_names: Vec<String>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("figures", &self.figures())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Panics on a config `[resilience]` validation refuses (it runs at start).
    pub fn new(config: AdmissionConfig, metrics: Arc<Metrics>) -> Arc<Admission> {
        let limit = ConcurrencyLimit::new(config.limit);
        let mut bulkhead = Bulkhead::new(config.bulkhead);
        let promoted = bulkhead.set_running_limit(limit.limit());
        assert!(promoted.is_empty(), "nothing waits in a new bulkhead");
        let mut group_names: Vec<String> = config
            .groups
            .iter()
            .map(|group| group.name.clone())
            .collect();
        group_names.push(DEFAULT_GROUP.to_string());
        let admission = Arc::new(Admission {
            inner: Mutex::new(Inner {
                bulkhead,
                limit,
                tickets: BTreeMap::new(),
                group_held: vec![0; group_names.len()],
            }),
            config,
            origin: Instant::now(),
            metrics,
            group_names,
        });
        admission.publish(&admission.lock());
        admission
    }

    pub fn priorities(&self) -> &Priorities {
        &self.config.priorities
    }

    /// The group of a connection by its client name: the first configured group whose
    /// name starts the client name, else the default group.
    pub fn group_of(&self, client_name: Option<&str>) -> usize {
        let name = client_name.unwrap_or("");
        self.config
            .groups
            .iter()
            .position(|group| name.starts_with(group.name.as_str()))
            .unwrap_or(self.config.groups.len())
    }

    pub fn group_name(&self, group: usize) -> &str {
        &self.group_names[group]
    }

    fn share_percent(&self, group: usize) -> u32 {
        self.config
            .groups
            .get(group)
            .map_or(self.config.default_max_share_percent, |group| {
                group.max_share_percent
            })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is an invariant failure in the state machines;
        // their state was checked before it, so carrying on is safe.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> synod_core::Instant {
        synod_core::Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    /// Lets a request of `priority` from connection group `group` in, or refuses it.
    pub fn enter(self: &Arc<Self>, priority: Priority, group: usize) -> Result<Entry, Refusal> {
        if !self.config.shedding {
            self.metrics
                .record_admission(priority, self.group_name(group), "unlimited");
            return Ok(Entry::Unlimited);
        }
        let mut inner = self.lock();
        let result = self.enter_locked(&mut inner, priority, group);
        let outcome = match &result {
            Ok(Entry::Running(_)) => "admitted",
            Ok(_) => "queued",
            Err(refusal) => refusal.outcome(),
        };
        self.metrics
            .record_admission(priority, self.group_name(group), outcome);
        self.publish(&inner);
        result
    }

    fn enter_locked(
        self: &Arc<Self>,
        inner: &mut Inner,
        priority: Priority,
        group: usize,
    ) -> Result<Entry, Refusal> {
        let held = inner.group_held[group];
        let share_percent = self.share_percent(group);
        let slots = inner.bulkhead.slots_now(Priority::Critical);
        let quota = (u64::from(slots) * u64::from(share_percent)).div_ceil(100);
        let quota = quota.max(1) as u32;
        // A full share is no quota: the bulkhead alone decides, by priority.
        if share_percent < 100 && held >= quota {
            let group = self.group_name(group).to_string();
            return Err(refusal(
                inner,
                RefusalCause::GroupShare { group, held, quota },
            ));
        }
        let admitted = match inner.bulkhead.try_enter(priority) {
            Ok(admitted) => admitted,
            Err(refused) => {
                let reserved = refused.reason == RefusedReason::ReservedForHigherPriority;
                return Err(refusal(inner, RefusalCause::Full { priority, reserved }));
            }
        };
        if let Some(shed) = admitted.shed {
            let ticket = inner.tickets.remove(&shed).expect("a shed ticket is known");
            inner.group_held[ticket.group] -= 1;
            let cause = RefusalCause::Shed {
                priority: ticket.priority,
            };
            let shed_refusal = refusal(inner, cause);
            self.metrics.record_admission(
                ticket.priority,
                self.group_name(ticket.group),
                shed_refusal.outcome(),
            );
            if let TicketState::Waiting(wake) = ticket.state {
                let _ = wake.send(Err(shed_refusal));
            }
        }
        inner.group_held[group] += 1;
        let permit = Arc::new(Permit {
            admission: self.clone(),
            ticket: admitted.ticket,
            dropped: AtomicBool::new(false),
        });
        if admitted.running {
            let state = self.running_state(inner);
            inner.tickets.insert(
                admitted.ticket,
                Ticket {
                    group,
                    priority,
                    state,
                },
            );
            return Ok(Entry::Running(permit));
        }
        let (wake, woken) = oneshot::channel();
        let state = TicketState::Waiting(wake);
        let ticket = Ticket {
            group,
            priority,
            state,
        };
        inner.tickets.insert(admitted.ticket, ticket);
        Ok(Entry::Waiting(permit, woken))
    }

    /// The state of a ticket the bulkhead has just let run: it takes a limit token. The
    /// bulkhead runs at most the limit's own count, so the limit always has one.
    fn running_state(&self, inner: &mut Inner) -> TicketState {
        let token = inner
            .limit
            .acquire(self.now())
            .expect("the bulkhead runs no more calls than the limit allows");
        TicketState::Running {
            token,
            since: Instant::now(),
        }
    }

    /// A request left: answered (running) or gave up waiting. Its slot goes to waiting
    /// requests, and the limit learns from its latency.
    fn leave(&self, ticket_id: TicketId, dropped: bool) {
        let mut inner = self.lock();
        // A shed ticket has left the bulkhead already.
        let Some(ticket) = inner.tickets.remove(&ticket_id) else {
            return;
        };
        inner.group_held[ticket.group] -= 1;
        let mut promoted = Vec::new();
        match ticket.state {
            TicketState::Running { token, since } => {
                let latency = synod_core::Duration::from_nanos(since.elapsed().as_nanos() as u64);
                inner.limit.release(self.now(), token, latency, dropped);
                let limit = inner.limit.limit();
                promoted.extend(inner.bulkhead.set_running_limit(limit));
                promoted.extend(inner.bulkhead.leave(ticket_id).promoted);
            }
            TicketState::Waiting(_) => {
                inner.bulkhead.leave(ticket_id);
            }
        }
        for ticket_id in promoted {
            let state = self.running_state(&mut inner);
            let ticket = inner
                .tickets
                .get_mut(&ticket_id)
                .expect("promoted is known");
            if let TicketState::Waiting(wake) = std::mem::replace(&mut ticket.state, state) {
                // A waiter that gave up drops its permit next, which frees this slot.
                let _ = wake.send(Ok(()));
            }
        }
        self.publish(&inner);
    }

    /// A waiting request gave up at its deadline.
    pub fn waited_too_long(&self, priority: Priority, group: usize, waited_ms: u64) -> Refusal {
        let inner = self.lock();
        let refusal = refusal(&inner, RefusalCause::WaitedTooLong { waited_ms });
        self.metrics
            .record_admission(priority, self.group_name(group), refusal.outcome());
        refusal
    }

    pub fn figures(&self) -> AdmissionFigures {
        figures(&self.lock())
    }

    fn publish(&self, inner: &Inner) {
        self.metrics.set_admission(figures(inner));
    }
}

fn figures(inner: &Inner) -> AdmissionFigures {
    AdmissionFigures {
        limit: inner.bulkhead.running_limit(),
        running: inner.bulkhead.running_count(),
        queued: inner.bulkhead.queued_count(),
        rtt_long_us: inner
            .limit
            .rtt_long()
            .map_or(0, |rtt| rtt.as_nanos() / 1_000),
    }
}

fn refusal(inner: &Inner, cause: RefusalCause) -> Refusal {
    Refusal {
        running: inner.bulkhead.running_count(),
        limit: inner.bulkhead.running_limit(),
        queued: inner.bulkhead.queued_count(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(groups: Vec<GroupConfig>) -> AdmissionConfig {
        let section = ResilienceSection {
            queue_capacity: 1,
            reserved_for_high: 1,
            reserved_for_critical: 0,
            limit_initial: 2,
            limit_min: 2,
            limit_max: 8,
            groups,
            ..ResilienceSection::default()
        };
        AdmissionConfig::from_section(&section)
    }

    fn running(entry: Result<Entry, Refusal>) -> Arc<Permit> {
        match entry {
            Ok(Entry::Running(permit)) => permit,
            other => panic!("expected to run: {other:?}"),
        }
    }

    #[test]
    fn requests_run_then_wait_then_are_refused_with_retry_later() {
        // Checks the admission order at a limit of 2 and one waiting place: two high
        // requests run, low is refused for the reserved place, a high one waits and runs
        // when a running one finishes; the refusal text says overloaded and retry later.
        let admission = Admission::new(config(Vec::new()), Arc::new(Metrics::new()));
        let group = admission.group_of(None);
        let first = running(admission.enter(Priority::High, group));
        let _second = running(admission.enter(Priority::High, group));
        let refused = admission.enter(Priority::Low, group).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "synod is overloaded (2 requests running, limit 2, 0 waiting): the free slots are \
             kept for requests more important than this low priority one; retry later"
        );
        let Ok(Entry::Waiting(_waiting, mut woken)) = admission.enter(Priority::High, group) else {
            panic!("expected to wait");
        };
        assert!(woken.try_recv().is_err(), "not woken yet");
        let full = admission.enter(Priority::High, group).unwrap_err();
        assert!(matches!(
            full.cause,
            RefusalCause::Full {
                reserved: false,
                ..
            }
        ));
        drop(first);
        assert_eq!(woken.try_recv(), Ok(Ok(())));
        let figures = admission.figures();
        assert_eq!((figures.running, figures.queued), (2, 0));
    }

    #[test]
    fn a_group_cannot_take_more_than_its_share() {
        // Checks the per-group quota: "batch" may hold half of the 3 slots (2, rounded up),
        // so its third request is refused naming the group while the default group still
        // gets in; names match by prefix.
        let groups = vec![GroupConfig {
            name: "batch".into(),
            max_share_percent: 50,
        }];
        let admission = Admission::new(config(groups), Arc::new(Metrics::new()));
        let batch = admission.group_of(Some("batch-loader-7"));
        assert_eq!(admission.group_name(batch), "batch");
        let _one = running(admission.enter(Priority::High, batch));
        let _two = running(admission.enter(Priority::High, batch));
        let refused = admission.enter(Priority::High, batch).unwrap_err();
        assert_eq!(
            refused.cause,
            RefusalCause::GroupShare {
                group: "batch".into(),
                held: 2,
                quota: 2
            }
        );
        let other = admission.group_of(Some("web"));
        assert_eq!(admission.group_name(other), DEFAULT_GROUP);
        assert!(matches!(
            admission.enter(Priority::High, other),
            Ok(Entry::Waiting(..))
        ));
    }

    #[test]
    fn a_waiting_low_request_is_shed_for_a_critical_one() {
        // Checks displacement end to end: with every slot taken and a low request waiting,
        // a critical request takes its place and the low one is told it was shed.
        let mut config = config(Vec::new());
        config.bulkhead.reserved_for_high = 0;
        let admission = Admission::new(config, Arc::new(Metrics::new()));
        let group = admission.group_of(None);
        let _one = running(admission.enter(Priority::High, group));
        let _two = running(admission.enter(Priority::High, group));
        let Ok(Entry::Waiting(_low, mut woken)) = admission.enter(Priority::Low, group) else {
            panic!("expected to wait");
        };
        assert!(matches!(
            admission.enter(Priority::Critical, group),
            Ok(Entry::Waiting(..))
        ));
        let refusal = woken.try_recv().expect("answered").unwrap_err();
        assert_eq!(
            refusal.cause,
            RefusalCause::Shed {
                priority: Priority::Low
            }
        );
    }

    #[test]
    fn with_shedding_off_everything_is_admitted() {
        // Checks the switch the overload benchmark compares against: no limit, no refusal.
        let mut config = config(Vec::new());
        config.shedding = false;
        let admission = Admission::new(config, Arc::new(Metrics::new()));
        for _ in 0..100 {
            assert!(matches!(
                admission.enter(Priority::Low, 0),
                Ok(Entry::Unlimited)
            ));
        }
    }
}
