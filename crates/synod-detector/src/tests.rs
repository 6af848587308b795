//! Protocol unit tests: each builds a detector in a known state, feeds exact inputs and
//! asserts the exact outputs and the new state. The randomized sweep is at the end.

use synod_core::{Duration, Instant, NodeId, Outbox, Prng, Protocol};

use crate::phi;
use crate::{
    DetectorConfig, Input, OUTPUTS_PER_STEP_MAX, Output, PEERS_COUNT_MAX, PhiAccrualDetector,
};

const PEER: NodeId = NodeId(7);

fn at_millis(millis: u64) -> Instant {
    Instant::from_nanos(millis * 1_000_000)
}

/// The defaults without an acceptable pause, so the arithmetic in the tests stays simple:
/// mean 100 ms, deviation floored at 50 ms, threshold 8 (reached 5.23 deviations past the
/// mean, about 361 ms of silence).
fn config_plain() -> DetectorConfig {
    DetectorConfig {
        acceptable_pause: Duration::ZERO,
        ..DetectorConfig::default()
    }
}

fn step(detector: &mut PhiAccrualDetector, now: Instant, input: Input) -> Vec<Output> {
    let mut outbox = Outbox::new(OUTPUTS_PER_STEP_MAX);
    detector.step(now, input, &mut outbox);
    detector.invariants_exhaustive();
    outbox.drain().collect()
}

fn heartbeat(from: NodeId, incarnation: u64) -> Input {
    Input::Heartbeat { from, incarnation }
}

/// A detector watching `PEER`, which sent heartbeats (incarnation 1) at 0, 100, ... 1000 ms:
/// the window holds the two seed samples (75 and 125 ms) and ten samples of 100 ms.
fn detector_after_steady_heartbeats() -> PhiAccrualDetector {
    let mut detector = PhiAccrualDetector::new(config_plain());
    assert_eq!(
        step(&mut detector, at_millis(0), Input::Monitor(PEER)),
        vec![]
    );
    for beat in 0..=10 {
        assert_eq!(
            step(&mut detector, at_millis(beat * 100), heartbeat(PEER, 1)),
            vec![]
        );
    }
    detector
}

#[test]
fn silence_raises_one_suspicion_and_a_heartbeat_recovers() {
    // Checks the whole transition: no suspicion while phi is under the threshold, exactly one
    // Suspect with the phi and silence of the tick that crossed it, no repeat on later ticks,
    // one Recover on the next heartbeat, and that the outage gap is not recorded as a sample.
    let mut detector = detector_after_steady_heartbeats();
    let status = detector.peer_status(PEER).unwrap();
    assert_eq!(status.samples_count, 12);
    assert_eq!(status.interval_mean, Duration::from_millis(100));
    for silence_millis in [100, 200, 300] {
        assert_eq!(
            step(
                &mut detector,
                at_millis(1_000 + silence_millis),
                Input::Tick
            ),
            vec![]
        );
    }
    let outputs = step(&mut detector, at_millis(1_400), Input::Tick);
    // Mean 100 ms, deviation floored to 50 ms, 400 ms of silence: 6 deviations late.
    let phi_expected = phi::from_normal(400e6, 100e6, 50e6);
    assert!((phi_expected - 10.782600858295707).abs() < 1e-9);
    let silence = Duration::from_millis(400);
    assert_eq!(
        outputs,
        vec![Output::Suspect {
            peer: PEER,
            phi: phi_expected,
            silence
        }]
    );
    assert!(detector.is_suspected(PEER));
    assert_eq!(step(&mut detector, at_millis(1_500), Input::Tick), vec![]);

    let outputs = step(&mut detector, at_millis(1_550), heartbeat(PEER, 1));
    let suspected_for = Duration::from_millis(150);
    assert_eq!(
        outputs,
        vec![Output::Recover {
            peer: PEER,
            suspected_for
        }]
    );
    assert!(!detector.is_suspected(PEER));
    let status = detector.peer_status(PEER).unwrap();
    assert_eq!(
        status.samples_count, 12,
        "the 550 ms outage must not become a sample"
    );
    assert_eq!(status.last_heartbeat, Some(at_millis(1_550)));
    assert_eq!(step(&mut detector, at_millis(1_600), Input::Tick), vec![]);
    let stats = detector.stats();
    assert_eq!((stats.suspicions_count, stats.recoveries_count), (1, 1));
    assert_eq!((stats.heartbeats_count, stats.gaps_skipped_count), (12, 1));
}

#[test]
fn higher_incarnation_restarts_the_window_and_recovers() {
    // Checks that a heartbeat from a rebooted peer emits Restarted then Recover, resets the
    // window to the two seed samples, and adopts the new incarnation.
    let mut detector = detector_after_steady_heartbeats();
    let outputs = step(&mut detector, at_millis(2_000), Input::Tick);
    assert!(matches!(
        outputs.as_slice(),
        [Output::Suspect { peer: PEER, .. }]
    ));
    let outputs = step(&mut detector, at_millis(2_500), heartbeat(PEER, 2));
    let suspected_for = Duration::from_millis(500);
    assert_eq!(
        outputs,
        vec![
            Output::Restarted {
                peer: PEER,
                incarnation: 2
            },
            Output::Recover {
                peer: PEER,
                suspected_for
            },
        ]
    );
    let status = detector.peer_status(PEER).unwrap();
    assert_eq!((status.incarnation, status.samples_count), (2, 2));
    assert_eq!(status.interval_mean, Duration::from_millis(100));
    assert_eq!(status.interval_std_deviation, Duration::from_millis(25));
    assert_eq!(status.last_heartbeat, Some(at_millis(2_500)));
    assert_eq!(detector.stats().restarts_count, 1);
    // The next heartbeat of the new incarnation is an ordinary sample.
    assert_eq!(
        step(&mut detector, at_millis(2_600), heartbeat(PEER, 2)),
        vec![]
    );
    assert_eq!(detector.peer_status(PEER).unwrap().samples_count, 3);
}

#[test]
fn stale_incarnation_is_counted_and_dropped() {
    // Checks that a heartbeat from an earlier incarnation changes nothing (not the last
    // heartbeat, not the window, not a suspicion) and is counted.
    let mut detector = detector_after_steady_heartbeats();
    assert_eq!(
        step(&mut detector, at_millis(1_100), heartbeat(PEER, 3)).len(),
        1
    );
    let before = detector.peer_status(PEER).unwrap();
    assert_eq!(
        step(&mut detector, at_millis(1_150), heartbeat(PEER, 2)),
        vec![]
    );
    assert_eq!(detector.peer_status(PEER).unwrap(), before);
    assert_eq!(step(&mut detector, at_millis(2_000), Input::Tick).len(), 1);
    assert_eq!(
        step(&mut detector, at_millis(2_100), heartbeat(PEER, 1)),
        vec![]
    );
    assert!(
        detector.is_suspected(PEER),
        "a stale heartbeat must not recover the peer"
    );
    let stats = detector.stats();
    assert_eq!(
        (stats.stale_heartbeats_count, stats.heartbeats_count),
        (2, 12)
    );
}

#[test]
fn heartbeat_from_unmonitored_peer_is_counted_and_dropped() {
    // Checks that heartbeats from peers not monitored (never, or no longer) are counted and
    // create no state.
    let mut detector = detector_after_steady_heartbeats();
    let stranger = NodeId(99);
    assert_eq!(
        step(&mut detector, at_millis(1_050), heartbeat(stranger, 1)),
        vec![]
    );
    assert!(!detector.is_monitored(stranger));
    assert_eq!(detector.phi(stranger, at_millis(1_100)), None);
    assert_eq!(
        step(&mut detector, at_millis(1_060), Input::Unmonitor(PEER)),
        vec![]
    );
    assert_eq!(
        step(&mut detector, at_millis(1_070), heartbeat(PEER, 1)),
        vec![]
    );
    assert_eq!(detector.peers().count(), 0);
    assert_eq!(detector.stats().unknown_peer_count, 2);
}

#[test]
fn peer_without_heartbeat_is_never_suspected() {
    // Checks the bootstrap decision: a monitored peer that never sent a heartbeat has no phi
    // and stays unsuspected however long the silence; its first heartbeat seeds the window.
    let mut detector = PhiAccrualDetector::new(config_plain());
    step(&mut detector, at_millis(0), Input::Monitor(PEER));
    assert_eq!(
        step(&mut detector, at_millis(3_600_000), Input::Tick),
        vec![]
    );
    assert_eq!(detector.phi(PEER, at_millis(3_600_000)), None);
    assert!(!detector.is_suspected(PEER));
    assert_eq!(
        step(&mut detector, at_millis(3_600_000), heartbeat(PEER, 42)),
        vec![]
    );
    let status = detector.peer_status(PEER).unwrap();
    assert_eq!((status.incarnation, status.samples_count), (42, 2));
    assert_eq!(
        detector.stats().restarts_count,
        0,
        "the first incarnation is not a restart"
    );
    let phi = detector.phi(PEER, at_millis(3_600_000)).unwrap();
    assert!(phi < 0.302, "phi at zero silence {phi}");
}

#[test]
fn duplicate_heartbeat_records_no_sample() {
    // Checks that a second heartbeat at the same instant is accepted but adds no interval.
    let mut detector = detector_after_steady_heartbeats();
    assert_eq!(
        step(&mut detector, at_millis(1_000), heartbeat(PEER, 1)),
        vec![]
    );
    let stats = detector.stats();
    assert_eq!(
        (stats.duplicate_heartbeats_count, stats.heartbeats_count),
        (1, 12)
    );
    assert_eq!(detector.peer_status(PEER).unwrap().samples_count, 12);
}

#[test]
fn window_stays_bounded_after_many_heartbeats() {
    // Checks that the window never grows past window_size, that the seed samples are evicted,
    // and that steady intervals then give exactly zero deviation.
    let config = DetectorConfig {
        window_size: 5,
        ..config_plain()
    };
    let mut detector = PhiAccrualDetector::new(config);
    step(&mut detector, at_millis(0), Input::Monitor(PEER));
    for beat in 0..1_000 {
        step(&mut detector, at_millis(beat * 100), heartbeat(PEER, 1));
        assert!(detector.peer_status(PEER).unwrap().samples_count <= 5);
    }
    let status = detector.peer_status(PEER).unwrap();
    assert_eq!(status.samples_count, 5);
    assert_eq!(status.interval_mean, Duration::from_millis(100));
    assert_eq!(status.interval_std_deviation, Duration::ZERO);
}

#[test]
fn phi_rises_monotonically_with_silence() {
    // Checks that for a fixed window phi never decreases as the silence grows, from zero
    // silence to an hour, and crosses the threshold where the model says (about 361 ms).
    let detector = detector_after_steady_heartbeats();
    let mut phi_previous = 0.0;
    for silence_millis in 0..3_600_000u64 {
        let phi = detector
            .phi(PEER, at_millis(1_000 + silence_millis))
            .unwrap();
        assert!(
            phi.is_finite() && phi >= phi_previous,
            "phi {phi} at {silence_millis} ms"
        );
        phi_previous = phi;
    }
    assert!(detector.phi(PEER, at_millis(1_361)).unwrap() < 8.0);
    assert!(detector.phi(PEER, at_millis(1_362)).unwrap() >= 8.0);
}

#[test]
fn phi_is_finite_for_huge_silence_and_zero_variance() {
    // Checks the numerical edges: identical intervals (zero deviation) with the smallest
    // deviation floor, and a silence up to the end of time, still give a finite phi.
    let config = DetectorConfig {
        window_size: 2,
        std_deviation_min: Duration::from_micros(1),
        ..config_plain()
    };
    let mut detector = PhiAccrualDetector::new(config);
    step(&mut detector, at_millis(0), Input::Monitor(PEER));
    for beat in 0..5 {
        step(&mut detector, at_millis(beat * 100), heartbeat(PEER, 1));
    }
    assert_eq!(
        detector.peer_status(PEER).unwrap().interval_std_deviation,
        Duration::ZERO
    );
    assert_eq!(detector.phi(PEER, Instant::MAX), Some(phi::PHI_SATURATED));
    let outputs = step(&mut detector, Instant::MAX, Input::Tick);
    let silence = Instant::MAX.saturating_duration_since(at_millis(400));
    let phi = phi::PHI_SATURATED;
    assert_eq!(
        outputs,
        vec![Output::Suspect {
            peer: PEER,
            phi,
            silence
        }]
    );
}

#[test]
fn monitor_is_idempotent_and_bounded() {
    // Checks that monitoring a watched peer keeps its state, that monitors beyond
    // PEERS_COUNT_MAX are refused and counted, and that unmonitoring frees a place and drops
    // a suspicion without an output.
    let mut detector = detector_after_steady_heartbeats();
    step(&mut detector, at_millis(1_010), Input::Monitor(PEER));
    assert_eq!(detector.peer_status(PEER).unwrap().samples_count, 12);
    for index in 0..PEERS_COUNT_MAX as u64 {
        step(
            &mut detector,
            at_millis(1_020),
            Input::Monitor(NodeId(100 + index)),
        );
    }
    assert_eq!(detector.peers().count(), PEERS_COUNT_MAX);
    assert_eq!(detector.stats().monitors_refused_count, 1);
    assert_eq!(step(&mut detector, at_millis(2_000), Input::Tick).len(), 1);
    assert_eq!(
        step(&mut detector, at_millis(2_010), Input::Unmonitor(PEER)),
        vec![]
    );
    step(&mut detector, at_millis(2_020), Input::Monitor(NodeId(500)));
    assert!(detector.is_monitored(NodeId(500)));
    assert_eq!(detector.stats().monitors_refused_count, 1);
}

#[test]
#[should_panic(expected = "a tick over 3 peers may need them all")]
fn tick_with_too_small_outbox_is_a_driver_bug() {
    // Checks that a tick refuses to start when the outbox cannot hold one output per peer,
    // even when nothing would be emitted, so an undersized outbox fails on the first tick
    // instead of during the first multi-peer outage.
    let mut detector = PhiAccrualDetector::new(config_plain());
    let mut outbox = Outbox::new(2);
    for peer in 1..=3 {
        detector.step(at_millis(0), Input::Monitor(NodeId(peer)), &mut outbox);
    }
    detector.step(at_millis(0), Input::Tick, &mut outbox);
}

#[test]
#[should_panic(expected = "detector time went backwards")]
fn time_going_backwards_is_a_driver_bug() {
    // Checks that the detector refuses a `now` earlier than one it was already given.
    let mut detector = PhiAccrualDetector::new(config_plain());
    let mut outbox = Outbox::new(OUTPUTS_PER_STEP_MAX);
    detector.step(at_millis(10), Input::Tick, &mut outbox);
    detector.step(at_millis(9), Input::Tick, &mut outbox);
}

#[test]
#[should_panic(expected = "detector.window_size (0) must be between 2 and 10000")]
fn invalid_config_is_refused_at_construction() {
    // Checks that the constructor asserts a valid configuration and names the field.
    PhiAccrualDetector::new(DetectorConfig {
        window_size: 0,
        ..DetectorConfig::default()
    });
}

/// What the sweep expects, tracked from the inputs and outputs alone.
#[derive(Default)]
struct SweepModel {
    heartbeat_inputs_count: u64,
    suspects_count: u64,
    recovers_count: u64,
}

/// One randomized run: random config, a few peers, jittered heartbeats with pauses, restarts,
/// stale and unknown senders, monitor churn and ticks, checking the outputs against the
/// detector's own view and the numerical safety of phi after every step.
fn sweep_one_seed(seed: u64) {
    let mut prng = Prng::from_seed(seed);
    let config = DetectorConfig {
        window_size: prng.range_inclusive(2, 50) as usize,
        acceptable_pause: Duration::from_millis(prng.range_inclusive(0, 200)),
        std_deviation_min: Duration::from_micros(prng.range_inclusive(1, 50_000)),
        threshold_phi: 1.0 + prng.unit_f64() * 15.0,
        ..DetectorConfig::default()
    };
    let mut detector = PhiAccrualDetector::new(config);
    let mut model = SweepModel::default();
    let mut incarnations = [1u64; 6];
    let mut now = Instant::ZERO;
    for peer in 0..5 {
        step(&mut detector, now, Input::Monitor(NodeId(peer)));
    }
    for _ in 0..3_000 {
        now += sweep_delay(&mut prng);
        let input = sweep_input(&mut prng, &mut incarnations);
        if matches!(input, Input::Heartbeat { .. }) {
            model.heartbeat_inputs_count += 1;
        }
        let suspected_before: Vec<NodeId> = detector
            .peers()
            .filter(|(_, status)| status.suspected)
            .map(|(id, _)| id)
            .collect();
        for output in step(&mut detector, now, input) {
            sweep_check_output(&detector, &suspected_before, output, &mut model);
        }
        sweep_check_phi(&detector, now, &mut prng);
    }
    let stats = detector.stats();
    let heartbeats_seen =
        stats.heartbeats_count + stats.stale_heartbeats_count + stats.unknown_peer_count;
    assert_eq!(heartbeats_seen, model.heartbeat_inputs_count);
    assert_eq!(stats.suspicions_count, model.suspects_count);
    assert_eq!(stats.recoveries_count, model.recovers_count);
    // A sweep that never reaches these paths would check nothing about them.
    let paths = [
        stats.suspicions_count,
        stats.recoveries_count,
        stats.restarts_count,
        stats.gaps_skipped_count,
        stats.stale_heartbeats_count,
    ];
    assert!(
        paths.iter().all(|count| *count > 0),
        "the sweep missed a path: {stats:?}"
    );
}

/// Mostly ~100 ms apart with jitter, sometimes simultaneous, sometimes a long pause.
fn sweep_delay(prng: &mut Prng) -> Duration {
    let millis = match prng.below(20) {
        0 => 0.0,
        1 => prng.exponential(2_000.0, 60_000.0),
        _ => prng.exponential(20.0, 1_000.0),
    };
    Duration::from_micros((millis * 1_000.0) as u64)
}

fn sweep_input(prng: &mut Prng, incarnations: &mut [u64; 6]) -> Input {
    // Peer 5 is never monitored at the start; it exercises unknown senders and late monitors.
    let peer = prng.index(incarnations.len());
    let from = NodeId(peer as u64);
    match prng.below(100) {
        0..=69 => heartbeat(from, incarnations[peer]),
        70..=89 => Input::Tick,
        90..=92 => {
            incarnations[peer] += 1;
            heartbeat(from, incarnations[peer])
        }
        93..=94 => heartbeat(from, incarnations[peer].saturating_sub(1)),
        95..=97 => Input::Monitor(from),
        _ => Input::Unmonitor(from),
    }
}

fn sweep_check_output(
    detector: &PhiAccrualDetector,
    suspected_before: &[NodeId],
    output: Output,
    model: &mut SweepModel,
) {
    match output {
        Output::Suspect { peer, phi, .. } => {
            assert!(
                !suspected_before.contains(&peer),
                "second Suspect for {peer}"
            );
            assert!(phi.is_finite() && phi >= detector.config().threshold_phi);
            assert!(detector.is_suspected(peer));
            model.suspects_count += 1;
        }
        Output::Recover { peer, .. } => {
            assert!(
                suspected_before.contains(&peer),
                "Recover for unsuspected {peer}"
            );
            assert!(!detector.is_suspected(peer));
            model.recovers_count += 1;
        }
        Output::Restarted { peer, incarnation } => {
            assert_eq!(detector.peer_status(peer).unwrap().incarnation, incarnation);
        }
    }
}

fn sweep_check_phi(detector: &PhiAccrualDetector, now: Instant, prng: &mut Prng) {
    let later = now + Duration::from_millis(prng.range_inclusive(0, 10_000));
    for (peer, _) in detector.peers() {
        let Some(phi_now) = detector.phi(peer, now) else {
            continue;
        };
        let phi_later = detector.phi(peer, later).unwrap();
        assert!(
            phi_now.is_finite() && phi_now >= 0.0,
            "phi {phi_now} for {peer}"
        );
        assert!(
            phi_later >= phi_now,
            "phi fell from {phi_now} to {phi_later} for {peer}"
        );
    }
}

#[test]
fn random_jittered_arrivals_keep_phi_sane_and_invariants_hold() {
    // Checks, over seeded random runs, that phi is never NaN or negative and never falls with
    // silence, that Suspect and Recover alternate once per transition, that the counters
    // account for every heartbeat and output, and that the invariants (with a full recount of
    // every window) hold after every step. Replay one seed with SYNOD_SEED.
    let seeds: Vec<u64> = match std::env::var("SYNOD_SEED") {
        Ok(seed) => vec![seed.parse().expect("SYNOD_SEED must be a u64")],
        Err(_) => (0..40).collect(),
    };
    for seed in seeds {
        let run = std::panic::catch_unwind(|| sweep_one_seed(seed));
        if let Err(panic) = run {
            eprintln!(
                "seed {seed} failed; replay with: SYNOD_SEED={seed} cargo test -p synod-detector \
                 random_jittered_arrivals_keep_phi_sane_and_invariants_hold"
            );
            std::panic::resume_unwind(panic);
        }
    }
}
