//! A bulkhead: a compartment that holds at most `running_max` calls running and
//! `queue_capacity` calls waiting, and refuses the next one at once, with the reason.
//!
//! Calls carry a [`Priority`]. Lower priorities are shed first in two ways:
//!
//! - Reserves. Of the compartment's `running_max + queue_capacity` slots, the last
//!   `reserved_for_critical` may be taken only by critical calls, and the
//!   `reserved_for_high` before them only by high or critical ones. A low-priority call is
//!   refused while the compartment still has room for more important work.
//! - Displacement. When a call would be refused and a call of lower priority is waiting, the
//!   newest waiting call of the lowest such priority is shed (handed back to the caller to
//!   refuse) and the new call waits in its place.
//!
//! When a running call leaves, the oldest waiting call of the highest priority starts.
//!
//! The number of calls allowed to run may move at run time within `[1, running_max]`
//! ([`Bulkhead::set_running_limit`], driven for instance by an adaptive
//! [`ConcurrencyLimit`](crate::ConcurrencyLimit)): the compartment then holds
//! `running_limit + queue_capacity` slots, reserves taken off the top. Lowering the limit
//! below the calls running stops no call; they drain as they finish. The bulkhead is pure
//! bookkeeping: it never waits, and the driver (the server's request path)
//! parks queued calls and wakes the ones [`Bulkhead::leave`] promotes.
//!
//! Invariant: a call waits only while every running slot under the running limit is taken.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use synod_core::{ConfigError, Validate};

use crate::breaker::check_within;

/// The most calls a config may let run at once.
pub const RUNNING_MAX: u32 = 100_000;
/// The longest queue a config may set.
pub const QUEUE_CAPACITY_MAX: u32 = 100_000;

/// How important a call is. Ordered from least to most important.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Work that can be refused first: background scans, batch loads.
    Low,
    /// Ordinary client requests.
    High,
    /// Work that keeps the cluster running: membership, health checks, operator commands.
    Critical,
}

impl Priority {
    /// From most to least important: the order in which waiting calls start.
    pub const ALL_DESCENDING: [Priority; 3] = [Priority::Critical, Priority::High, Priority::Low];

    pub const fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The compartment's size and reserves. [`BulkheadConfig::validate`] names a wrong field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Most calls running at once.
    pub running_max: u32,
    /// Most calls waiting for a running slot; 0 refuses whatever cannot run at once.
    pub queue_capacity: u32,
    /// Slots only high and critical calls may take.
    pub reserved_for_high: u32,
    /// Slots only critical calls may take.
    pub reserved_for_critical: u32,
}

impl Default for BulkheadConfig {
    fn default() -> BulkheadConfig {
        BulkheadConfig {
            running_max: 256,
            queue_capacity: 256,
            reserved_for_high: 64,
            reserved_for_critical: 16,
        }
    }
}

impl BulkheadConfig {
    /// Checks every field; the error names the field (callers add their section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_within("running_max", self.running_max, 1, RUNNING_MAX)?;
        check_within("queue_capacity", self.queue_capacity, 0, QUEUE_CAPACITY_MAX)?;
        let slots_count = self.running_max + self.queue_capacity;
        // Low priority keeps at least one slot: a compartment that refuses a priority
        // outright is a mistake, not a policy.
        check_within(
            "reserved_for_critical",
            self.reserved_for_critical,
            0,
            slots_count - 1,
        )?;
        check_within(
            "reserved_for_high",
            self.reserved_for_high,
            0,
            slots_count - 1 - self.reserved_for_critical,
        )
    }

    /// All the slots: running and waiting.
    pub fn slots_count(&self) -> u32 {
        self.running_max + self.queue_capacity
    }

    /// How many of the slots calls of `priority` may fill.
    pub fn slots_for(&self, priority: Priority) -> u32 {
        self.slots_for_running(self.running_max, priority)
    }

    /// How many slots calls of `priority` may fill while `running_limit` calls may run. The
    /// reserves come off the top; with a small limit they may leave low priority nothing.
    pub fn slots_for_running(&self, running_limit: u32, priority: Priority) -> u32 {
        let slots_count = running_limit.min(self.running_max) + self.queue_capacity;
        let reserved = match priority {
            Priority::Critical => 0,
            Priority::High => self.reserved_for_critical,
            Priority::Low => self.reserved_for_critical + self.reserved_for_high,
        };
        slots_count.saturating_sub(reserved)
    }
}

impl Validate for BulkheadConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        BulkheadConfig::validate(self)
    }
}

/// A call in the bulkhead, running or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketId(pub u64);

/// A call let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub ticket: TicketId,
    /// Whether it runs now; otherwise it waits until [`Bulkhead::leave`] promotes it.
    pub running: bool,
    /// A waiting call of lower priority that gave up its place: the caller refuses it.
    pub shed: Option<TicketId>,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// Every slot is taken.
    Full,
    /// The free slots are reserved for more important calls.
    ReservedForHigherPriority,
}

/// A call refused at once, with the numbers that explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub priority: Priority,
    pub reason: RefusedReason,
    pub running_count: u32,
    /// The running limit in force (`running_max` unless it was lowered).
    pub running_max: u32,
    pub queued_count: u32,
    pub queue_capacity: u32,
    /// How many slots calls of this priority may fill.
    pub slots_limit: u32,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            RefusedReason::Full => "the bulkhead is full",
            RefusedReason::ReservedForHigherPriority => {
                "the free slots are reserved for higher priorities"
            }
        };
        write!(
            f,
            "{} priority call refused: {why} ({} of {} running, {} of {} queued; {} priority \
             may fill {} slots)",
            self.priority,
            self.running_count,
            self.running_max,
            self.queued_count,
            self.queue_capacity,
            self.priority,
            self.slots_limit
        )
    }
}

/// What [`Bulkhead::leave`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// Whether the call that left was running (else it was waiting).
    pub was_running: bool,
    /// The waiting call that runs now in the freed slot.
    pub promoted: Option<TicketId>,
}

/// Counters of one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriorityStats {
    pub entered_running: u64,
    pub entered_queued: u64,
    /// Waiting calls that started running.
    pub promoted: u64,
    /// Waiting calls displaced by more important ones.
    pub shed: u64,
    pub refused_full: u64,
    pub refused_reserved: u64,
    pub left_running: u64,
    pub left_queued: u64,
}

/// Counters a caller can export as metrics, by priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkheadStats {
    pub low: PriorityStats,
    pub high: PriorityStats,
    pub critical: PriorityStats,
}

impl BulkheadStats {
    pub fn of(&self, priority: Priority) -> &PriorityStats {
        match priority {
            Priority::Low => &self.low,
            Priority::High => &self.high,
            Priority::Critical => &self.critical,
        }
    }

    fn of_mut(&mut self, priority: Priority) -> &mut PriorityStats {
        match priority {
            Priority::Low => &mut self.low,
            Priority::High => &mut self.high,
            Priority::Critical => &mut self.critical,
        }
    }
}

/// The compartment. Pure logic: no time, no waiting.
#[derive(Debug, Clone)]
pub struct Bulkhead {
    config: BulkheadConfig,
    /// The running calls and their priorities; at most `running_max`.
    running: BTreeMap<TicketId, Priority>,
    /// How many calls may start running now, within `[1, running_max]`. The running calls
    /// may exceed it for a while after it is lowered.
    running_limit: u32,
    /// The waiting calls by priority (indexed by `Priority::index`), oldest first; at most
    /// `queue_capacity` in all.
    queues: [VecDeque<TicketId>; 3],
    ticket_next: u64,
    stats: BulkheadStats,
}

impl Bulkhead {
    /// Panics on a config that [`BulkheadConfig::validate`] refuses.
    pub fn new(config: BulkheadConfig) -> Bulkhead {
        if let Err(error) = config.validate() {
            panic!("Bulkhead::new: {}", error.within("bulkhead"));
        }
        Bulkhead {
            config,
            running: BTreeMap::new(),
            running_limit: config.running_max,
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            ticket_next: 0,
            stats: BulkheadStats::default(),
        }
    }

    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    pub fn running_count(&self) -> u32 {
        self.running.len() as u32
    }

    /// How many calls may run at once now.
    pub fn running_limit(&self) -> u32 {
        self.running_limit
    }

    /// Moves the running limit (clamped to `[1, running_max]`) and starts waiting calls in
    /// the slots a higher limit opens, highest priority and oldest first; returns them.
    /// A lower limit stops nothing: calls start again once the running ones drain below it.
    pub fn set_running_limit(&mut self, limit: u32) -> Vec<TicketId> {
        self.running_limit = limit.clamp(1, self.config.running_max);
        let mut promoted = Vec::new();
        while self.running_count() < self.running_limit {
            let Some(ticket) = self.promote() else {
                break;
            };
            promoted.push(ticket);
        }
        self.invariants();
        promoted
    }

    /// How many slots calls of `priority` may fill at the current running limit.
    pub fn slots_now(&self, priority: Priority) -> u32 {
        self.config.slots_for_running(self.running_limit, priority)
    }

    pub fn queued_count(&self) -> u32 {
        self.queues.iter().map(VecDeque::len).sum::<usize>() as u32
    }

    pub fn queued_count_of(&self, priority: Priority) -> u32 {
        self.queues[priority.index()].len() as u32
    }

    pub fn stats(&self) -> BulkheadStats {
        self.stats
    }

    /// Lets a call of `priority` in (running or waiting), or refuses it at once.
    pub fn try_enter(&mut self, priority: Priority) -> Result<Admitted, Refused> {
        let occupied = self.running_count() + self.queued_count();
        let result = if occupied < self.slots_now(priority) {
            Ok(self.admit(priority))
        } else if let Some(shed) = self.displace_below(priority) {
            let mut admitted = self.admit(priority);
            admitted.shed = Some(shed);
            Ok(admitted)
        } else {
            Err(self.refuse(priority, occupied))
        };
        self.invariants();
        result
    }

    /// A call leaves: it finished running, or its caller gave up waiting. A running call's
    /// slot goes to the oldest waiting call of the highest priority. Panics for a ticket that
    /// is not in the bulkhead (it left already, or was shed): that is the caller's bug.
    pub fn leave(&mut self, ticket: TicketId) -> Left {
        let left = if let Some(priority) = self.running.remove(&ticket) {
            self.stats.of_mut(priority).left_running += 1;
            let promoted = if self.running_count() < self.running_limit {
                self.promote()
            } else {
                None
            };
            Left {
                was_running: true,
                promoted,
            }
        } else {
            let priority = self
                .remove_queued(ticket)
                .unwrap_or_else(|| panic!("{ticket:?} is not in the bulkhead"));
            self.stats.of_mut(priority).left_queued += 1;
            Left {
                was_running: false,
                promoted: None,
            }
        };
        self.invariants();
        left
    }

    fn admit(&mut self, priority: Priority) -> Admitted {
        let ticket = TicketId(self.ticket_next);
        self.ticket_next += 1;
        let running = self.running_count() < self.running_limit;
        if running {
            self.running.insert(ticket, priority);
            self.stats.of_mut(priority).entered_running += 1;
        } else {
            assert!(
                self.queued_count() < self.config.queue_capacity,
                "admit with a full queue"
            );
            self.queues[priority.index()].push_back(ticket);
            self.stats.of_mut(priority).entered_queued += 1;
        }
        Admitted {
            ticket,
            running,
            shed: None,
        }
    }

    /// Sheds the newest waiting call of the lowest priority below `priority`, if any.
    fn displace_below(&mut self, priority: Priority) -> Option<TicketId> {
        let lower = Priority::ALL_DESCENDING
            .into_iter()
            .rev()
            .take_while(|lower| *lower < priority)
            .find(|lower| !self.queues[lower.index()].is_empty())?;
        let shed = self.queues[lower.index()].pop_back().expect("not empty");
        self.stats.of_mut(lower).shed += 1;
        Some(shed)
    }

    fn refuse(&mut self, priority: Priority, occupied: u32) -> Refused {
        let reason = if occupied >= self.slots_now(Priority::Critical) {
            self.stats.of_mut(priority).refused_full += 1;
            RefusedReason::Full
        } else {
            self.stats.of_mut(priority).refused_reserved += 1;
            RefusedReason::ReservedForHigherPriority
        };
        Refused {
            priority,
            reason,
            running_count: self.running_count(),
            running_max: self.running_limit,
            queued_count: self.queued_count(),
            queue_capacity: self.config.queue_capacity,
            slots_limit: self.slots_now(priority),
        }
    }

    /// Starts the oldest waiting call of the highest priority in a free running slot.
    fn promote(&mut self) -> Option<TicketId> {
        let priority = Priority::ALL_DESCENDING
            .into_iter()
            .find(|priority| !self.queues[priority.index()].is_empty())?;
        let ticket = self.queues[priority.index()]
            .pop_front()
            .expect("not empty");
        self.running.insert(ticket, priority);
        self.stats.of_mut(priority).promoted += 1;
        Some(ticket)
    }

    /// Removes a waiting ticket: a scan of its queue, bounded by `queue_capacity`.
    fn remove_queued(&mut self, ticket: TicketId) -> Option<Priority> {
        for priority in Priority::ALL_DESCENDING {
            let queue = &mut self.queues[priority.index()];
            if let Some(position) = queue.iter().position(|queued| *queued == ticket) {
                queue.remove(position);
                return Some(priority);
            }
        }
        None
    }

    /// Checks the bulkhead's state; cheap enough to run after every call.
    pub fn invariants(&self) {
        let (running, queued) = (self.running_count(), self.queued_count());
        let limit = self.running_limit;
        assert!(running <= self.config.running_max, "{running} running");
        assert!(
            limit >= 1 && limit <= self.config.running_max,
            "running limit {limit}"
        );
        assert!(queued <= self.config.queue_capacity, "{queued} queued");
        assert!(
            queued == 0 || running >= limit,
            "a call waits while a running slot is free"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 running, 4 waiting: low may fill 6 - 1 - 1 = 4 slots, high 5, critical 6.
    fn config() -> BulkheadConfig {
        BulkheadConfig {
            running_max: 2,
            queue_capacity: 4,
            reserved_for_high: 1,
            reserved_for_critical: 1,
        }
    }

    fn enter(bulkhead: &mut Bulkhead, priority: Priority) -> Admitted {
        bulkhead.try_enter(priority).expect("admitted")
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expected {
        Runs,
        Waits,
        /// Waits in the place of the ticket admitted at this step.
        WaitsShedding(usize),
        Refused(RefusedReason),
    }

    #[test]
    fn calls_run_then_queue_then_are_refused_by_priority() {
        // Checks the admission table: low fills its 4 slots and is refused for the reserve,
        // high takes its 5th slot and then the places of waiting low calls, critical the 6th
        // and then a high call's place, and low is finally refused because all is full.
        use Expected::*;
        use Priority::*;
        let mut bulkhead = Bulkhead::new(config());
        let steps = [
            (Low, Runs),
            (Low, Runs),
            (Low, Waits),
            (Low, Waits),
            (Low, Refused(RefusedReason::ReservedForHigherPriority)),
            (High, Waits),
            (High, WaitsShedding(3)),
            (High, WaitsShedding(2)),
            (High, Refused(RefusedReason::ReservedForHigherPriority)),
            (Critical, Waits),
            (Critical, WaitsShedding(7)),
            (Low, Refused(RefusedReason::Full)),
        ];
        let mut tickets = Vec::new();
        for (index, (priority, expected)) in steps.into_iter().enumerate() {
            let result = bulkhead.try_enter(priority);
            let actual = match result {
                Ok(admitted) => {
                    let shed = admitted.shed.map(|shed| {
                        tickets
                            .iter()
                            .position(|ticket| *ticket == Some(shed))
                            .expect("a known ticket")
                    });
                    tickets.push(Some(admitted.ticket));
                    match (admitted.running, shed) {
                        (true, None) => Runs,
                        (false, None) => Waits,
                        (false, Some(step)) => WaitsShedding(step),
                        (true, Some(_)) => panic!("step {index}: shed while a slot is free"),
                    }
                }
                Err(refused) => {
                    tickets.push(None);
                    Refused(refused.reason)
                }
            };
            assert_eq!(actual, expected, "step {index}: {priority}");
        }
        let refused = bulkhead.try_enter(Priority::Low).unwrap_err();
        assert_eq!((refused.running_count, refused.queued_count), (2, 4));
        assert_eq!(refused.slots_limit, 4);
        assert_eq!(
            refused.to_string(),
            "low priority call refused: the bulkhead is full (2 of 2 running, 4 of 4 queued; \
             low priority may fill 4 slots)"
        );
        let stats = bulkhead.stats();
        assert_eq!((stats.low.refused_reserved, stats.low.refused_full), (1, 2));
        assert_eq!((stats.low.shed, stats.high.shed), (2, 1));
        assert_eq!(stats.high.refused_reserved, 1);
    }

    #[test]
    fn a_full_bulkhead_sheds_the_newest_lowest_priority_waiter() {
        // Checks displacement: with every slot taken, a critical call sheds the newest waiting
        // low call; a high call then sheds the other low one; a further high call, with only
        // equal or higher priorities waiting, is refused.
        let mut bulkhead = Bulkhead::new(BulkheadConfig {
            reserved_for_high: 0,
            reserved_for_critical: 0,
            ..config()
        });
        let mut low_waiting = Vec::new();
        for index in 0..4 {
            let admitted = enter(&mut bulkhead, Priority::Low);
            if index >= 2 {
                low_waiting.push(admitted.ticket);
            }
        }
        enter(&mut bulkhead, Priority::High);
        enter(&mut bulkhead, Priority::High);
        let critical = enter(&mut bulkhead, Priority::Critical);
        assert_eq!(critical.shed, Some(low_waiting[1]));
        assert!(!critical.running);
        let high = enter(&mut bulkhead, Priority::High);
        assert_eq!(high.shed, Some(low_waiting[0]));
        let refused = bulkhead.try_enter(Priority::High).unwrap_err();
        assert_eq!(refused.reason, RefusedReason::Full);
        assert_eq!(bulkhead.stats().low.shed, 2);
        assert_eq!(bulkhead.queued_count_of(Priority::Low), 0);
    }

    #[test]
    fn leaving_promotes_the_oldest_waiter_of_the_highest_priority() {
        // Checks the start order: critical before high before low, oldest first within a
        // priority; and that a waiter that leaves is removed without promoting anyone.
        let mut bulkhead = Bulkhead::new(BulkheadConfig {
            reserved_for_high: 0,
            reserved_for_critical: 0,
            ..config()
        });
        let first = enter(&mut bulkhead, Priority::Low).ticket;
        let second = enter(&mut bulkhead, Priority::Low).ticket;
        let low = enter(&mut bulkhead, Priority::Low).ticket;
        let high_old = enter(&mut bulkhead, Priority::High).ticket;
        let high_new = enter(&mut bulkhead, Priority::High).ticket;
        let critical = enter(&mut bulkhead, Priority::Critical).ticket;
        let gone = Left {
            was_running: false,
            promoted: None,
        };
        assert_eq!(bulkhead.leave(high_new), gone);
        let order = [(first, critical), (second, high_old), (critical, low)];
        for (leaving, promoted) in order {
            let left = bulkhead.leave(leaving);
            assert_eq!(
                left,
                Left {
                    was_running: true,
                    promoted: Some(promoted)
                }
            );
        }
        bulkhead.leave(high_old);
        bulkhead.leave(low);
        assert_eq!((bulkhead.running_count(), bulkhead.queued_count()), (0, 0));
        assert_eq!(bulkhead.stats().high.left_queued, 1);
    }

    #[test]
    fn the_running_limit_moves_and_the_slots_follow_it() {
        // Checks a moving running limit: lowered, running calls are not stopped, nothing new
        // starts until they drain below it, and the compartment shrinks with it (low priority
        // is refused sooner); raised, waiting calls start at once in priority order.
        let mut bulkhead = Bulkhead::new(BulkheadConfig {
            running_max: 4,
            queue_capacity: 2,
            reserved_for_high: 1,
            reserved_for_critical: 0,
        });
        let first = enter(&mut bulkhead, Priority::High).ticket;
        let second = enter(&mut bulkhead, Priority::High).ticket;
        assert_eq!(bulkhead.set_running_limit(1), Vec::new());
        assert_eq!(bulkhead.running_count(), 2);
        // Slots at limit 1: 1 + 2 = 3; low may fill 2, and 2 are taken.
        let refused = bulkhead.try_enter(Priority::Low).unwrap_err();
        assert_eq!(refused.reason, RefusedReason::ReservedForHigherPriority);
        assert_eq!((refused.running_max, refused.slots_limit), (1, 2));
        let waiting = enter(&mut bulkhead, Priority::High);
        assert!(!waiting.running);
        let gone = Left {
            was_running: true,
            promoted: None,
        };
        assert_eq!(
            bulkhead.leave(first),
            gone,
            "still at the limit: nothing starts"
        );
        let promoted = bulkhead.leave(second).promoted;
        assert_eq!(promoted, Some(waiting.ticket));
        let low = enter(&mut bulkhead, Priority::Low);
        let high = enter(&mut bulkhead, Priority::High);
        assert!(!low.running && !high.running);
        assert_eq!(
            bulkhead.set_running_limit(99),
            vec![high.ticket, low.ticket]
        );
        assert_eq!(bulkhead.running_limit(), 4);
        assert_eq!((bulkhead.running_count(), bulkhead.queued_count()), (3, 0));
    }

    #[test]
    #[should_panic(expected = "is not in the bulkhead")]
    fn leaving_twice_is_a_bug() {
        // Checks that a ticket that already left cannot leave again (it would free a slot
        // another call holds).
        let mut bulkhead = Bulkhead::new(config());
        let ticket = enter(&mut bulkhead, Priority::High).ticket;
        bulkhead.leave(ticket);
        bulkhead.leave(ticket);
    }

    #[test]
    fn validation_names_the_field() {
        // Checks that zero running slots and reserves that leave low priority nothing are
        // refused by name, with the accepted range.
        type Change = fn(&mut BulkheadConfig);
        let cases: [(Change, &str); 3] = [
            (
                |config| config.running_max = 0,
                "running_max must be in 1..=100000, got 0",
            ),
            (
                |config| config.reserved_for_critical = 6,
                "reserved_for_critical must be in 0..=5, got 6",
            ),
            (
                |config| config.reserved_for_high = 5,
                "reserved_for_high must be in 0..=4, got 5",
            ),
        ];
        assert_eq!(BulkheadConfig::default().validate(), Ok(()));
        for (change, message) in cases {
            let mut changed = config();
            change(&mut changed);
            let error = changed.validate().unwrap_err();
            assert_eq!(error.to_string(), format!("config: {message}"));
        }
    }
}
