//! Supervision, mailboxes and timers of the actor runtime, driven by hand-controlled services.

use std::sync::{Arc, Mutex};

use synod_actor::testing::ManualServices;
use synod_actor::{
    Actor, ActorState, Addr, ChildSpec, Context, Overflow, Restart, SendError, Strategy,
    SupervisorSpec, System, SystemConfig, SystemStatus,
};
use synod_core::{Duration, NodeId};

/// A shared log of lifecycle events, so tests can assert their exact order.
type Journal = Arc<Mutex<Vec<String>>>;

fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

fn take(journal: &Journal) -> Vec<String> {
    std::mem::take(&mut *journal.lock().expect("journal lock"))
}

#[derive(Debug)]
enum WorkerMessage {
    Ping,
    Panic,
    Fail,
    Stop,
}

/// Records its start, stop and messages; panics or fails on request.
struct Worker {
    name: &'static str,
    journal: Journal,
}

impl Actor for Worker {
    type Message = WorkerMessage;

    fn on_start(&mut self, _ctx: &mut Context<'_, WorkerMessage>) {
        self.journal
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
    }

    fn on_message(&mut self, ctx: &mut Context<'_, WorkerMessage>, message: WorkerMessage) {
        match message {
            WorkerMessage::Ping => self
                .journal
                .lock()
                .unwrap()
                .push(format!("ping {}", self.name)),
            WorkerMessage::Panic => panic!("worker {} was told to panic", self.name),
            WorkerMessage::Fail => ctx.fail("told to fail"),
            WorkerMessage::Stop => ctx.stop(),
        }
    }

    fn on_stop(&mut self, _ctx: &mut Context<'_, WorkerMessage>) {
        self.journal
            .lock()
            .unwrap()
            .push(format!("stop {}", self.name));
    }
}

fn worker(name: &'static str, journal: &Journal) -> ChildSpec<Worker> {
    let journal = journal.clone();
    ChildSpec::new(name, move || Worker {
        name,
        journal: journal.clone(),
    })
}

/// Spawns three workers a, b, c under a supervisor with the given spec.
struct Supervisor {
    spec: SupervisorSpec,
    journal: Journal,
    children: Arc<Mutex<Vec<Addr<WorkerMessage>>>>,
}

impl Actor for Supervisor {
    type Message = ();

    fn on_start(&mut self, ctx: &mut Context<'_, ()>) {
        self.journal.lock().unwrap().push("start sup".to_string());
        let mut children = self.children.lock().unwrap();
        children.clear();
        for name in ["a", "b", "c"] {
            children.push(
                ctx.spawn(worker(name, &self.journal))
                    .expect("spawn worker"),
            );
        }
        let _ = self.spec;
    }

    fn on_message(&mut self, _ctx: &mut Context<'_, ()>, _message: ()) {}

    fn on_stop(&mut self, _ctx: &mut Context<'_, ()>) {
        self.journal.lock().unwrap().push("stop sup".to_string());
    }
}

struct Fixture {
    system: System,
    services: ManualServices,
    journal: Journal,
    children: Arc<Mutex<Vec<Addr<WorkerMessage>>>>,
}

fn fixture(spec: SupervisorSpec) -> Fixture {
    let journal = journal();
    let children = Arc::new(Mutex::new(Vec::new()));
    let mut system = System::new(SystemConfig::new(NodeId(1)));
    let mut services = ManualServices::new(7);
    let (journal_for_sup, children_for_sup) = (journal.clone(), children.clone());
    let spec_for_sup = spec;
    system
        .spawn(
            ChildSpec::new("sup", move || Supervisor {
                spec: spec_for_sup,
                journal: journal_for_sup.clone(),
                children: children_for_sup.clone(),
            })
            .supervise(spec),
        )
        .expect("spawn supervisor");
    services.settle(&mut system);
    Fixture {
        system,
        services,
        journal,
        children,
    }
}

impl Fixture {
    fn child(&self, index: usize) -> Addr<WorkerMessage> {
        self.children.lock().unwrap()[index]
    }

    fn send(&mut self, index: usize, message: WorkerMessage) {
        let addr = self.child(index);
        self.system.send(addr, message).expect("send");
        self.services.settle(&mut self.system);
    }
}

fn immediate(strategy: Strategy) -> SupervisorSpec {
    SupervisorSpec::default()
        .strategy(strategy)
        .backoff(Duration::ZERO, Duration::ZERO)
        .intensity(3, Duration::from_secs(10))
}

#[test]
fn one_for_one_restarts_only_the_panicking_child() {
    // Checks one_for_one: a panic in b restarts b alone, without on_stop (its state is
    // discarded), and b keeps its address.
    let mut fx = fixture(immediate(Strategy::OneForOne));
    assert_eq!(
        take(&fx.journal),
        vec!["start sup", "start a", "start b", "start c"]
    );
    let before = fx.child(1);
    fx.send(1, WorkerMessage::Panic);
    assert_eq!(take(&fx.journal), vec!["start b"]);
    fx.send(1, WorkerMessage::Ping);
    assert_eq!(take(&fx.journal), vec!["ping b"]);
    assert_eq!(fx.child(1), before);
    assert_eq!(fx.system.stats().panics_count, 1);
    let b = fx
        .system
        .tree()
        .into_iter()
        .find(|row| row.name == "b")
        .unwrap();
    assert_eq!(
        (b.restarts_count, b.panics_count, b.state),
        (1, 1, ActorState::Running)
    );
}

#[test]
fn one_for_all_restarts_every_sibling_in_order() {
    // Checks one_for_all: the others stop in reverse start order, then all start in order.
    let mut fx = fixture(immediate(Strategy::OneForAll));
    take(&fx.journal);
    fx.send(1, WorkerMessage::Fail);
    assert_eq!(
        take(&fx.journal),
        vec![
            "stop b", "stop c", "stop a", "start a", "start b", "start c"
        ]
    );
}

#[test]
fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    // Checks rest_for_one: a failure in a restarts a, b, c; a failure in b leaves a alone.
    let mut fx = fixture(immediate(Strategy::RestForOne));
    take(&fx.journal);
    fx.send(1, WorkerMessage::Panic);
    assert_eq!(take(&fx.journal), vec!["stop c", "start b", "start c"]);
    fx.send(0, WorkerMessage::Fail);
    assert_eq!(
        take(&fx.journal),
        vec![
            "stop a", "stop c", "stop b", "start a", "start b", "start c"
        ]
    );
}

#[test]
fn exceeding_intensity_escalates_to_the_parent_and_then_halts_the_node() {
    // Checks escalation: the 4th restart within the period fails the supervisor, whose
    // own supervisor (the root, intensity 0) then halts the system with the reason.
    let journal = journal();
    let children = Arc::new(Mutex::new(Vec::new()));
    let mut config = SystemConfig::new(NodeId(1));
    config.root_supervision = immediate(Strategy::OneForOne).intensity(0, Duration::from_secs(1));
    let mut system = System::new(config);
    let mut services = ManualServices::new(1);
    let (j, c) = (journal.clone(), children.clone());
    let spec = immediate(Strategy::OneForOne);
    system
        .spawn(
            ChildSpec::new("sup", move || Supervisor {
                spec,
                journal: j.clone(),
                children: c.clone(),
            })
            .supervise(spec),
        )
        .unwrap();
    services.settle(&mut system);
    take(&journal);
    for _ in 0..3 {
        let a = children.lock().unwrap()[0];
        system.send(a, WorkerMessage::Panic).unwrap();
        services.settle(&mut system);
    }
    assert_eq!(take(&journal), vec!["start a", "start a", "start a"]);
    let a = children.lock().unwrap()[0];
    system.send(a, WorkerMessage::Panic).unwrap();
    services.settle(&mut system);
    // The supervisor's children stop first (reverse order), then the supervisor itself.
    assert_eq!(take(&journal), vec!["stop c", "stop b", "stop sup"]);
    match system.status() {
        SystemStatus::Halted { reason } => {
            assert!(
                reason.contains("sup exceeded restart intensity"),
                "{reason}"
            )
        }
        SystemStatus::Running => panic!("system should have halted"),
    }
    assert_eq!(system.stats().escalations_count, 2);
    assert!(system.tree().is_empty());
}

#[test]
fn restart_waits_for_backoff_and_backoff_doubles() {
    // Checks restart backoff: the restart happens only once the backoff has passed, and
    // the second restart in the period waits twice as long.
    let spec =
        immediate(Strategy::OneForOne).backoff(Duration::from_millis(100), Duration::from_secs(1));
    let mut fx = fixture(spec);
    take(&fx.journal);
    fx.send(0, WorkerMessage::Panic);
    assert!(take(&fx.journal).is_empty());
    let a = fx
        .system
        .tree()
        .into_iter()
        .find(|row| row.name == "a")
        .unwrap();
    assert_eq!(a.state, ActorState::BackingOff);
    fx.services
        .advance(&mut fx.system, Duration::from_millis(99));
    assert!(take(&fx.journal).is_empty());
    fx.services
        .advance(&mut fx.system, Duration::from_millis(1));
    assert_eq!(take(&fx.journal), vec!["start a"]);
    fx.send(0, WorkerMessage::Panic);
    fx.services
        .advance(&mut fx.system, Duration::from_millis(199));
    assert!(take(&fx.journal).is_empty());
    fx.services
        .advance(&mut fx.system, Duration::from_millis(1));
    assert_eq!(take(&fx.journal), vec!["start a"]);
}

#[test]
fn normal_stop_of_transient_and_temporary_children_is_final() {
    // Checks restart types: a transient child that stops normally is not restarted, a
    // permanent one is, and a temporary child is never restarted even after a panic.
    let journal = journal();
    let mut system = System::new(SystemConfig::new(NodeId(1)));
    let mut services = ManualServices::new(3);
    let spec = immediate(Strategy::OneForOne);
    let transient = system
        .spawn(worker("t", &journal).restart(Restart::Transient))
        .unwrap();
    let permanent = system.spawn(worker("p", &journal).supervise(spec)).unwrap();
    let temporary = system
        .spawn(worker("x", &journal).restart(Restart::Temporary))
        .unwrap();
    services.settle(&mut system);
    take(&journal);
    system.send(transient, WorkerMessage::Stop).unwrap();
    system.send(permanent, WorkerMessage::Stop).unwrap();
    system.send(temporary, WorkerMessage::Panic).unwrap();
    services.settle(&mut system);
    services.advance(&mut system, Duration::from_secs(1));
    assert_eq!(take(&journal), vec!["stop t", "stop p", "start p"]);
    let names: Vec<String> = system.tree().into_iter().map(|row| row.name).collect();
    assert_eq!(names, vec!["p"]);
    assert!(matches!(
        system.send(transient, WorkerMessage::Ping),
        Err(SendError::Closed(_))
    ));
}

/// Counts what it handles; used for mailbox overflow tests.
struct Sink {
    handled: Arc<Mutex<Vec<u32>>>,
}

impl Actor for Sink {
    type Message = u32;
    fn on_message(&mut self, _ctx: &mut Context<'_, u32>, message: u32) {
        self.handled.lock().unwrap().push(message);
    }
}

fn sink(overflow: Overflow) -> (System, ManualServices, Addr<u32>, Arc<Mutex<Vec<u32>>>) {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let mut system = System::new(SystemConfig::new(NodeId(1)));
    let mut services = ManualServices::new(5);
    let h = handled.clone();
    let addr = system
        .spawn(ChildSpec::new("sink", move || Sink { handled: h.clone() }).mailbox(2, overflow))
        .unwrap();
    services.settle(&mut system);
    (system, services, addr, handled)
}

#[test]
fn full_mailbox_rejects_drops_newest_or_drops_oldest_as_declared() {
    // Checks each overflow policy: reject hands the message back and counts it; drop-newest
    // and drop-oldest report success, count the drop and keep the declared two messages.
    let table = [
        (Overflow::Reject, vec![1, 2], 0, 1),
        (Overflow::DropNewest, vec![1, 2], 1, 0),
        (Overflow::DropOldest, vec![2, 3], 1, 0),
    ];
    for (overflow, kept, dropped, rejected) in table {
        let (mut system, mut services, addr, handled) = sink(overflow);
        system.send(addr, 1).unwrap();
        system.send(addr, 2).unwrap();
        let third = system.send(addr, 3);
        match overflow {
            Overflow::Reject => assert_eq!(third, Err(SendError::Full(3))),
            _ => assert_eq!(third, Ok(())),
        }
        let row = system.tree().remove(0);
        assert_eq!((row.mailbox_len, row.mailbox_high_water), (2, 2));
        assert_eq!(
            (row.dropped_count, row.rejected_count),
            (dropped, rejected),
            "{overflow:?}"
        );
        services.settle(&mut system);
        assert_eq!(*handled.lock().unwrap(), kept, "{overflow:?}");
    }
}

/// Sets timers and records when they fire.
struct Ticker {
    fired: Arc<Mutex<Vec<(u64, &'static str)>>>,
}

impl Actor for Ticker {
    type Message = &'static str;

    fn on_start(&mut self, ctx: &mut Context<'_, &'static str>) {
        ctx.set_timer(Duration::from_millis(30), "late");
        let cancelled = ctx.set_timer(Duration::from_millis(20), "cancelled");
        ctx.set_timer(Duration::from_millis(10), "early");
        assert!(ctx.cancel_timer(cancelled));
        assert!(!ctx.cancel_timer(cancelled));
    }

    fn on_message(&mut self, ctx: &mut Context<'_, &'static str>, message: &'static str) {
        self.fired
            .lock()
            .unwrap()
            .push((ctx.now().as_nanos() / 1_000_000, message));
        if message == "late" {
            ctx.fail("restart to show timers die with their incarnation");
        }
    }
}

#[test]
fn timers_fire_in_deadline_order_and_die_with_their_incarnation() {
    // Checks timers: deadline order, cancellation, and that a restarted actor sets fresh
    // timers while the old incarnation's are discarded.
    let fired = Arc::new(Mutex::new(Vec::new()));
    let mut system = System::new(SystemConfig::new(NodeId(1)));
    let mut services = ManualServices::new(9);
    let f = fired.clone();
    let spec = immediate(Strategy::OneForOne);
    system
        .spawn(ChildSpec::new("ticker", move || Ticker { fired: f.clone() }).supervise(spec))
        .unwrap();
    services.settle(&mut system);
    for _ in 0..4 {
        services.advance(&mut system, Duration::from_millis(10));
    }
    assert_eq!(*fired.lock().unwrap(), vec![(10, "early"), (30, "late")]);
    // Failed at 30ms, restarted after the root's 10ms backoff at 40ms: the fresh "early"
    // timer is due at 50ms and nothing of the first incarnation remains.
    assert_eq!(
        system.next_deadline().map(|at| at.as_nanos() / 1_000_000),
        Some(50)
    );
}
