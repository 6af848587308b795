//! One node's actors: cells, mailboxes, the ready queue, timers, and supervision.
//!
//! The [`System`] is driven by an executor. The executor feeds it time (through
//! [`Services::now`]), network arrivals, disk completions, and asks it to run. Everything here
//! is deterministic: the order in which actors run depends only on the order of inputs.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use synod_core::limits::{
    ACTORS_COUNT_MAX, CHILDREN_COUNT_MAX, DISK_REQUESTS_COUNT_MAX, TIMERS_COUNT_MAX,
};
use synod_core::{BoundedQueue, ConfigError, Instant, NodeId, QueueFull, Validate};

use crate::actor::{
    Actor, ActorId, Addr, ChildSpec, ErasedActor, ExitReason, Overflow, Restart, Strategy,
    SupervisorSpec,
};
use crate::context::{BindError, Context, SendError, SpawnError};
use crate::services::{
    DiskCompletion, DiskReply, DiskRequestId, DiskSubmitError, Inbound, Port, Services,
};

type AnyMessage = Box<dyn Any + Send>;
type DiskConvert = Box<dyn FnOnce(DiskCompletion) -> AnyMessage + Send>;
type Factory = Box<dyn FnMut() -> Box<dyn ErasedActor> + Send>;

/// The most panic records a system keeps for inspection (older ones are only counted).
pub const PANIC_RECORDS_MAX: usize = 64;
/// Bound on an actor's queue of system messages (start, stop, child exits).
const SYSTEM_QUEUE_CAPACITY: usize = CHILDREN_COUNT_MAX + 8;
/// How many messages one actor handles before the next ready actor gets a turn.
pub const DISPATCH_BATCH_DEFAULT: usize = 64;

/// Identifies a pending timer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TimerId(u64);

/// Settings of one node's actor system.
#[derive(Clone, Debug)]
pub struct SystemConfig {
    pub node: NodeId,
    /// How the system supervises its top-level actors. Exceeding this intensity halts the
    /// node, as the failure of an Erlang node's top supervisor does.
    pub root_supervision: SupervisorSpec,
    pub dispatch_batch: usize,
}

impl SystemConfig {
    pub fn new(node: NodeId) -> SystemConfig {
        SystemConfig {
            node,
            root_supervision: SupervisorSpec::default(),
            dispatch_batch: DISPATCH_BATCH_DEFAULT,
        }
    }
}

impl Validate for SystemConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.root_supervision
            .validate()
            .map_err(|error| error.within("root_supervision"))?;
        synod_core::config::check_range("dispatch_batch", self.dispatch_batch, 1, 1 << 16)
    }
}

/// Whether the node's system still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemStatus {
    Running,
    /// The root supervisor gave up; every actor has been stopped.
    Halted {
        reason: String,
    },
}

/// Where an actor is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorState {
    Starting,
    Running,
    /// Waiting out the restart backoff.
    BackingOff,
    Stopped,
}

/// A caught panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicRecord {
    pub actor: String,
    pub message: String,
    pub at: Instant,
}

/// Counters for the whole system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemStats {
    pub messages_processed_count: u64,
    pub timers_fired_count: u64,
    pub network_delivered_count: u64,
    pub network_unroutable_count: u64,
    pub network_dropped_count: u64,
    pub disk_stale_completions_count: u64,
    pub panics_count: u64,
    pub restarts_count: u64,
    pub escalations_count: u64,
}

/// One line of the live supervision tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorInfo {
    pub id: ActorId,
    pub parent: Option<ActorId>,
    pub depth: usize,
    pub name: String,
    pub type_name: &'static str,
    pub state: ActorState,
    pub incarnation: u32,
    pub mailbox_len: usize,
    pub mailbox_capacity: usize,
    pub mailbox_high_water: usize,
    pub restarts_count: u64,
    pub processed_count: u64,
    pub dropped_count: u64,
    pub rejected_count: u64,
    pub panics_count: u64,
}

/// What happened to a network arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// No live actor is bound to the port; the message was counted and dropped.
    Unroutable,
    /// The receiving mailbox was full; the message was counted and dropped.
    Dropped,
}

enum SystemMessage {
    Start,
    Stop,
    ChildExited { child: ActorId, reason: ExitReason },
}

#[derive(Default, Clone, Copy)]
struct ActorStats {
    restarts_count: u64,
    processed_count: u64,
    dropped_count: u64,
    rejected_count: u64,
    panics_count: u64,
}

struct Cell {
    name: String,
    type_name: &'static str,
    parent: Option<ActorId>,
    children: Vec<ActorId>,
    actor: Option<Box<dyn ErasedActor>>,
    factory: Factory,
    restart: Restart,
    supervision: SupervisorSpec,
    overflow: Overflow,
    system_queue: VecDeque<SystemMessage>,
    /// Timer and disk deliveries the actor asked for itself; bounded by the timer and disk
    /// limits rather than by the mailbox capacity, so they are never dropped.
    internal: VecDeque<AnyMessage>,
    mailbox: BoundedQueue<AnyMessage>,
    state: ActorState,
    incarnation: u32,
    scheduled: bool,
    /// Restart times of this actor's children within the supervision period.
    child_restarts: VecDeque<Instant>,
    /// This actor's own restart times, for its backoff.
    own_restarts: VecDeque<Instant>,
    stats: ActorStats,
}

impl Cell {
    fn has_work(&self) -> bool {
        if !self.system_queue.is_empty() {
            return true;
        }
        self.state == ActorState::Running && !(self.internal.is_empty() && self.mailbox.is_empty())
    }

    fn push_system(&mut self, message: SystemMessage) {
        assert!(
            self.system_queue.len() < SYSTEM_QUEUE_CAPACITY,
            "system queue overflow"
        );
        self.system_queue.push_back(message);
    }
}

struct Slot {
    generation: u32,
    cell: Option<Cell>,
}

enum TimerPayload {
    Message(AnyMessage),
    /// Restart a group of children once their backoff has passed.
    Restart(Vec<ActorId>),
}

struct TimerEntry {
    /// The actor the timer belongs to; `None` for the root supervisor.
    owner: Option<ActorId>,
    incarnation: u32,
    payload: TimerPayload,
}

struct PortBinding {
    actor: ActorId,
    incarnation: u32,
    convert: fn(Inbound) -> AnyMessage,
}

struct DiskPending {
    actor: ActorId,
    incarnation: u32,
    convert: DiskConvert,
}

/// The system state reachable from a [`Context`]: everything but the executor's services.
pub(crate) struct Core {
    pub(crate) node: NodeId,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    live_count: usize,
    ready: VecDeque<ActorId>,
    timers: BTreeMap<(Instant, u64), TimerEntry>,
    timer_deadlines: BTreeMap<u64, Instant>,
    timer_sequence: u64,
    ports: BTreeMap<Port, PortBinding>,
    disk_pending: BTreeMap<u64, DiskPending>,
    disk_sequence: u64,
    roots: Vec<ActorId>,
    root_restarts: VecDeque<Instant>,
    root_supervision: SupervisorSpec,
    status: SystemStatus,
    pending_exit: Option<ExitReason>,
    now: Instant,
    stats: SystemStats,
    panics: VecDeque<PanicRecord>,
}

impl Core {
    fn cell(&self, id: ActorId) -> Option<&Cell> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.cell.as_ref()
    }

    fn cell_mut(&mut self, id: ActorId) -> Option<&mut Cell> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.cell.as_mut()
    }

    pub(crate) fn name_of(&self, id: ActorId) -> &str {
        self.cell(id).map_or("<gone>", |cell| cell.name.as_str())
    }

    pub(crate) fn parent_of(&self, id: ActorId) -> Option<ActorId> {
        self.cell(id).and_then(|cell| cell.parent)
    }

    fn schedule(&mut self, id: ActorId) {
        let Some(cell) = self.cell_mut(id) else {
            return;
        };
        if cell.scheduled || !cell.has_work() {
            return;
        }
        cell.scheduled = true;
        self.ready.push_back(id);
    }

    pub(crate) fn send<N: Send + 'static>(
        &mut self,
        to: Addr<N>,
        message: N,
    ) -> Result<(), SendError<N>> {
        let unbox = |boxed: AnyMessage| *boxed.downcast::<N>().expect("same type");
        let Some(cell) = self.cell_mut(to.id) else {
            return Err(SendError::Closed(message));
        };
        if cell.state == ActorState::Stopped {
            return Err(SendError::Closed(message));
        }
        match push_with_policy(cell, Box::new(message)) {
            Ok(()) => {
                self.schedule(to.id);
                Ok(())
            }
            Err(rejected) => Err(SendError::Full(unbox(rejected))),
        }
    }

    pub(crate) fn set_timer(
        &mut self,
        owner: ActorId,
        deadline: Instant,
        message: AnyMessage,
    ) -> TimerId {
        let incarnation = self.cell(owner).map_or(0, |cell| cell.incarnation);
        self.insert_timer(
            Some(owner),
            incarnation,
            deadline,
            TimerPayload::Message(message),
        )
    }

    fn insert_timer(
        &mut self,
        owner: Option<ActorId>,
        incarnation: u32,
        deadline: Instant,
        payload: TimerPayload,
    ) -> TimerId {
        assert!(
            self.timers.len() < TIMERS_COUNT_MAX,
            "timer limit of {TIMERS_COUNT_MAX} reached: an actor is leaking timers"
        );
        self.timer_sequence += 1;
        let sequence = self.timer_sequence;
        self.timers.insert(
            (deadline, sequence),
            TimerEntry {
                owner,
                incarnation,
                payload,
            },
        );
        self.timer_deadlines.insert(sequence, deadline);
        TimerId(sequence)
    }

    pub(crate) fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.timer_deadlines.remove(&timer.0) {
            Some(deadline) => self.timers.remove(&(deadline, timer.0)).is_some(),
            None => false,
        }
    }

    pub(crate) fn spawn<A: Actor>(
        &mut self,
        parent: Option<ActorId>,
        mut spec: ChildSpec<A>,
    ) -> Result<Addr<A::Message>, SpawnError> {
        spec.validate()?;
        if self.live_count >= ACTORS_COUNT_MAX {
            return Err(SpawnError::Limit {
                what: "actors per node",
                limit: ACTORS_COUNT_MAX,
            });
        }
        let siblings_count = match parent {
            Some(parent) => self.cell(parent).map_or(0, |cell| cell.children.len()),
            None => self.roots.len(),
        };
        if siblings_count >= CHILDREN_COUNT_MAX {
            return Err(SpawnError::Limit {
                what: "children per actor",
                limit: CHILDREN_COUNT_MAX,
            });
        }
        let first: Box<dyn ErasedActor> = Box::new((spec.factory)());
        let mut factory = spec.factory;
        let erased: Factory = Box::new(move || Box::new(factory()) as Box<dyn ErasedActor>);
        let mut system_queue = VecDeque::new();
        system_queue.push_back(SystemMessage::Start);
        let cell = Cell {
            name: spec.name,
            type_name: std::any::type_name::<A>(),
            parent,
            children: Vec::new(),
            actor: Some(first),
            factory: erased,
            restart: spec.restart,
            supervision: spec.supervision,
            overflow: spec.overflow,
            system_queue,
            internal: VecDeque::new(),
            mailbox: BoundedQueue::new(spec.mailbox_capacity),
            state: ActorState::Starting,
            incarnation: 0,
            scheduled: false,
            child_restarts: VecDeque::new(),
            own_restarts: VecDeque::new(),
            stats: ActorStats::default(),
        };
        let id = self.allocate(cell);
        match parent {
            Some(parent) => self
                .cell_mut(parent)
                .expect("parent is live")
                .children
                .push(id),
            None => self.roots.push(id),
        }
        self.schedule(id);
        Ok(Addr::new(id))
    }

    fn allocate(&mut self, cell: Cell) -> ActorId {
        self.live_count += 1;
        match self.free_slots.pop() {
            Some(slot) => {
                let entry = &mut self.slots[slot as usize];
                entry.cell = Some(cell);
                ActorId {
                    slot,
                    generation: entry.generation,
                }
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("slot count fits u32");
                self.slots.push(Slot {
                    generation: 0,
                    cell: Some(cell),
                });
                ActorId {
                    slot,
                    generation: 0,
                }
            }
        }
    }

    pub(crate) fn request_stop(&mut self, id: ActorId) {
        let Some(cell) = self.cell_mut(id) else {
            return;
        };
        if cell.state == ActorState::Stopped {
            return;
        }
        cell.push_system(SystemMessage::Stop);
        self.schedule(id);
    }

    pub(crate) fn set_pending_exit(&mut self, reason: ExitReason) {
        let replace = match &self.pending_exit {
            None => true,
            Some(existing) => existing.is_normal() && !reason.is_normal(),
        };
        if replace {
            self.pending_exit = Some(reason);
        }
    }

    pub(crate) fn bind(
        &mut self,
        port: Port,
        actor: ActorId,
        convert: fn(Inbound) -> AnyMessage,
    ) -> Result<(), BindError> {
        if let Some(existing) = self.ports.get(&port) {
            let owner_live = self.cell(existing.actor).is_some_and(|cell| {
                cell.incarnation == existing.incarnation && cell.state != ActorState::Stopped
            });
            if owner_live && existing.actor != actor {
                return Err(BindError::InUse {
                    port,
                    owner: existing.actor,
                });
            }
        }
        let incarnation = self.cell(actor).map_or(0, |cell| cell.incarnation);
        self.ports.insert(
            port,
            PortBinding {
                actor,
                incarnation,
                convert,
            },
        );
        Ok(())
    }

    pub(crate) fn register_disk(
        &mut self,
        actor: ActorId,
        convert: DiskConvert,
    ) -> Result<DiskRequestId, DiskSubmitError> {
        if self.disk_pending.len() >= DISK_REQUESTS_COUNT_MAX {
            return Err(DiskSubmitError::TooManyRequests {
                count: self.disk_pending.len(),
                limit: DISK_REQUESTS_COUNT_MAX,
            });
        }
        let incarnation = self.cell(actor).map_or(0, |cell| cell.incarnation);
        self.disk_sequence += 1;
        self.disk_pending.insert(
            self.disk_sequence,
            DiskPending {
                actor,
                incarnation,
                convert,
            },
        );
        Ok(DiskRequestId(self.disk_sequence))
    }

    fn supervision_of(&self, parent: Option<ActorId>) -> SupervisorSpec {
        match parent {
            Some(parent) => self
                .cell(parent)
                .map_or(self.root_supervision, |cell| cell.supervision),
            None => self.root_supervision,
        }
    }

    /// Records a restart under `parent`; returns the count in the period if the intensity
    /// is exceeded.
    fn record_restart(&mut self, parent: Option<ActorId>) -> Result<(), u32> {
        let spec = self.supervision_of(parent);
        let now = self.now;
        let window = match parent {
            Some(parent) => match self.cell_mut(parent) {
                Some(cell) => &mut cell.child_restarts,
                None => return Ok(()),
            },
            None => &mut self.root_restarts,
        };
        window.push_back(now);
        while window
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > spec.period)
        {
            window.pop_front();
        }
        let count = u32::try_from(window.len()).unwrap_or(u32::MAX);
        if count > spec.intensity {
            window.clear();
            return Err(count);
        }
        Ok(())
    }

    fn children_of(&self, parent: Option<ActorId>) -> Vec<ActorId> {
        match parent {
            Some(parent) => self
                .cell(parent)
                .map_or_else(Vec::new, |cell| cell.children.clone()),
            None => self.roots.clone(),
        }
    }

    fn record_panic(&mut self, actor: ActorId, message: String) {
        self.stats.panics_count += 1;
        let name = self.name_of(actor).to_string();
        if let Some(cell) = self.cell_mut(actor) {
            cell.stats.panics_count += 1;
        }
        if self.panics.len() >= PANIC_RECORDS_MAX {
            self.panics.pop_front();
        }
        self.panics.push_back(PanicRecord {
            actor: name,
            message,
            at: self.now,
        });
    }
}

/// Pushes a message following the cell's overflow policy; hands it back when rejected.
fn push_with_policy(cell: &mut Cell, message: AnyMessage) -> Result<(), AnyMessage> {
    match cell.mailbox.push_back(message) {
        Ok(()) => Ok(()),
        Err(QueueFull(message)) => match cell.overflow {
            Overflow::Reject => {
                cell.stats.rejected_count += 1;
                Err(message)
            }
            Overflow::DropNewest => {
                cell.stats.dropped_count += 1;
                Ok(())
            }
            Overflow::DropOldest => {
                cell.stats.dropped_count += 1;
                cell.mailbox.pop_front();
                cell.mailbox
                    .push_back(message)
                    .map_err(|QueueFull(message)| message)
            }
        },
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return (*text).to_string();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "panic with a non-text payload".to_string()
}

/// One node's actor system, driven by an executor.
pub struct System {
    core: Core,
    dispatch_batch: usize,
}

impl System {
    /// A system with no actors. Panics on an invalid config (a programming error: configs
    /// from users are validated where they are read).
    pub fn new(config: SystemConfig) -> System {
        if let Err(error) = config.validate() {
            panic!("invalid actor system config: {error}");
        }
        System {
            core: Core {
                node: config.node,
                slots: Vec::new(),
                free_slots: Vec::new(),
                live_count: 0,
                ready: VecDeque::new(),
                timers: BTreeMap::new(),
                timer_deadlines: BTreeMap::new(),
                timer_sequence: 0,
                ports: BTreeMap::new(),
                disk_pending: BTreeMap::new(),
                disk_sequence: 0,
                roots: Vec::new(),
                root_restarts: VecDeque::new(),
                root_supervision: config.root_supervision,
                status: SystemStatus::Running,
                pending_exit: None,
                now: Instant::ZERO,
                stats: SystemStats::default(),
                panics: VecDeque::new(),
            },
            dispatch_batch: config.dispatch_batch,
        }
    }

    pub fn node(&self) -> NodeId {
        self.core.node
    }

    pub fn status(&self) -> &SystemStatus {
        &self.core.status
    }

    pub fn stats(&self) -> &SystemStats {
        &self.core.stats
    }

    /// The most recent caught panics (at most [`PANIC_RECORDS_MAX`]).
    pub fn panics(&self) -> impl Iterator<Item = &PanicRecord> {
        self.core.panics.iter()
    }

    /// Spawns a top-level actor supervised by the system's root supervisor.
    pub fn spawn<A: Actor>(&mut self, spec: ChildSpec<A>) -> Result<Addr<A::Message>, SpawnError> {
        if self.core.status != SystemStatus::Running {
            return Err(SpawnError::Stopping);
        }
        self.core.spawn(None, spec)
    }

    /// Sends a message from outside the system (an executor, a test, a front end).
    pub fn send<M: Send + 'static>(&mut self, to: Addr<M>, message: M) -> Result<(), SendError<M>> {
        self.core.send(to, message)
    }

    /// Hands a network arrival to the actor bound to its port.
    pub fn deliver(&mut self, inbound: Inbound) -> Delivery {
        let Some(binding) = self.core.ports.get(&inbound.port) else {
            self.core.stats.network_unroutable_count += 1;
            return Delivery::Unroutable;
        };
        let (actor, incarnation, convert) = (binding.actor, binding.incarnation, binding.convert);
        let Some(cell) = self.core.cell_mut(actor) else {
            self.core.stats.network_unroutable_count += 1;
            return Delivery::Unroutable;
        };
        if cell.incarnation != incarnation || cell.state == ActorState::Stopped {
            self.core.stats.network_unroutable_count += 1;
            return Delivery::Unroutable;
        }
        let queued = cell.mailbox.len();
        match push_with_policy(cell, convert(inbound)) {
            Ok(()) if cell.mailbox.len() > queued => {
                self.core.stats.network_delivered_count += 1;
                self.core.schedule(actor);
                Delivery::Queued
            }
            Ok(()) if cell.overflow == Overflow::DropOldest => {
                self.core.stats.network_delivered_count += 1;
                self.core.stats.network_dropped_count += 1;
                self.core.schedule(actor);
                Delivery::Queued
            }
            Ok(()) | Err(_) => {
                self.core.stats.network_dropped_count += 1;
                Delivery::Dropped
            }
        }
    }

    /// Completes a disk request. Completions for an incarnation that has since died are
    /// counted and dropped: its successor recovers from what is on disk.
    pub fn complete_disk(
        &mut self,
        id: DiskRequestId,
        result: Result<DiskReply, crate::DiskError>,
    ) {
        let Some(pending) = self.core.disk_pending.remove(&id.0) else {
            self.core.stats.disk_stale_completions_count += 1;
            return;
        };
        let live = self.core.cell(pending.actor).is_some_and(|cell| {
            cell.incarnation == pending.incarnation && cell.state != ActorState::Stopped
        });
        if !live {
            self.core.stats.disk_stale_completions_count += 1;
            return;
        }
        let message = (pending.convert)(DiskCompletion { id, result });
        if let Some(cell) = self.core.cell_mut(pending.actor) {
            cell.internal.push_back(message);
        }
        self.core.schedule(pending.actor);
    }

    /// The earliest pending timer, for the executor to wake at.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.core
            .timers
            .keys()
            .next()
            .map(|(deadline, _)| *deadline)
    }

    /// Whether no actor has work queued (timers may still be pending).
    pub fn is_idle(&self) -> bool {
        self.core.ready.is_empty()
    }

    /// Fires due timers, then handles up to `budget` messages. Returns how many were handled.
    pub fn run(&mut self, services: &mut dyn Services, budget: usize) -> usize {
        self.core.now = services.now();
        self.fire_timers(services);
        let mut handled = 0;
        while handled < budget {
            let Some(id) = self.core.ready.pop_front() else {
                break;
            };
            if let Some(cell) = self.core.cell_mut(id) {
                cell.scheduled = false;
            }
            let incarnation = self.core.cell(id).map(|cell| cell.incarnation);
            let mut turn = 0;
            while turn < self.dispatch_batch && handled < budget {
                if !self.dispatch_one(id, services) {
                    break;
                }
                turn += 1;
                handled += 1;
                // An exit ends the turn, so restarted siblings start in their start order.
                if self.core.cell(id).map(|cell| cell.incarnation) != incarnation {
                    break;
                }
            }
            self.core.schedule(id);
        }
        self.core.stats.messages_processed_count += handled as u64;
        handled
    }

    fn fire_timers(&mut self, services: &mut dyn Services) {
        let now = self.core.now;
        while let Some(entry) = self.core.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, sequence), timer) = entry.remove_entry();
            self.core.timer_deadlines.remove(&sequence);
            self.core.stats.timers_fired_count += 1;
            self.fire_timer(timer, services);
        }
    }

    fn fire_timer(&mut self, timer: TimerEntry, services: &mut dyn Services) {
        let owner_live = match timer.owner {
            Some(owner) => self.core.cell(owner).is_some_and(|cell| {
                cell.incarnation == timer.incarnation && cell.state != ActorState::Stopped
            }),
            None => self.core.status == SystemStatus::Running,
        };
        if !owner_live {
            return;
        }
        match timer.payload {
            TimerPayload::Message(message) => {
                let owner = timer.owner.expect("message timers have an owner");
                if let Some(cell) = self.core.cell_mut(owner) {
                    cell.internal.push_back(message);
                }
                self.core.schedule(owner);
            }
            TimerPayload::Restart(group) => self.restart_group(&group, services),
        }
    }

    /// Handles one system message or one message of `id`; false if it had nothing to do.
    fn dispatch_one(&mut self, id: ActorId, services: &mut dyn Services) -> bool {
        let Some(cell) = self.core.cell_mut(id) else {
            return false;
        };
        if let Some(system) = cell.system_queue.pop_front() {
            self.handle_system(id, system, services);
            return true;
        }
        if cell.state != ActorState::Running {
            return false;
        }
        let Some(message) = cell
            .internal
            .pop_front()
            .or_else(|| cell.mailbox.pop_front())
        else {
            return false;
        };
        cell.stats.processed_count += 1;
        let mut actor = cell.actor.take().expect("a running actor has its state");
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = Context::new(&mut self.core, services, id, false);
            actor.message(&mut ctx, message);
        }));
        self.after_handler(id, actor, outcome.err(), services);
        true
    }

    fn handle_system(&mut self, id: ActorId, message: SystemMessage, services: &mut dyn Services) {
        match message {
            SystemMessage::Start => {
                let Some(cell) = self.core.cell_mut(id) else {
                    return;
                };
                let Some(mut actor) = cell.actor.take() else {
                    return;
                };
                cell.state = ActorState::Running;
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let mut ctx = Context::new(&mut self.core, services, id, false);
                    actor.start(&mut ctx);
                }));
                self.after_handler(id, actor, outcome.err(), services);
            }
            SystemMessage::Stop => {
                let parent = self.core.parent_of(id);
                self.terminate(id, true, services);
                self.free(id);
                self.notify_parent(parent, id, ExitReason::Normal);
            }
            SystemMessage::ChildExited { child, reason } => {
                let Some(cell) = self.core.cell_mut(id) else {
                    return;
                };
                if cell.state != ActorState::Running {
                    return;
                }
                let Some(mut actor) = cell.actor.take() else {
                    return;
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let mut ctx = Context::new(&mut self.core, services, id, false);
                    actor.child_exit(&mut ctx, child, &reason);
                }));
                self.after_handler(id, actor, outcome.err(), services);
            }
        }
    }

    fn after_handler(
        &mut self,
        id: ActorId,
        actor: Box<dyn ErasedActor>,
        panic: Option<Box<dyn Any + Send>>,
        services: &mut dyn Services,
    ) {
        match panic {
            None => {
                if let Some(cell) = self.core.cell_mut(id) {
                    cell.actor = Some(actor);
                }
                if let Some(reason) = self.core.pending_exit.take() {
                    self.exit(id, reason, services);
                }
            }
            Some(payload) => {
                // The actor's state may be inconsistent: it is discarded, never reused.
                drop(actor);
                self.core.pending_exit = None;
                let message = panic_text(payload.as_ref());
                self.core.record_panic(id, message.clone());
                self.exit(id, ExitReason::Panicked(message), services);
            }
        }
    }

    /// An actor exited: apply its supervisor's decision, escalating as far as needed.
    fn exit(&mut self, id: ActorId, reason: ExitReason, services: &mut dyn Services) {
        let mut failing = Some((id, reason));
        while let Some((id, reason)) = failing.take() {
            failing = self.exit_one(id, reason, services);
        }
    }

    /// Handles one exit; returns the parent and reason if it must fail in turn.
    fn exit_one(
        &mut self,
        id: ActorId,
        reason: ExitReason,
        services: &mut dyn Services,
    ) -> Option<(ActorId, ExitReason)> {
        let cell = self.core.cell(id)?;
        let (parent, restart, name) = (cell.parent, cell.restart, cell.name.clone());
        // After a panic the state may be inconsistent, so on_stop is skipped; an actor that
        // stopped or failed by its own decision is stopped in an orderly way.
        let graceful = !matches!(reason, ExitReason::Panicked(_));
        self.terminate(id, graceful, services);
        let restarting = match restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        };
        self.notify_parent(parent, id, reason);
        if !restarting {
            self.free(id);
            return None;
        }
        let spec = self.core.supervision_of(parent);
        if let Err(restarts_count) = self.core.record_restart(parent) {
            self.core.stats.escalations_count += 1;
            let escalated = ExitReason::Escalated {
                child: name,
                restarts_count,
                period: spec.period,
            };
            match parent {
                Some(parent) => return Some((parent, escalated)),
                None => {
                    self.halt(escalated, services);
                    return None;
                }
            }
        }
        let group = self.restart_group_for(id, parent, spec.strategy, services);
        let delay = self.backoff_for(id, spec);
        if delay.is_zero() {
            self.restart_group(&group, services);
        } else {
            let incarnation = parent
                .and_then(|p| self.core.cell(p))
                .map_or(0, |c| c.incarnation);
            let deadline = self.core.now + delay;
            self.core
                .insert_timer(parent, incarnation, deadline, TimerPayload::Restart(group));
        }
        None
    }

    /// Stops the siblings the strategy restarts together with `id`, and returns the group
    /// in start order. Temporary siblings are removed instead of restarted.
    fn restart_group_for(
        &mut self,
        id: ActorId,
        parent: Option<ActorId>,
        strategy: Strategy,
        services: &mut dyn Services,
    ) -> Vec<ActorId> {
        let siblings = self.core.children_of(parent);
        let group: Vec<ActorId> = match strategy {
            Strategy::OneForOne => vec![id],
            Strategy::OneForAll => siblings,
            Strategy::RestForOne => {
                let position = siblings
                    .iter()
                    .position(|sibling| *sibling == id)
                    .unwrap_or(0);
                siblings[position..].to_vec()
            }
        };
        for other in group.iter().rev().filter(|other| **other != id) {
            self.terminate(*other, true, services);
        }
        let mut kept = Vec::with_capacity(group.len());
        for member in group {
            let temporary = self
                .core
                .cell(member)
                .is_some_and(|c| c.restart == Restart::Temporary);
            if member != id && temporary {
                self.free(member);
            } else {
                kept.push(member);
            }
        }
        for member in &kept {
            if let Some(cell) = self.core.cell_mut(*member) {
                cell.state = ActorState::BackingOff;
            }
        }
        kept
    }

    fn backoff_for(&mut self, id: ActorId, spec: SupervisorSpec) -> synod_core::Duration {
        let now = self.core.now;
        let Some(cell) = self.core.cell_mut(id) else {
            return synod_core::Duration::ZERO;
        };
        cell.own_restarts.push_back(now);
        while cell.own_restarts.len() > 32
            || cell
                .own_restarts
                .front()
                .is_some_and(|at| now - *at > spec.period)
        {
            cell.own_restarts.pop_front();
        }
        let count = u32::try_from(cell.own_restarts.len()).unwrap_or(u32::MAX);
        spec.backoff_for(count)
    }

    fn restart_group(&mut self, group: &[ActorId], services: &mut dyn Services) {
        for id in group {
            let Some(cell) = self.core.cell_mut(*id) else {
                continue;
            };
            if cell.state != ActorState::BackingOff {
                continue;
            }
            let built = catch_unwind(AssertUnwindSafe(|| (cell.factory)()));
            match built {
                Ok(actor) => {
                    cell.actor = Some(actor);
                    cell.state = ActorState::Starting;
                    cell.stats.restarts_count += 1;
                    cell.push_system(SystemMessage::Start);
                    self.core.stats.restarts_count += 1;
                    self.core.schedule(*id);
                }
                Err(payload) => {
                    let message = panic_text(payload.as_ref());
                    self.core.record_panic(*id, message.clone());
                    self.exit(*id, ExitReason::Panicked(message), services);
                }
            }
        }
    }

    fn notify_parent(&mut self, parent: Option<ActorId>, child: ActorId, reason: ExitReason) {
        let Some(parent) = parent else { return };
        let Some(cell) = self.core.cell_mut(parent) else {
            return;
        };
        if cell.state == ActorState::Running {
            cell.push_system(SystemMessage::ChildExited { child, reason });
            self.core.schedule(parent);
        }
    }

    /// Stops `id` and its whole subtree: children first, in reverse start order. Children
    /// are freed; `id` itself keeps its cell (the caller frees or restarts it).
    fn terminate(&mut self, id: ActorId, graceful: bool, services: &mut dyn Services) {
        for descendant in self.descendants_post_order(id) {
            self.terminate_one(descendant, true, services);
            self.free(descendant);
        }
        self.terminate_one(id, graceful, services);
    }

    /// The subtree below `id` in shutdown order: the last-started child's subtree first.
    fn descendants_post_order(&self, id: ActorId) -> Vec<ActorId> {
        let mut order = Vec::new();
        let mut stack = vec![(id, false)];
        while let Some((current, expanded)) = stack.pop() {
            if expanded {
                if current != id {
                    order.push(current);
                }
                continue;
            }
            stack.push((current, true));
            if let Some(cell) = self.core.cell(current) {
                stack.extend(cell.children.iter().map(|child| (*child, false)));
            }
        }
        order
    }

    fn terminate_one(&mut self, id: ActorId, graceful: bool, services: &mut dyn Services) {
        let Some(cell) = self.core.cell_mut(id) else {
            return;
        };
        let actor = cell.actor.take();
        let dropped = cell.mailbox.clear() + cell.internal.len();
        cell.internal.clear();
        cell.system_queue.clear();
        cell.stats.dropped_count += dropped as u64;
        cell.state = ActorState::Stopped;
        // A new incarnation number makes every timer, binding and disk completion of the
        // old one stale.
        cell.incarnation = cell.incarnation.wrapping_add(1);
        if let (true, Some(mut actor)) = (graceful, actor) {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let mut ctx = Context::new(&mut self.core, services, id, true);
                actor.stop(&mut ctx);
            }));
            self.core.pending_exit = None;
            if let Err(payload) = outcome {
                let message = panic_text(payload.as_ref());
                self.core.record_panic(id, message);
            }
        }
        self.core.ports.retain(|_, binding| binding.actor != id);
    }

    /// Removes a stopped actor's cell; its slot is reused under a new generation.
    fn free(&mut self, id: ActorId) {
        let Some(cell) = self.core.cell(id) else {
            return;
        };
        let parent = cell.parent;
        match parent {
            Some(parent) => {
                if let Some(parent_cell) = self.core.cell_mut(parent) {
                    parent_cell.children.retain(|child| *child != id);
                }
            }
            None => self.core.roots.retain(|root| *root != id),
        }
        let slot = &mut self.core.slots[id.slot as usize];
        slot.cell = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.core.free_slots.push(id.slot);
        self.core.live_count -= 1;
    }

    fn halt(&mut self, reason: ExitReason, services: &mut dyn Services) {
        self.core.status = SystemStatus::Halted {
            reason: reason.to_string(),
        };
        self.stop_all(services);
    }

    /// Orderly shutdown of every actor: top-level actors in reverse start order, each after
    /// its own children. The system stays usable for inspection.
    pub fn shutdown(&mut self, services: &mut dyn Services) {
        self.core.now = services.now();
        if self.core.status == SystemStatus::Running {
            self.core.status = SystemStatus::Halted {
                reason: "shut down".to_string(),
            };
        }
        self.stop_all(services);
    }

    fn stop_all(&mut self, services: &mut dyn Services) {
        let roots = self.core.roots.clone();
        for root in roots.into_iter().rev() {
            self.terminate(root, true, services);
            self.free(root);
        }
        self.core.ready.clear();
        self.core.timers.clear();
        self.core.timer_deadlines.clear();
    }

    /// Finds a live actor by name (the first in tree order).
    pub fn find(&self, name: &str) -> Option<ActorId> {
        self.tree()
            .into_iter()
            .find(|info| info.name == name)
            .map(|info| info.id)
    }

    /// Borrows a live actor's state, for invariant checks and inspection.
    pub fn actor<A: Actor>(&self, id: ActorId) -> Option<&A> {
        let cell = self.core.cell(id)?;
        cell.actor.as_ref()?.as_any().downcast_ref::<A>()
    }

    /// The live supervision tree in pre-order (each parent before its children).
    pub fn tree(&self) -> Vec<ActorInfo> {
        let mut rows = Vec::new();
        let mut stack: Vec<(ActorId, usize)> = self
            .core
            .roots
            .iter()
            .rev()
            .map(|root| (*root, 0))
            .collect();
        while let Some((id, depth)) = stack.pop() {
            let Some(cell) = self.core.cell(id) else {
                continue;
            };
            rows.push(ActorInfo {
                id,
                parent: cell.parent,
                depth,
                name: cell.name.clone(),
                type_name: cell.type_name,
                state: cell.state,
                incarnation: cell.incarnation,
                mailbox_len: cell.mailbox.len(),
                mailbox_capacity: cell.mailbox.capacity(),
                mailbox_high_water: cell.mailbox.high_water(),
                restarts_count: cell.stats.restarts_count,
                processed_count: cell.stats.processed_count,
                dropped_count: cell.stats.dropped_count,
                rejected_count: cell.stats.rejected_count,
                panics_count: cell.stats.panics_count,
            });
            stack.extend(cell.children.iter().rev().map(|child| (*child, depth + 1)));
        }
        rows
    }

    /// The supervision tree as an indented table for people.
    pub fn render_tree(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{:<32} {:<10} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8}",
            "actor", "state", "mailbox", "high", "restarts", "processed", "dropped", "rejected"
        );
        for row in self.tree() {
            let label = format!("{}{}", "  ".repeat(row.depth), row.name);
            let _ = writeln!(
                text,
                "{:<32} {:<10} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8}",
                label,
                format!("{:?}", row.state),
                format!("{}/{}", row.mailbox_len, row.mailbox_capacity),
                row.mailbox_high_water,
                row.restarts_count,
                row.processed_count,
                row.dropped_count,
                row.rejected_count,
            );
        }
        text
    }
}
