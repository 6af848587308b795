//! BUGGIFY fault points under simulation.
//!
//! The first time a run asks about a named point, the point is armed or not (with the fault
//! mix's arming probability, from a PRNG forked off the run's PRNG at the start); an armed
//! point then fires on each query with the mix's fire probability. So one run exercises a
//! handful of rare paths often, and across many seeds every path gets its turn. Queries and
//! fires are counted per point for the report.
//!
//! The decisions are shared through an `Arc<Mutex<..>>` because [`FaultPoints`] boxes handed
//! to protocols must be `Send`. A run is single-threaded, so the lock is never contended and
//! the order of queries (hence every decision) is fixed by the seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use synod_core::{FaultPoints, Prng};

/// The most distinct fault points one run may name. More means a point name is built at
/// run time, which the `&'static str` interface is meant to prevent.
pub const BUGGIFY_POINTS_MAX: usize = 4_096;

/// How often points arm and fire in a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuggifyRates {
    /// The chance that a point is armed in this run, decided at its first query.
    pub arm_probability: f64,
    /// The chance that an armed point fires on a query.
    pub fire_probability: f64,
}

/// What one point did in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointCount {
    pub point: &'static str,
    pub armed: bool,
    pub queries_count: u64,
    pub fires_count: u64,
}

#[derive(Debug)]
struct PointState {
    armed: bool,
    queries_count: u64,
    fires_count: u64,
}

#[derive(Debug)]
struct Registry {
    /// `None` when the fault mix has buggify off.
    rates: Option<BuggifyRates>,
    /// False in the liveness phase: rare paths must not stand in the way of progress.
    enabled: bool,
    arming_prng: Prng,
    points: BTreeMap<&'static str, PointState>,
}

impl Registry {
    fn query(&mut self, point: &'static str, prng: &mut Prng) -> bool {
        let rates = self.rates;
        if !self.points.contains_key(point) {
            assert!(
                self.points.len() < BUGGIFY_POINTS_MAX,
                "more than {BUGGIFY_POINTS_MAX} distinct fault points in one run"
            );
            let armed = rates.is_some_and(|rates| self.arming_prng.chance(rates.arm_probability));
            let state = PointState {
                armed,
                queries_count: 0,
                fires_count: 0,
            };
            self.points.insert(point, state);
        }
        let enabled = self.enabled;
        let state = self.points.get_mut(point).expect("inserted above");
        state.queries_count += 1;
        let fires = match rates {
            Some(rates) if enabled && state.armed => prng.chance(rates.fire_probability),
            _ => false,
        };
        state.fires_count += u64::from(fires);
        fires
    }
}

/// The fault-point decisions of one run.
#[derive(Clone, Debug)]
pub struct Buggify {
    shared: Arc<Mutex<Registry>>,
}

impl Buggify {
    /// `arming_prng` must be forked from the run's PRNG; `rates` is `None` when the run has
    /// buggify off.
    pub fn new(rates: Option<BuggifyRates>, arming_prng: Prng) -> Buggify {
        let registry = Registry {
            rates,
            enabled: true,
            arming_prng,
            points: BTreeMap::new(),
        };
        Buggify {
            shared: Arc::new(Mutex::new(registry)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic cannot happen while the lock is held (no user code runs under it), so a
        // poisoned lock still holds consistent counts.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `point` fires now; fire draws come from `prng`.
    pub fn fires(&self, point: &'static str, prng: &mut Prng) -> bool {
        self.lock().query(point, prng)
    }

    /// A self-contained fault-point source for a protocol, with its own PRNG (forked from
    /// the run's) and the run's arming decisions.
    pub fn fault_points(&self, prng: Prng) -> Box<dyn FaultPoints + Send> {
        Box::new(SimFaultPoints {
            buggify: self.clone(),
            prng,
        })
    }

    /// Turns firing on or off for every point (arming decisions are kept).
    pub fn set_enabled(&self, enabled: bool) {
        self.lock().enabled = enabled;
    }

    /// Every point queried so far, by name.
    pub fn counts(&self) -> Vec<PointCount> {
        self.lock()
            .points
            .iter()
            .map(|(point, state)| PointCount {
                point,
                armed: state.armed,
                queries_count: state.queries_count,
                fires_count: state.fires_count,
            })
            .collect()
    }

    pub fn fires_count(&self) -> u64 {
        self.lock()
            .points
            .values()
            .map(|state| state.fires_count)
            .sum()
    }
}

/// The [`FaultPoints`] a protocol owns under simulation.
#[derive(Debug)]
pub struct SimFaultPoints {
    buggify: Buggify,
    prng: Prng,
}

impl FaultPoints for SimFaultPoints {
    fn fires(&mut self, point: &'static str) -> bool {
        self.buggify.fires(point, &mut self.prng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_is_decided_once_per_point_and_unarmed_points_never_fire() {
        // Checks the arming rule: with arm probability 0.5 over many points some arm and
        // some do not; an armed point with fire probability 1 always fires, an unarmed one
        // never does, and disabling stops all fires.
        let rates = BuggifyRates {
            arm_probability: 0.5,
            fire_probability: 1.0,
        };
        let buggify = Buggify::new(Some(rates), Prng::from_seed(4));
        let mut prng = Prng::from_seed(5);
        const POINTS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let first: Vec<bool> = POINTS.iter().map(|p| buggify.fires(p, &mut prng)).collect();
        assert!(first.iter().any(|fired| *fired) && first.iter().any(|fired| !*fired));
        for _ in 0..5 {
            let again: Vec<bool> = POINTS.iter().map(|p| buggify.fires(p, &mut prng)).collect();
            assert_eq!(again, first);
        }
        let mut owned = buggify.fault_points(Prng::from_seed(6));
        assert_eq!(owned.fires("a"), first[0]);
        buggify.set_enabled(false);
        assert!(!POINTS.iter().any(|p| buggify.fires(p, &mut prng)));
        let counts = buggify.counts();
        assert_eq!(counts.len(), 8);
        assert_eq!(counts[0].queries_count, 8);
        let armed_count = first.iter().filter(|fired| **fired).count() as u64;
        assert_eq!(buggify.fires_count(), armed_count * 6 + u64::from(first[0]));
    }

    #[test]
    fn buggify_off_never_fires() {
        // Checks that a run with buggify off never fires any point but still counts queries.
        let buggify = Buggify::new(None, Prng::from_seed(1));
        let mut prng = Prng::from_seed(2);
        assert!(!(0..100).any(|_| buggify.fires("point", &mut prng)));
        assert_eq!(buggify.counts()[0].queries_count, 100);
    }
}
