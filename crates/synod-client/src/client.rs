//! The cluster-aware client: leader discovery, retries with backoff until a deadline, and
//! exactly-once writes through a `SYNOD.SESSION`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use synod_core::Prng;
use synod_resilience::BreakerConfig;
use synod_server::{ReadLevel, Reply};

use crate::breakers::{self, NodeBreakerState, NodeBreakers};
use crate::connection::{Connection, millis};
use crate::error::{ClientError, Retry};
use crate::retry::{Decision, Replay, RetryPolicy, decide};
use crate::status::{ClusterStatus, as_integer, parse_status};

/// Most addresses tried in one round of leader discovery (seeds and learned members).
pub const DISCOVERY_CANDIDATES_MAX: usize = 64;
/// Most seed addresses a client takes.
pub const SEEDS_MAX: usize = 64;

/// How a [`Client`] behaves. [`ClientConfig::validate`] names the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bound on one request (connect, or send and reply).
    pub request_timeout: Duration,
    /// Bound on a whole operation: every attempt and every wait between them.
    pub operation_deadline: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Most attempts per operation, the first included.
    pub attempts_max: u32,
    /// Sent as `SYNOD.READ-LEVEL` on every new connection; `None` keeps the node's default.
    pub read_level: Option<ReadLevel>,
    /// Find the leader with `SYNOD.STATUS` (synod). Off: use the seeds in turn (plain Redis).
    pub discovery: bool,
    /// Make writes exactly-once through `SYNOD.SESSION` (synod). Off: a write whose outcome
    /// is unknown is not retried, since it could apply twice (plain Redis).
    pub sessions: bool,
    /// Seed of the retry jitter; `None` draws one from the clock and the process id.
    pub jitter_seed: Option<u64>,
    /// The circuit breaker kept for each node address: a node whose breaker is open is
    /// skipped while another can be asked.
    pub breaker: BreakerConfig,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_secs(2),
            operation_deadline: Duration::from_secs(10),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(1000),
            attempts_max: 30,
            read_level: None,
            discovery: true,
            sessions: true,
            jitter_seed: None,
            breaker: BreakerConfig::default(),
        }
    }
}

impl ClientConfig {
    /// Settings for a plain Redis server: no discovery, no sessions, no read level.
    pub fn plain_redis() -> ClientConfig {
        ClientConfig {
            discovery: false,
            sessions: false,
            ..ClientConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), ClientError> {
        let refuse = |message: String| Err(ClientError::Config(message));
        if self.request_timeout.is_zero() {
            return refuse("request_timeout must be positive".into());
        }
        if self.operation_deadline < self.request_timeout {
            return refuse(format!(
                "operation_deadline ({} ms) must be at least request_timeout ({} ms)",
                millis(self.operation_deadline),
                millis(self.request_timeout)
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return refuse(format!(
                "backoff_min ({} ms) must be positive and at most backoff_max ({} ms)",
                millis(self.backoff_min),
                millis(self.backoff_max)
            ));
        }
        if self.attempts_max == 0 {
            return refuse("attempts_max must be at least 1".into());
        }
        if let Err(error) = self.breaker.validate() {
            let error = error.within("breaker");
            return refuse(format!("{} {}", error.field, error.problem));
        }
        let half_open_duration_max = self.breaker.half_open_duration_max.to_std();
        if half_open_duration_max < self.request_timeout {
            // A trial call may take the whole request timeout; a shorter bound would reopen
            // the breaker under every slow but healthy trial.
            return refuse(format!(
                "breaker.half_open_duration_max ({} ms) must be at least request_timeout ({} ms)",
                millis(half_open_duration_max),
                millis(self.request_timeout)
            ));
        }
        Ok(())
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            attempts_max: self.attempts_max,
            operation_deadline: self.operation_deadline,
        }
    }
}

/// The answer to `SYNOD.CAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the key held the expected value and now holds the new one.
    pub swapped: bool,
    /// The key's value after the operation.
    pub current: Option<Bytes>,
}

/// The session that makes this client's writes exactly-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    client: u64,
    /// The sequence the next write carries; it advances when a write is answered.
    sequence_next: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    /// A command the client does not interpret: error replies are returned, not raised.
    Raw,
}

/// A client of a synod cluster (or of one Redis server, with [`ClientConfig::plain_redis`]).
///
/// It keeps one connection, to the leader. Every operation is retried on a connection error,
/// a timeout or `-TRYAGAIN`, after rediscovering the leader and waiting with backoff, until
/// `operation_deadline` or `attempts_max`. Writes carry the session's sequence, so a write
/// retried after its outcome was lost is applied once.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    seeds: Vec<String>,
    /// RESP addresses learned from `SYNOD.STATUS`.
    members: Vec<String>,
    connection: Option<Connection>,
    /// The sequence the server will give this connection's next write, when it is known.
    connection_sequence: Option<u64>,
    session: Option<Session>,
    /// Which seed plain-Redis mode tries next.
    seed_next: usize,
    prng: Prng,
    /// One circuit breaker per node address.
    breakers: NodeBreakers,
}

impl Client {
    /// A client of the cluster that `seeds` (`host:port` RESP addresses) belong to. It
    /// connects lazily, on the first operation.
    pub fn new(seeds: &[&str], config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        if seeds.is_empty() || seeds.len() > SEEDS_MAX {
            return Err(ClientError::Config(format!(
                "give between 1 and {SEEDS_MAX} seed addresses, not {}",
                seeds.len()
            )));
        }
        let seed = config.jitter_seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        });
        Ok(Client {
            seeds: seeds.iter().map(|seed| (*seed).to_owned()).collect(),
            members: Vec::new(),
            connection: None,
            connection_sequence: None,
            session: None,
            seed_next: 0,
            prng: Prng::from_seed(seed),
            breakers: NodeBreakers::new(config.breaker),
            config,
        })
    }

    /// The address of the node the client is connected to, if any.
    pub fn connected_address(&self) -> Option<&str> {
        self.connection.as_ref().map(Connection::address)
    }

    /// The circuit breaker of every node the client has called, by address: its state, the
    /// calls it judges and its counters (for `synod` tools to print, or metrics).
    pub fn breaker_states(&self) -> Vec<NodeBreakerState> {
        self.breakers.states()
    }

    /// Closes the connection; the next operation connects (and, with discovery, finds the
    /// leader) again.
    pub fn disconnect(&mut self) {
        self.drop_connection();
    }

    /// The session's client id and next sequence, once a write has opened it.
    pub fn session(&self) -> Option<(u64, u64)> {
        self.session
            .map(|session| (session.client, session.sequence_next))
    }

    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, ClientError> {
        let reply = self.execute(Kind::Read, &[b"GET", key]).await?;
        optional_bulk(&reply).ok_or_else(|| self.unexpected("GET", &reply))
    }

    pub async fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let reply = self.execute(Kind::Write, &[b"SET", key, value]).await?;
        self.expect_ok("SET", &reply)
    }

    /// Deletes `keys`; returns how many existed.
    pub async fn del(&mut self, keys: &[&[u8]]) -> Result<i64, ClientError> {
        let mut arguments: Vec<&[u8]> = vec![b"DEL"];
        arguments.extend_from_slice(keys);
        let reply = self.execute(Kind::Write, &arguments).await?;
        self.expect_integer("DEL", &reply)
    }

    pub async fn incr(&mut self, key: &[u8]) -> Result<i64, ClientError> {
        let reply = self.execute(Kind::Write, &[b"INCR", key]).await?;
        self.expect_integer("INCR", &reply)
    }

    /// Sets `key` to `new` if it holds `expected` (`SYNOD.CAS`, synod only).
    pub async fn cas(
        &mut self,
        key: &[u8],
        expected: &[u8],
        new: &[u8],
    ) -> Result<CasOutcome, ClientError> {
        let reply = self
            .execute(Kind::Write, &[b"SYNOD.CAS", key, expected, new])
            .await?;
        parse_cas(&reply).ok_or_else(|| self.unexpected("SYNOD.CAS", &reply))
    }

    pub async fn mget(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, ClientError> {
        let mut arguments: Vec<&[u8]> = vec![b"MGET"];
        arguments.extend_from_slice(keys);
        let reply = self.execute(Kind::Read, &arguments).await?;
        let values = match &reply {
            Reply::Array(Some(items)) if items.len() == keys.len() => {
                items.iter().map(optional_bulk).collect::<Option<Vec<_>>>()
            }
            _ => None,
        };
        values.ok_or_else(|| self.unexpected("MGET", &reply))
    }

    pub async fn mset(&mut self, pairs: &[(&[u8], &[u8])]) -> Result<(), ClientError> {
        let mut arguments: Vec<&[u8]> = vec![b"MSET"];
        for (key, value) in pairs {
            arguments.push(key);
            arguments.push(value);
        }
        let reply = self.execute(Kind::Write, &arguments).await?;
        self.expect_ok("MSET", &reply)
    }

    /// The status of the node the client is connected to (`SYNOD.STATUS`).
    pub async fn status(&mut self) -> Result<ClusterStatus, ClientError> {
        let reply = self.execute(Kind::Read, &[b"SYNOD.STATUS"]).await?;
        parse_status(&reply).map_err(|detail| ClientError::UnexpectedReply {
            address: self.address_text(),
            command: "SYNOD.STATUS".into(),
            reply: detail,
        })
    }

    /// Sends any command to the leader. Error replies come back as `Ok(Reply::Error)`; it is
    /// retried only when it certainly did not run (no connection, `-TRYAGAIN`).
    pub async fn call(&mut self, arguments: &[&[u8]]) -> Result<Reply, ClientError> {
        self.execute(Kind::Raw, arguments).await
    }

    /// Runs one operation: attempts, each followed by a decision to retry or give up.
    async fn execute(&mut self, kind: Kind, arguments: &[&[u8]]) -> Result<Reply, ClientError> {
        let started = Instant::now();
        let policy = self.config.retry_policy();
        let replay = match kind {
            Kind::Read => Replay::Harmless,
            Kind::Write if self.config.sessions => Replay::Harmless,
            Kind::Write | Kind::Raw => Replay::Unsafe,
        };
        let mut attempts = 0;
        // Bounded: decide() gives up at attempts_max.
        loop {
            attempts += 1;
            let error = match self.attempt(kind, arguments).await {
                Ok(reply) => return Ok(reply),
                Err(error) => error,
            };
            if error.breaks_connection() || error.retry() == Retry::Safe {
                // After a lost reply or a node that knows no leader, find the leader again.
                self.drop_connection();
            }
            let elapsed = started.elapsed();
            let random = self.prng.next_u64();
            match decide(&policy, attempts, elapsed, error.retry(), replay, random) {
                Decision::RetryAfter(delay) => tokio::time::sleep(delay).await,
                Decision::GiveUp if attempts == 1 || error.retry() == Retry::Never => {
                    return Err(error);
                }
                Decision::GiveUp => {
                    return Err(ClientError::GaveUp {
                        attempts,
                        attempts_max: policy.attempts_max,
                        elapsed_ms: millis(elapsed),
                        deadline_ms: millis(policy.operation_deadline),
                        last: Box::new(error),
                    });
                }
            }
        }
    }

    async fn attempt(&mut self, kind: Kind, arguments: &[&[u8]]) -> Result<Reply, ClientError> {
        self.ensure_connection().await?;
        let bound = kind == Kind::Write && self.config.sessions;
        if bound {
            self.bind_session().await?;
        }
        let connection = self
            .connection
            .as_mut()
            .expect("ensure_connection connected");
        let reply = breakers::call(&mut self.breakers, connection, arguments).await?;
        let address = connection.address().to_owned();
        if let Reply::Error(message) = &reply {
            if is_try_again(message) {
                return Err(ClientError::TryAgain {
                    address,
                    message: message.clone(),
                });
            }
            if bound {
                // The server may or may not have spent a sequence on the refused write.
                self.sync_session().await?;
            }
            if kind == Kind::Raw {
                return Ok(reply);
            }
            return Err(ClientError::Server {
                address,
                message: message.clone(),
            });
        }
        if bound {
            let session = self.session.as_mut().expect("bind_session opened it");
            session.sequence_next += 1;
            self.connection_sequence = Some(session.sequence_next);
        } else if kind == Kind::Raw && self.connection_sequence.is_some() {
            // A raw write spends a sequence the client did not count.
            self.sync_session().await?;
        }
        Ok(reply)
    }

    /// Makes the connection's next write carry the session's next sequence: opens the
    /// session on the first write, and resumes it on a new connection.
    async fn bind_session(&mut self) -> Result<(), ClientError> {
        if self.session.is_none() {
            let reply = self.session_command(&[b"SYNOD.SESSION", b"OPEN"]).await?;
            let client = as_integer(&reply).ok_or_else(|| self.unexpected("OPEN", &reply))?;
            self.session = Some(Session {
                client,
                sequence_next: 0,
            });
            self.sync_session().await?;
            return Ok(());
        }
        let session = self.session.expect("checked above");
        if self.connection_sequence == Some(session.sequence_next) {
            return Ok(());
        }
        let client = session.client.to_string();
        let sequence = session.sequence_next.to_string();
        let arguments: [&[u8]; 4] = [
            b"SYNOD.SESSION",
            b"RESUME",
            client.as_bytes(),
            sequence.as_bytes(),
        ];
        let reply = self.session_command(&arguments).await?;
        self.expect_ok("SYNOD.SESSION RESUME", &reply)?;
        self.connection_sequence = Some(session.sequence_next);
        Ok(())
    }

    /// Learns the session's next sequence from the server (`SYNOD.SESSION INFO`).
    async fn sync_session(&mut self) -> Result<(), ClientError> {
        let reply = self.session_command(&[b"SYNOD.SESSION", b"INFO"]).await?;
        let info = match &reply {
            Reply::Array(Some(items)) if items.len() >= 2 => {
                as_integer(&items[0]).zip(as_integer(&items[1]))
            }
            _ => None,
        };
        let (client, sequence_next) =
            info.ok_or_else(|| self.unexpected("SYNOD.SESSION INFO", &reply))?;
        self.session = Some(Session {
            client,
            sequence_next,
        });
        self.connection_sequence = Some(sequence_next);
        Ok(())
    }

    /// Sends a session command on the current connection; error replies become errors.
    async fn session_command(&mut self, arguments: &[&[u8]]) -> Result<Reply, ClientError> {
        let connection = self.connection.as_mut().expect("called with a connection");
        let reply = breakers::call(&mut self.breakers, connection, arguments).await?;
        match reply {
            Reply::Error(message) if is_try_again(&message) => Err(ClientError::TryAgain {
                address: connection.address().to_owned(),
                message,
            }),
            Reply::Error(message) => Err(ClientError::Server {
                address: connection.address().to_owned(),
                message,
            }),
            reply => Ok(reply),
        }
    }

    fn drop_connection(&mut self) {
        self.connection = None;
        self.connection_sequence = None;
    }

    /// Connects to the leader (or, without discovery, to the next seed) unless connected.
    async fn ensure_connection(&mut self) -> Result<(), ClientError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| !connection.is_broken())
        {
            return Ok(());
        }
        self.drop_connection();
        let mut connection = if self.config.discovery {
            self.discover_leader().await?
        } else {
            self.connect_to_seed().await?
        };
        if let Some(level) = self.config.read_level {
            let arguments: [&[u8]; 2] = [b"SYNOD.READ-LEVEL", level.name().as_bytes()];
            let reply = breakers::call(&mut self.breakers, &mut connection, &arguments).await?;
            if let Reply::Error(message) = reply {
                return Err(ClientError::Server {
                    address: connection.address().to_owned(),
                    message,
                });
            }
        }
        self.connection = Some(connection);
        Ok(())
    }

    /// Connects to the next seed in turn whose breaker lets it (plain-Redis mode). When every
    /// seed's breaker is open, the one that opened longest ago is tried anyway.
    async fn connect_to_seed(&mut self) -> Result<Connection, ClientError> {
        let timeout = self.config.request_timeout;
        let mut refused = None;
        // Bounded by the seed count: each pass moves to the next seed.
        for _ in 0..self.seeds.len() {
            let seed = self.seeds[self.seed_next % self.seeds.len()].clone();
            self.seed_next = self.seed_next.wrapping_add(1);
            match breakers::connect(&mut self.breakers, &seed, timeout).await {
                Err(error @ ClientError::BreakerOpen { .. }) => refused = Some(error),
                result => return result,
            }
        }
        let Some(seed) = self.breakers.least_recently_opened(&self.seeds) else {
            return Err(refused.expect("at least one seed"));
        };
        self.breakers.force_half_open(&seed);
        breakers::connect(&mut self.breakers, &seed, timeout).await
    }

    /// Asks the learned members, then the seeds, for `SYNOD.STATUS` until one names a leader,
    /// and connects to it. Nodes whose breaker is open are skipped; when every candidate's
    /// is, the one that opened longest ago is asked anyway, so the client never waits on
    /// breakers alone.
    async fn discover_leader(&mut self) -> Result<Connection, ClientError> {
        let mut candidates: Vec<String> = Vec::new();
        for address in self.members.iter().chain(&self.seeds) {
            if !candidates.contains(address) && candidates.len() < DISCOVERY_CANDIDATES_MAX {
                candidates.push(address.clone());
            }
        }
        let mut problems: Vec<String> = Vec::new();
        let mut asked_any = false;
        for address in &candidates {
            match self.ask_for_leader(address).await {
                Ok(connection) => return Ok(connection),
                Err(Problem::BreakerOpen(problem)) => problems.push(problem),
                Err(Problem::Failed(problem)) => {
                    asked_any = true;
                    problems.push(problem);
                }
            }
        }
        if !asked_any && let Some(address) = self.breakers.least_recently_opened(&candidates) {
            self.breakers.force_half_open(&address);
            match self.ask_for_leader(&address).await {
                Ok(connection) => return Ok(connection),
                Err(Problem::BreakerOpen(problem) | Problem::Failed(problem)) => {
                    problems.push(problem);
                }
            }
        }
        Err(ClientError::NoLeader {
            seeds: self.seeds.join(","),
            detail: problems.join("; "),
        })
    }

    /// Asks `address` for `SYNOD.STATUS` and connects to the leader it names.
    async fn ask_for_leader(&mut self, address: &str) -> Result<Connection, Problem> {
        let timeout = self.config.request_timeout;
        let mut connection = match breakers::connect(&mut self.breakers, address, timeout).await {
            Ok(connection) => connection,
            Err(error) => return Err(Problem::from_error(error)),
        };
        let status = match breakers::call(&mut self.breakers, &mut connection, &[b"SYNOD.STATUS"])
            .await
        {
            Ok(Reply::Error(message)) => Err(format!("answered -{message} (is it a synod node?)")),
            Ok(reply) => parse_status(&reply),
            Err(error @ ClientError::BreakerOpen { .. }) => {
                return Err(Problem::from_error(error));
            }
            Err(error) => Err(error.to_string()),
        };
        let status = status
            .map_err(|problem| Problem::Failed(format!("{address}: SYNOD.STATUS: {problem}")))?;
        self.learn_members(&status);
        let Some(leader_address) = status.leader_address().map(str::to_owned) else {
            let problem = format!("{address}: node {} knows no leader", status.node);
            return Err(Problem::Failed(problem));
        };
        if status.leader == Some(status.node) || leader_address == address {
            return Ok(connection);
        }
        // A live node names the leader now: news the leader's breaker has not seen (it may
        // have opened while that node was down, before it won an election). Waiting out the
        // open state would leave the client without a leader for that long, so an open
        // breaker gets its half-open trial at once; a failed trial opens it again.
        let connected = match breakers::connect(&mut self.breakers, &leader_address, timeout).await
        {
            Err(ClientError::BreakerOpen { .. }) => {
                self.breakers.force_half_open(&leader_address);
                breakers::connect(&mut self.breakers, &leader_address, timeout).await
            }
            result => result,
        };
        connected.map_err(|error| Problem::Failed(error.to_string()))
    }

    fn learn_members(&mut self, status: &ClusterStatus) {
        for member in &status.members {
            let known = self.members.contains(&member.resp_address);
            if !known && self.members.len() < DISCOVERY_CANDIDATES_MAX {
                self.members.push(member.resp_address.clone());
            }
        }
    }

    fn address_text(&self) -> String {
        self.connected_address()
            .unwrap_or("(not connected)")
            .to_owned()
    }

    fn unexpected(&self, command: &str, reply: &Reply) -> ClientError {
        ClientError::UnexpectedReply {
            address: self.address_text(),
            command: command.to_owned(),
            reply: format!("{reply:?}"),
        }
    }

    fn expect_ok(&self, command: &str, reply: &Reply) -> Result<(), ClientError> {
        match reply {
            Reply::Simple(text) if text == "OK" => Ok(()),
            _ => Err(self.unexpected(command, reply)),
        }
    }

    fn expect_integer(&self, command: &str, reply: &Reply) -> Result<i64, ClientError> {
        match reply {
            Reply::Integer(value) => Ok(*value),
            _ => Err(self.unexpected(command, reply)),
        }
    }
}

/// Why one candidate of leader discovery gave no leader.
enum Problem {
    /// Its breaker is open: nothing was sent.
    BreakerOpen(String),
    Failed(String),
}

impl Problem {
    fn from_error(error: ClientError) -> Problem {
        match error {
            ClientError::BreakerOpen { .. } => Problem::BreakerOpen(error.to_string()),
            error => Problem::Failed(error.to_string()),
        }
    }
}

/// Whether an error reply says this node cannot take the request now but another may, and
/// the request was certainly not applied: the cluster knows no leader (`TRYAGAIN`), or this
/// node's disk is full or failing (`READONLY`: its Raft is stopped, the others elect a
/// leader without it).
pub fn is_try_again(message: &str) -> bool {
    message.starts_with("TRYAGAIN") || message.starts_with("READONLY")
}

/// Whether an error reply to a write says the write may have taken effect (a timeout, a
/// leader lost or changed after it was proposed): a history must record it as of unknown
/// outcome, never as failed.
pub fn outcome_unknown(message: &str) -> bool {
    message.contains("outcome is unknown")
}

/// A bulk string or nil.
fn optional_bulk(reply: &Reply) -> Option<Option<Bytes>> {
    match reply {
        Reply::Bulk(value) => Some(value.clone()),
        Reply::Null => Some(None),
        _ => None,
    }
}

/// `[1|0, current]`.
pub fn parse_cas(reply: &Reply) -> Option<CasOutcome> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    let [swapped, current] = items.as_slice() else {
        return None;
    };
    let swapped = match swapped {
        Reply::Integer(1) | Reply::Boolean(true) => true,
        Reply::Integer(0) | Reply::Boolean(false) => false,
        _ => return None,
    };
    Some(CasOutcome {
        swapped,
        current: optional_bulk(current)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        // Checks that each inconsistent setting is refused with its field's name.
        type Change = fn(&mut ClientConfig);
        let cases: [(Change, &str); 6] = [
            (
                |config| config.request_timeout = Duration::ZERO,
                "request_timeout",
            ),
            (
                |config| config.operation_deadline = Duration::from_millis(1),
                "operation_deadline",
            ),
            (
                |config| config.backoff_min = Duration::from_secs(5),
                "backoff_min",
            ),
            (|config| config.attempts_max = 0, "attempts_max"),
            (
                |config| config.breaker.failure_rate_percent = 150,
                "client config: breaker.failure_rate_percent must be in 1..=100, got 150",
            ),
            (
                |config| {
                    config.breaker.half_open_duration_max = synod_core::Duration::from_millis(1)
                },
                "breaker.half_open_duration_max (1 ms) must be at least request_timeout",
            ),
        ];
        assert!(ClientConfig::default().validate().is_ok());
        for (change, field) in cases {
            let mut config = ClientConfig::default();
            change(&mut config);
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn cas_replies_parse() {
        // Checks the [1|0, current] reply of SYNOD.CAS, and refusal of other shapes.
        let current = Reply::Bulk(Some(Bytes::from_static(b"v")));
        let swapped = Reply::Array(Some(vec![Reply::Integer(1), current.clone()]));
        let refused = Reply::Array(Some(vec![Reply::Integer(0), Reply::Bulk(None)]));
        assert_eq!(
            parse_cas(&swapped),
            Some(CasOutcome {
                swapped: true,
                current: Some(Bytes::from_static(b"v"))
            })
        );
        assert_eq!(
            parse_cas(&refused),
            Some(CasOutcome {
                swapped: false,
                current: None
            })
        );
        assert_eq!(parse_cas(&Reply::Integer(1)), None);
        assert_eq!(parse_cas(&Reply::Array(Some(vec![current]))), None);
    }

    #[test]
    fn replies_of_unknown_outcome_are_recognised() {
        // Checks the server's three replies for a write that may have taken effect, and
        // that refusals where nothing was done are not mistaken for them.
        for unknown in [
            "ERR synod: the write got no answer within 500 ms and its outcome is unknown; ...",
            "ERR synod: the write entered the log but its outcome is unknown (leader lost); ...",
            "ERR synod: the leader changed before the write was answered and its outcome is \
             unknown (node 1, which had the request, no longer leads (node 2 does)); ...",
        ] {
            assert!(outcome_unknown(unknown), "{unknown}");
        }
        for certain in [
            "TRYAGAIN no quorum: this node has not heard from a leader",
            "BUSY synod is overloaded",
            "READONLY disk full or failing",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ] {
            assert!(!outcome_unknown(certain), "{certain}");
        }
    }

    #[test]
    fn try_again_is_recognised() {
        // Checks which error replies count as "not here, not applied: find the leader and
        // retry": no leader known, or a read-only node.
        assert!(is_try_again("TRYAGAIN no leader known"));
        assert!(is_try_again("READONLY disk full or failing: ..."));
        assert!(!is_try_again("ERR wrong number of arguments"));
        assert!(!is_try_again("BUSY synod is overloaded"));
    }
}
