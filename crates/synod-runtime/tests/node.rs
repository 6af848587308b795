//! The node loop itself: injected closures, timers on the real clock, and a node whose root
//! supervisor gives up.

mod common;

use std::time::Duration as StdDuration;

use synod_actor::{Actor, ChildSpec, Context, SupervisorSpec};
use synod_core::{Duration, NodeId};
use synod_runtime::{NodeRuntime, RuntimeError, run_node};

/// Counts its timer ticks and stops ticking after `ticks_max`.
struct Ticker {
    ticks_count: u32,
    ticks_max: u32,
}

impl Actor for Ticker {
    type Message = ();

    fn on_start(&mut self, ctx: &mut Context<'_, ()>) {
        ctx.set_timer(Duration::from_millis(1), ());
    }

    fn on_message(&mut self, ctx: &mut Context<'_, ()>, _message: ()) {
        self.ticks_count += 1;
        ctx.observe(self.ticks_count);
        if self.ticks_count < self.ticks_max {
            ctx.set_timer(Duration::from_millis(1), ());
        }
    }
}

#[tokio::test]
async fn timers_fire_on_the_real_clock_and_call_reads_actor_state() {
    // Checks that timers set through the context fire in the node loop, and that a closure
    // sent with NodeHandle::call runs inside the loop and returns its result.
    let mut config = common::test_config(NodeId(1));
    config.listen_address = None;
    let runtime = NodeRuntime::new(config).unwrap();
    let handle = runtime.handle();
    let boot = |system: &mut synod_actor::System| {
        let spec = ChildSpec::new("ticker", || Ticker {
            ticks_count: 0,
            ticks_max: 5,
        });
        system.spawn(spec).unwrap();
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runtime.run(boot, stopped));
    common::wait_until("five ticks", StdDuration::from_secs(10), || {
        handle.observations_of::<u32>().len() == 5
    })
    .await;
    let ticks = handle
        .call(|system| {
            let id = system.find("ticker").expect("the ticker runs");
            system.actor::<Ticker>(id).map(|ticker| ticker.ticks_count)
        })
        .await
        .unwrap();
    assert_eq!(ticks, Some(5));
    stop.send(()).unwrap();
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.observations_of::<u32>(), vec![&1, &2, &3, &4, &5]);
    assert_eq!(report.system.timers_fired_count, 5);
    assert!(report.tree_text.contains("ticker"));
}

/// Panics as soon as it starts.
struct Doomed;

impl Actor for Doomed {
    type Message = ();

    fn on_start(&mut self, _ctx: &mut Context<'_, ()>) {
        panic!("doomed cannot start");
    }

    fn on_message(&mut self, _ctx: &mut Context<'_, ()>, _message: ()) {}
}

#[tokio::test]
async fn a_node_whose_root_supervisor_gives_up_returns_halted_with_the_reason() {
    // Checks that when the root supervisor exceeds its restart intensity, run_node returns
    // Halted naming the actor, with the panic in the report, without a shutdown signal.
    let mut config = common::test_config(NodeId(4));
    config.listen_address = None;
    config.system.root_supervision = SupervisorSpec::default()
        .intensity(1, Duration::from_secs(60))
        .backoff(Duration::ZERO, Duration::ZERO);
    let boot = |system: &mut synod_actor::System| {
        system.spawn(ChildSpec::new("doomed", || Doomed)).unwrap();
    };
    let never = std::future::pending::<()>();
    let outcome = tokio::time::timeout(StdDuration::from_secs(10), run_node(config, boot, never))
        .await
        .expect("the node halts on its own");
    match outcome {
        Err(RuntimeError::Halted {
            node,
            reason,
            report,
        }) => {
            assert_eq!(node, NodeId(4));
            assert!(
                reason.contains("doomed exceeded restart intensity"),
                "{reason}"
            );
            assert_eq!(report.panics.len(), 2);
            assert_eq!(report.panics[0].message, "doomed cannot start");
        }
        other => panic!("expected Halted, got {other:?}"),
    }
}
