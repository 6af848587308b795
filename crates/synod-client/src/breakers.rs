//! One circuit breaker per node address, fed by the outcome of every exchange with that node.
//!
//! The breakers are synod-resilience's sans-IO [`CircuitBreaker`]s; this module is the IO
//! boundary that gives them time. The client reads the real monotonic clock and hands the
//! breakers `synod_core::Instant`s counted from the client's creation.
//!
//! What counts: a refused or timed-out connection and a call that fails in transport (IO
//! error, connection closed, timeout, bytes that are not RESP) are failures; every reply,
//! error replies included, is a success (the node answered), slow when it took longer than
//! `slow_call_duration`. A connection that opens is neither: the call made on it decides.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use synod_resilience::{
    BreakerConfig, BreakerState, BreakerStats, CircuitBreaker, Permit, WindowTotals,
};
use synod_server::Reply;

use crate::connection::{Connection, millis};
use crate::error::ClientError;

/// Most breakers a client keeps: its addresses are at most `SEEDS_MAX` seeds and
/// `DISCOVERY_CANDIDATES_MAX` learned members, so this bound is reached only when a leader
/// outside both lists is named; then a closed breaker is forgotten to make room.
pub const BREAKERS_MAX: usize = 128;

/// The breaker of one node, as [`crate::Client::breaker_states`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBreakerState {
    pub address: String,
    pub state: BreakerState,
    /// How long an open breaker keeps refusing calls.
    pub retry_after: Option<Duration>,
    /// The calls the breaker judges now (its window restarts when it closes).
    pub window: WindowTotals,
    pub stats: BreakerStats,
}

impl fmt::Display for NodeBreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.address, self.state)?;
        if let Some(retry_after) = self.retry_after {
            write!(f, " (retry in {} ms)", millis(retry_after))?;
        }
        write!(
            f,
            ": window {} calls, {} failed, {} slow; opened {} times, {} calls rejected",
            self.window.calls_count,
            self.window.failures_count,
            self.window.slow_count,
            self.stats.transitions_to_open,
            self.stats.calls_rejected
        )
    }
}

/// The breakers of every node the client has talked to, and the client's clock for them.
#[derive(Debug)]
pub(crate) struct NodeBreakers {
    config: BreakerConfig,
    origin: Instant,
    breakers: BTreeMap<String, CircuitBreaker>,
}

impl NodeBreakers {
    pub(crate) fn new(config: BreakerConfig) -> NodeBreakers {
        NodeBreakers {
            config,
            origin: Instant::now(),
            breakers: BTreeMap::new(),
        }
    }

    /// The breakers' time: the real monotonic clock, from the client's creation.
    fn now(&self) -> synod_core::Instant {
        synod_core::Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    fn breaker(&mut self, address: &str) -> &mut CircuitBreaker {
        if !self.breakers.contains_key(address) {
            if self.breakers.len() >= BREAKERS_MAX {
                self.forget_one();
            }
            let breaker = CircuitBreaker::new(self.config);
            self.breakers.insert(address.to_owned(), breaker);
        }
        assert!(self.breakers.len() <= BREAKERS_MAX);
        self.breakers.get_mut(address).expect("inserted above")
    }

    /// Makes room for one breaker: forgets a closed one (its history is the least useful),
    /// else the first by address.
    fn forget_one(&mut self) {
        let now = self.now();
        let victim = self
            .breakers
            .iter()
            .find(|(_, breaker)| breaker.state(now) == BreakerState::Closed)
            .or_else(|| self.breakers.iter().next())
            .map(|(address, _)| address.clone());
        if let Some(address) = victim {
            self.breakers.remove(&address);
        }
    }

    /// Asks `address`'s breaker for leave to call it.
    pub(crate) fn acquire(&mut self, address: &str) -> Result<Permit, ClientError> {
        let now = self.now();
        self.acquire_at(address, now)
    }

    fn acquire_at(
        &mut self,
        address: &str,
        now: synod_core::Instant,
    ) -> Result<Permit, ClientError> {
        self.breaker(address)
            .try_acquire(now)
            .map_err(|rejected| ClientError::BreakerOpen {
                address: address.to_owned(),
                retry_after_ms: millis(rejected.retry_after.to_std()),
            })
    }

    /// Reports how a call that began at `started` ended.
    pub(crate) fn record<T>(
        &mut self,
        address: &str,
        permit: Permit,
        started: Instant,
        result: &Result<T, ClientError>,
    ) {
        let now = self.now();
        let duration = synod_core::Duration::from_std(started.elapsed());
        self.record_at(address, permit, now, duration, result);
    }

    fn record_at<T>(
        &mut self,
        address: &str,
        permit: Permit,
        now: synod_core::Instant,
        duration: synod_core::Duration,
        result: &Result<T, ClientError>,
    ) {
        let breaker = self.breaker(address);
        match result {
            Ok(_) => breaker.on_success(now, permit, duration),
            Err(error) if is_node_failure(error) => breaker.on_failure(now, permit, duration),
            Err(_) => breaker.release(now, permit),
        }
    }

    pub(crate) fn release(&mut self, address: &str, permit: Permit) {
        let now = self.now();
        self.breaker(address).release(now, permit);
    }

    /// Of `addresses`, the one whose breaker opened longest ago (never-opened ones first).
    pub(crate) fn least_recently_opened(&self, addresses: &[String]) -> Option<String> {
        addresses
            .iter()
            .min_by_key(|address| {
                self.breakers
                    .get(address.as_str())
                    .and_then(CircuitBreaker::opened_at)
            })
            .cloned()
    }

    /// Lets `address` be tried now although its breaker is open.
    pub(crate) fn force_half_open(&mut self, address: &str) {
        let now = self.now();
        self.breaker(address).force_half_open(now);
    }

    pub(crate) fn states(&self) -> Vec<NodeBreakerState> {
        let now = self.now();
        self.breakers
            .iter()
            .map(|(address, breaker)| {
                let state = breaker.state(now);
                let retry_after = breaker
                    .opened_at()
                    .filter(|_| state == BreakerState::Open)
                    .map(|opened_at| {
                        let until = opened_at + breaker.config().open_duration;
                        (until - now).to_std()
                    });
                NodeBreakerState {
                    address: address.clone(),
                    state,
                    retry_after,
                    window: breaker.window_totals(now),
                    stats: breaker.stats(),
                }
            })
            .collect()
    }
}

/// Whether an error says the node is unwell (rather than the request being wrong).
pub(crate) fn is_node_failure(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Connect { .. }
            | ClientError::ConnectTimeout { .. }
            | ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. }
            | ClientError::Protocol { .. }
    )
}

/// Connects to `address` through its breaker: refused at once while the breaker is open.
pub(crate) async fn connect(
    breakers: &mut NodeBreakers,
    address: &str,
    timeout: Duration,
) -> Result<Connection, ClientError> {
    let permit = breakers.acquire(address)?;
    let started = Instant::now();
    let result = Connection::connect(address, timeout).await;
    match &result {
        // Opening a connection proves little (a hung process still accepts): the call made
        // on it is what the breaker judges.
        Ok(_) => breakers.release(address, permit),
        Err(_) => breakers.record(address, permit, started, &result),
    }
    result
}

/// Makes one call on `connection` through its node's breaker.
pub(crate) async fn call(
    breakers: &mut NodeBreakers,
    connection: &mut Connection,
    arguments: &[&[u8]],
) -> Result<Reply, ClientError> {
    let address = connection.address().to_owned();
    let permit = breakers.acquire(&address)?;
    let started = Instant::now();
    let result = connection.call(arguments).await;
    breakers.record(&address, permit, started, &result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_failures_and_replies_are_not() {
        // Checks which errors feed a node's breaker as failures: transport ones only, never a
        // refusal the node sent or a problem of the client's own making.
        let address = || "127.0.0.1:1".to_owned();
        let io = || std::io::Error::other("reset");
        let cases = [
            (
                ClientError::Connect {
                    address: address(),
                    source: io(),
                },
                true,
            ),
            (
                ClientError::ConnectTimeout {
                    address: address(),
                    timeout_ms: 1,
                },
                true,
            ),
            (
                ClientError::Io {
                    address: address(),
                    source: io(),
                },
                true,
            ),
            (ClientError::Closed { address: address() }, true),
            (
                ClientError::Timeout {
                    address: address(),
                    timeout_ms: 1,
                },
                true,
            ),
            (
                ClientError::Server {
                    address: address(),
                    message: "ERR".into(),
                },
                false,
            ),
            (
                ClientError::TryAgain {
                    address: address(),
                    message: "TRYAGAIN".into(),
                },
                false,
            ),
            (ClientError::Broken { address: address() }, false),
            (
                ClientError::BreakerOpen {
                    address: address(),
                    retry_after_ms: 5,
                },
                false,
            ),
        ];
        for (error, failure) in cases {
            assert_eq!(is_node_failure(&error), failure, "{error}");
        }
    }

    #[test]
    fn the_least_recently_opened_breaker_is_chosen() {
        // Checks the choice when every breaker is open: the one that opened first, and a node
        // without a breaker before any.
        let config = BreakerConfig {
            window: synod_resilience::SlidingWindow::Count { calls_count: 1 },
            calls_min: 1,
            ..BreakerConfig::default()
        };
        let mut breakers = NodeBreakers::new(config);
        let addresses: Vec<String> = ["a:1", "b:1", "c:1"].map(String::from).to_vec();
        // b opens at 1 s, a at 2 s on the breakers' clock (not the real one).
        for (address, second) in [("b:1", 1), ("a:1", 2)] {
            let now = synod_core::Instant::from_nanos(second * 1_000_000_000);
            let permit = breakers.acquire_at(address, now).unwrap();
            let failed: Result<(), ClientError> = Err(ClientError::Closed {
                address: address.into(),
            });
            let duration = synod_core::Duration::from_millis(1);
            breakers.record_at(address, permit, now, duration, &failed);
        }
        let states = breakers.states();
        assert_eq!(states.len(), 2);
        assert!(states.iter().all(|state| state.state == BreakerState::Open));
        assert!(
            states[0].to_string().starts_with("a:1 open (retry in "),
            "{}",
            states[0]
        );
        assert_eq!(
            breakers.least_recently_opened(&addresses),
            Some("c:1".to_owned())
        );
        assert_eq!(
            breakers.least_recently_opened(&addresses[..2]),
            Some("b:1".to_owned())
        );
        assert!(matches!(
            breakers.acquire("a:1"),
            Err(ClientError::BreakerOpen { .. })
        ));
        breakers.force_half_open("a:1");
        let permit = breakers.acquire("a:1").expect("a trial after forcing");
        breakers.release("a:1", permit);
    }
}
