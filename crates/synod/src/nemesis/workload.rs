//! The workload: closed-loop clients doing reads, writes and compare-and-sets on a small key
//! set through synod-client (leader discovery on, sessions off, so a write whose outcome is
//! unknown is not retried), recorded as a history `synod check` reads. Even-numbered
//! clients read at the linearizable level (ReadIndex), odd-numbered ones at the lease level,
//! which leans on bounded clock drift, so that clock faults have something to break; both
//! promise linearizable reads and are checked as such.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

pub use crate::history_lines::{Event, key_name};
use synod_client::{Client, ClientConfig, ClientError, ReadLevel, Retry};
use synod_core::Prng;

/// Operations one client records at most; it stops early when it reaches the limit.
const OPS_PER_CLIENT_MAX: usize = 500_000;
/// The bound on one operation beyond the client's own deadline (a safety net: the client
/// already gives up after `OPERATION_DEADLINE`).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(6);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
const OPERATION_DEADLINE: Duration = Duration::from_millis(3000);
/// The longest wait between two attempts of one operation. Short, so that the moment the
/// cluster can serve again shows in the history within this much (the recovery figures
/// measure the cluster, not a client's patience).
pub const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// How long the final read of one key is tried before the harness gives up on it.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(20);
/// The pause between two operations of one client, so that a run's history stays small
/// enough to check in seconds.
const THINK_TIME: Duration = Duration::from_millis(5);

/// What every client shares.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seeds: Vec<String>,
    pub clients: u64,
    pub keys: u64,
    pub origin: Instant,
    pub stop_at: Instant,
    pub seed: u64,
}

fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The read level of client `index`: lease for odd ones, linearizable for the others.
pub fn read_level(index: u64) -> ReadLevel {
    match index % 2 {
        1 => ReadLevel::Lease,
        _ => ReadLevel::Linearizable,
    }
}

fn client_config(seed: u64, read_level: ReadLevel) -> ClientConfig {
    ClientConfig {
        request_timeout: REQUEST_TIMEOUT,
        operation_deadline: OPERATION_DEADLINE,
        backoff_max: BACKOFF_MAX,
        read_level: Some(read_level),
        sessions: false,
        jitter_seed: Some(seed),
        ..ClientConfig::default()
    }
}

/// Whether a failed write certainly did not take effect (`fail`) or may have (`info`).
fn write_failed_certainly(error: &ClientError) -> bool {
    match error {
        ClientError::GaveUp { last, .. } => write_failed_certainly(last),
        other => other.retry() == Retry::Safe,
    }
}

/// The result of one operation, as the history records it.
struct Completion {
    kind: &'static str,
    value: Json,
}

/// One client: its connection, its process id and its recorded events.
struct Worker {
    client: Client,
    process: u64,
    clients: u64,
    counter: u64,
    index: u64,
    origin: Instant,
    events: Vec<Event>,
    /// The last value this client read or wrote per key, the expected value of its cas.
    last_seen: BTreeMap<u64, String>,
}

impl Worker {
    fn record(&mut self, kind: &'static str, function: &'static str, key: u64, value: Json) {
        self.events.push(Event {
            process: self.process,
            kind,
            function,
            key,
            value,
            time: nanos_since(self.origin),
        });
    }

    async fn read(&mut self, key: u64) -> Completion {
        let name = key_name(key);
        let result = tokio::time::timeout(OPERATION_TIMEOUT, self.client.get(name.as_bytes()));
        match result.await {
            Ok(Ok(value)) => {
                let value = value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                if let Some(text) = &value {
                    self.last_seen.insert(key, text.clone());
                }
                Completion {
                    kind: "ok",
                    value: value.map_or(Json::Null, Json::String),
                }
            }
            // A read has no effect: a failed one is simply not counted.
            _ => Completion {
                kind: "fail",
                value: Json::Null,
            },
        }
    }

    fn next_value(&mut self) -> String {
        self.counter += 1;
        format!("{}:{}", self.index, self.counter)
    }

    async fn write(&mut self, key: u64, value: &str) -> Completion {
        let name = key_name(key);
        let call = self.client.set(name.as_bytes(), value.as_bytes());
        let kind = match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
            Ok(Ok(())) => {
                self.last_seen.insert(key, value.to_owned());
                "ok"
            }
            Ok(Err(error)) if write_failed_certainly(&error) => "fail",
            _ => "info",
        };
        Completion {
            kind,
            value: Json::String(value.to_owned()),
        }
    }

    async fn cas(&mut self, key: u64, expected: &str, new: &str) -> Completion {
        let name = key_name(key);
        let call = self
            .client
            .cas(name.as_bytes(), expected.as_bytes(), new.as_bytes());
        let kind = match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
            Ok(Ok(outcome)) if outcome.swapped => {
                self.last_seen.insert(key, new.to_owned());
                "ok"
            }
            Ok(Ok(outcome)) => {
                match outcome.current {
                    Some(current) => {
                        let current = String::from_utf8_lossy(&current).into_owned();
                        self.last_seen.insert(key, current);
                    }
                    None => {
                        self.last_seen.remove(&key);
                    }
                }
                "fail"
            }
            Ok(Err(error)) if write_failed_certainly(&error) => "fail",
            _ => "info",
        };
        Completion {
            kind,
            value: json!([expected, new]),
        }
    }

    /// One random operation, recorded.
    async fn step(&mut self, keys: u64, prng: &mut Prng) {
        let key = prng.below(keys);
        let choice = prng.below(4);
        let (function, invoke_value, completion) = match (choice, self.last_seen.get(&key)) {
            (0 | 1, _) => {
                self.record("invoke", "read", key, Json::Null);
                ("read", None, self.read(key).await)
            }
            (2, Some(expected)) => {
                let expected = expected.clone();
                let new = self.next_value();
                let value = json!([expected, new]);
                self.record("invoke", "cas", key, value.clone());
                ("cas", Some(value), self.cas(key, &expected, &new).await)
            }
            _ => {
                let value = self.next_value();
                self.record("invoke", "write", key, Json::String(value.clone()));
                let completion = self.write(key, &value).await;
                ("write", Some(Json::String(value)), completion)
            }
        };
        let value = invoke_value.unwrap_or(completion.value.clone());
        let value = if function == "read" && completion.kind != "ok" {
            Json::Null
        } else {
            value
        };
        self.record(completion.kind, function, key, value);
        if completion.kind == "info" {
            // A process with an operation of unknown outcome never invokes again.
            self.process += self.clients;
            self.last_seen.remove(&key);
        }
    }
}

/// Runs client `index` until `stop_at`; returns its events.
pub async fn run_client(config: WorkloadConfig, index: u64) -> Vec<Event> {
    let seeds: Vec<&str> = config.seeds.iter().map(String::as_str).collect();
    let client = Client::new(
        &seeds,
        client_config(config.seed ^ index, read_level(index)),
    )
    .expect("the nemesis client config is valid");
    let mut worker = Worker {
        client,
        process: index,
        clients: config.clients,
        counter: 0,
        index,
        origin: config.origin,
        events: Vec::new(),
        last_seen: BTreeMap::new(),
    };
    let mut prng = Prng::from_seed(config.seed.wrapping_add(index).wrapping_mul(0x9e37_79b9));
    while Instant::now() < config.stop_at && worker.events.len() < OPS_PER_CLIENT_MAX {
        worker.step(config.keys, &mut prng).await;
        tokio::time::sleep(THINK_TIME).await;
    }
    worker.events
}

/// Reads every key once it succeeds (or its deadline passes), as process `process`.
pub async fn final_reads(config: &WorkloadConfig, process: u64) -> Vec<Event> {
    let seeds: Vec<&str> = config.seeds.iter().map(String::as_str).collect();
    let level = ReadLevel::Linearizable;
    let client = Client::new(&seeds, client_config(config.seed ^ process, level))
        .expect("the nemesis client config is valid");
    let mut worker = Worker {
        client,
        process,
        clients: 0,
        counter: 0,
        index: process,
        origin: config.origin,
        events: Vec::new(),
        last_seen: BTreeMap::new(),
    };
    for key in 0..config.keys {
        let deadline = Instant::now() + FINAL_READ_DEADLINE;
        // Bounded by the deadline: each attempt takes at most OPERATION_TIMEOUT.
        loop {
            worker.record("invoke", "read", key, Json::Null);
            let completion = worker.read(key).await;
            let ok = completion.kind == "ok";
            let value = if ok { completion.value } else { Json::Null };
            worker.record(completion.kind, "read", key, value);
            if ok || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    worker.events
}
