//! The Redis command layer: it turns one parsed RESP command and the state of the client's
//! connection into a [`Plan`] (a reply at once, or a request to the node), and the node's
//! answer into a [`Reply`].
//!
//! Everything here is sans-IO and total: no sockets, no clock, no tasks, and no input (any
//! bytes, in any number of arguments) makes it panic. A connection task drives it:
//!
//! ```text
//! let mut connection = Connection::new(id, config);
//! for each parsed command `args`:
//!     match connection.plan(args) {
//!         Plan::Reply(reply) => send reply,
//!         Plan::Close(reply) => send reply, then close,
//!         Plan::Write { command, then } => done = propose command through Raft,
//!                                          send connection.finish(then, Done::Written(done)),
//!         Plan::Read { ops, level, then } => done = read ops at level,
//!                                            send connection.finish(then, Done::Read(done)),
//!         Plan::Status { then } => send connection.finish(then, Done::Status(status)),
//!     }
//! ```
//!
//! Plans may be carried out concurrently (pipelining), but their `finish` calls must come in
//! the order the plans were made, so that replies go out in order and a session's
//! acknowledgements advance in order.
//!
//! Where synod departs from Redis: keys cannot expire; a MULTI transaction becomes one
//! atomic `Txn` entry in the log, so it holds only commands that a `Txn` can express (GET,
//! SET without NX/XX, GETSET, DEL, MGET, MSET, EXISTS, STRLEN, TYPE, PING, ECHO) and writes
//! each key at most once; anything else is refused when queued and EXEC then aborts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use bytes::Bytes;
use synod_core::ClientId;
use synod_kv::{
    Command, CommandError, Compare, Operation, PutCondition, RangeEntry, Response, SessionRef,
    TxnOp, TxnResult, VersionedValue,
};

use crate::resp::{ProtocolVersion, Reply};
use crate::status::{NodeStatus, ReadLevel};

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

/// The version HELLO and INFO report.
const SYNOD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Redis version INFO reports: client libraries gate features on it, and synod speaks the
/// protocol of Redis 7.2 for the commands it has.
const REDIS_VERSION_COMPATIBLE: &str = "7.2.0";
/// SCAN's page size when the client names no COUNT, as in Redis.
const SCAN_COUNT_DEFAULT: u32 = 10;
/// Most writes of one session that may await their answer at once on a connection.
const SESSION_IN_FLIGHT_MAX: usize = 65_536;
/// Most writes of unknown outcome a session keeps unacknowledged, so that the client can
/// still retry them with SYNOD.SESSION RESUME; older ones are acknowledged (forgotten).
const SESSION_UNKNOWN_MAX: usize = 16;
/// Most bytes of a command name or argument quoted back in an error, as in Redis.
const QUOTE_SIZE_MAX: usize = 128;

const ERROR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const ERROR_SYNTAX: &str = "ERR syntax error";
const ERROR_NOAUTH: &str = "NOAUTH Authentication required.";
const ERROR_WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const ERROR_AUTH_NO_PASSWORD: &str = "ERR AUTH <password> called without any password \
     configured for the default user. Are you sure your configuration is correct?";
const ERROR_HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already \
     authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
     authenticate the client and select the RESP protocol version at the same time";
const ERROR_EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const ERROR_CLIENT_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";
const ERROR_NO_EXPIRY: &str = "ERR synod: keys cannot expire; EX, PX, EXAT, PXAT and KEEPTTL \
     are not supported";
const ERROR_INTERNAL: &str = "ERR synod: internal error: the node's answer does not fit the \
     command; please report this";
const ERROR_NO_SESSION: &str =
    "ERR synod: no session is open on this connection; open one with SYNOD.SESSION OPEN";

/// The command layer's limits and the password clients must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// `None`: no AUTH needed (Redis's `nopass` default user).
    pub password: Option<String>,
    /// Most keys in one command, and most operations in one MULTI transaction.
    pub keys_per_command_max: usize,
    /// Most SCAN cursors a connection remembers; the oldest is forgotten first.
    pub scan_cursors_max: usize,
    /// Most keys one KEYS or SCAN reads from the store.
    pub range_limit_max: u32,
}

impl Default for CommandConfig {
    fn default() -> CommandConfig {
        CommandConfig {
            password: None,
            keys_per_command_max: 4096,
            scan_cursors_max: 64,
            range_limit_max: 10_000,
        }
    }
}

impl CommandConfig {
    /// Refuses limits that would make commands unusable, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys_per_command_max == 0 {
            return Err("commands: keys_per_command_max must be at least 1".to_owned());
        }
        if self.scan_cursors_max == 0 {
            return Err("commands: scan_cursors_max must be at least 1".to_owned());
        }
        if self.range_limit_max == 0 {
            return Err("commands: range_limit_max must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// What [`Connection::plan`] asks the caller to do with one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Reply(Reply),
    /// Send this reply, then close the connection (QUIT).
    Close(Reply),
    /// A write through the Raft log.
    Write {
        command: Command,
        then: Then,
    },
    /// Reads, each `Operation::Get { revision: None, .. }` or `Operation::Range { .. }`, at
    /// `level`; answered in the same order.
    Read {
        ops: Vec<Operation>,
        level: ReadLevel,
        then: Then,
    },
    /// The node's status is needed (INFO, SYNOD.STATUS, DBSIZE, ROLE).
    Status {
        then: Then,
    },
}

/// What to do with the node's answer to a plan: pass it back to [`Connection::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Then {
    step: Step,
    /// The session slot a write used, settled when its answer comes back.
    session: Option<SessionRef>,
}

/// The node's answer to a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    Written(Result<Written, ServiceError>),
    Read(Result<Vec<ReadDone>, ServiceError>),
    Status(Box<NodeStatus>),
}

/// A write that was committed and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub response: Response,
    /// With `index`, the write's fencing token: the term and log index of its entry.
    pub term: u64,
    pub index: u64,
}

/// One read's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDone {
    pub response: Response,
    /// The index of the state the read saw.
    pub applied_index: u64,
    /// How far behind the leader that state may be (`None`: not known to lag, or unknown).
    pub staleness_ms: Option<u64>,
}

/// Why the node could not answer a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{detail}")]
    NoLeader { detail: String },
    /// Nothing was done; a retry is safe.
    #[error("{reason}")]
    Refused { reason: String },
    /// A write entered the log but its outcome is unknown.
    #[error("{reason}")]
    Unknown { reason: String },
    /// No answer in time; for a write the outcome is unknown.
    #[error("no answer within {waited_ms} ms")]
    Timeout { waited_ms: u64 },
    /// The node the write was out at stopped leading before it answered; the write's
    /// outcome is unknown.
    #[error("{detail}")]
    LeaderChanged { detail: String },
    /// Refused at admission because the node is overloaded; nothing was done. `detail` says
    /// how full the node is and ends with "retry later".
    #[error("{detail}")]
    Overloaded { detail: String },
    /// Refused at once because this node has lost contact with a quorum; nothing was done.
    #[error("{detail}")]
    NoQuorum { detail: String },
    /// A write refused because this node's disk is full or failing; nothing was done.
    #[error("{detail}")]
    ReadOnly { detail: String },
}

impl ServiceError {
    /// Whether a write that met this error may have taken effect.
    fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ServiceError::Unknown { .. }
                | ServiceError::Timeout { .. }
                | ServiceError::LeaderChanged { .. }
        )
    }
}

/// What a finished plan turns into. Private: callers only carry it from `plan` to `finish`.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    // Writes.
    Set { get: bool },
    SetNx,
    GetSet,
    Deleted,
    MsetOk,
    MsetNx,
    Integer,
    Length,
    Cas,
    SessionOpen,
    SessionClose,
    Exec { queued: Vec<Queued> },
    // Reads.
    Get,
    SynodGet,
    Mget,
    Exists,
    Strlen,
    Type,
    Keys { pattern: Pattern },
    Scan(ScanStep),
    Watch { keys: Vec<Bytes> },
    // Status.
    Info { sections: Vec<InfoSection> },
    SynodStatus,
    DbSize,
    Role,
}

#[derive(Debug, Clone, PartialEq)]
struct ScanStep {
    pattern: Option<Pattern>,
    /// TYPE named something other than "string": no key matches.
    type_excludes_all: bool,
}

/// A command queued in MULTI: how to build its reply from its share of the `TxnResult`s.
#[derive(Debug, Clone, PartialEq)]
enum Queued {
    /// No operation; the reply was known when queued (PING, ECHO, SELECT 0, UNWATCH).
    Fixed(Reply),
    /// Puts only (SET, MSET): `+OK`.
    Ok { puts: usize },
    /// One Get (GET).
    Value,
    /// A Get then a Put of the same key (GETSET, SET GET): the value before.
    Previous,
    /// Gets (MGET).
    Values { gets: usize },
    /// Deletes (DEL): the sum of their counts.
    Deleted { deletes: usize },
    /// Gets (EXISTS): how many found a value.
    Exists { gets: usize },
    /// One Get (STRLEN).
    Strlen,
    /// One Get (TYPE).
    Type,
}

impl Queued {
    /// How many `TxnOp`s, and so `TxnResult`s, the command takes.
    fn ops_count(&self) -> usize {
        match self {
            Queued::Fixed(_) => 0,
            Queued::Value | Queued::Strlen | Queued::Type => 1,
            Queued::Previous => 2,
            Queued::Ok { puts: count }
            | Queued::Values { gets: count }
            | Queued::Deleted { deletes: count }
            | Queued::Exists { gets: count } => *count,
        }
    }
}

/// The commands of an open MULTI.
#[derive(Debug, Clone, PartialEq, Default)]
struct Transaction {
    ops: Vec<TxnOp>,
    queued: Vec<Queued>,
    /// Keys written so far: the store refuses a transaction that writes a key twice.
    written: BTreeSet<Bytes>,
    /// A command was refused while queued: EXEC aborts.
    failed: bool,
}

/// This connection's client session: the slots its writes take in the store's dedup table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    client: ClientId,
    /// The sequence the next write takes (at least 1).
    sequence_next: u64,
    /// Sequences sent whose answer has not come back.
    in_flight: BTreeSet<u64>,
    /// Sequences whose outcome is unknown: left unacknowledged so a retry stays possible.
    unknown: BTreeSet<u64>,
}

impl Session {
    fn new(client: ClientId, sequence_next: u64) -> Session {
        Session {
            client,
            sequence_next,
            in_flight: BTreeSet::new(),
            unknown: BTreeSet::new(),
        }
    }

    /// The highest sequence that it and all below it have been finished (or were given up
    /// by RESUME): one below the lowest sequence still open.
    fn acknowledged(&self) -> u64 {
        let lowest_open = [self.in_flight.first(), self.unknown.first()]
            .into_iter()
            .flatten()
            .copied()
            .fold(self.sequence_next, u64::min);
        lowest_open.saturating_sub(1)
    }

    /// Takes the next sequence for a write.
    fn take(&mut self) -> Result<SessionRef, Reply> {
        if self.in_flight.len() >= SESSION_IN_FLIGHT_MAX {
            return Err(error(format!(
                "ERR synod: {SESSION_IN_FLIGHT_MAX} writes of this session await their \
                 answer; wait for some before sending more"
            )));
        }
        let sequence = self.sequence_next;
        let Some(sequence_next) = sequence.checked_add(1) else {
            return Err(error(
                "ERR synod: this session has used every sequence number; open a new one \
                 with SYNOD.SESSION OPEN",
            ));
        };
        let acknowledged = self.acknowledged();
        self.sequence_next = sequence_next;
        self.in_flight.insert(sequence);
        Ok(SessionRef {
            client: self.client,
            sequence,
            acknowledged,
        })
    }

    /// Records that a write's answer came back; `unknown`: its outcome is not known.
    fn settle(&mut self, sequence: u64, unknown: bool) {
        if !self.in_flight.remove(&sequence) || !unknown {
            return;
        }
        self.unknown.insert(sequence);
        while self.unknown.len() > SESSION_UNKNOWN_MAX {
            self.unknown.pop_first();
        }
    }
}

/// One client connection's state: protocol, authentication, read level, MULTI queue,
/// watched keys, session, SCAN cursors and what its last read and write returned.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    config: CommandConfig,
    protocol: ProtocolVersion,
    read_level: ReadLevel,
    authenticated: bool,
    name: Option<String>,
    library_name: Option<String>,
    library_version: Option<String>,
    transaction: Option<Transaction>,
    /// Watched key -> its mod revision when WATCH read it (0: absent).
    watched: BTreeMap<Bytes, u64>,
    /// WATCH reads planned and not yet finished.
    watches_pending: usize,
    session: Option<Session>,
    /// SCAN cursor number -> the key the next page starts at.
    scan_cursors: BTreeMap<u64, Bytes>,
    scan_cursor_next: u64,
    /// (term, index) of the last successful write.
    fence: Option<(u64, u64)>,
    /// (applied index, staleness ms) of the last read.
    last_read: Option<(u64, Option<u64>)>,
}

/// What one command is, for dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Append,
    Auth,
    Client,
    CommandInfo,
    DbSize,
    Decr,
    DecrBy,
    Del,
    Discard,
    Echo,
    Exec,
    Exists,
    Get,
    GetSet,
    Hello,
    Incr,
    IncrBy,
    Info,
    Keys,
    Mget,
    Mset,
    MsetNx,
    Multi,
    Ping,
    Quit,
    Role,
    Scan,
    Select,
    Set,
    SetNx,
    Strlen,
    Type,
    Unwatch,
    Watch,
    SynodCas,
    SynodFence,
    SynodGet,
    SynodReadLevel,
    SynodSession,
    SynodStaleness,
    SynodStatus,
}

/// A command's name, arity and key positions as COMMAND reports them (Redis's
/// conventions: a negative arity is a minimum; key positions count the name as 0).
struct Spec {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    first_key: i64,
    last_key: i64,
    step: i64,
    kind: Kind,
}

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write", "denyoom"];
const CONNECTION: &[&str] = &["fast", "loading", "stale"];
const NO_AUTH: &[&str] = &["fast", "loading", "stale", "no_auth"];
const ADMIN: &[&str] = &["loading", "stale"];

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    kind: Kind,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        kind,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command synod answers, by lowercase name.
const COMMANDS: &[Spec] = &[
    spec("append", 3, WRITE, ONE_KEY, Kind::Append),
    spec("auth", -2, NO_AUTH, NO_KEYS, Kind::Auth),
    spec("client", -2, CONNECTION, NO_KEYS, Kind::Client),
    spec("command", -1, ADMIN, NO_KEYS, Kind::CommandInfo),
    spec("dbsize", 1, READ, NO_KEYS, Kind::DbSize),
    spec("decr", 2, WRITE, ONE_KEY, Kind::Decr),
    spec("decrby", 3, WRITE, ONE_KEY, Kind::DecrBy),
    spec("del", -2, WRITE, ALL_KEYS, Kind::Del),
    spec("discard", 1, CONNECTION, NO_KEYS, Kind::Discard),
    spec("echo", 2, CONNECTION, NO_KEYS, Kind::Echo),
    spec("exec", 1, CONNECTION, NO_KEYS, Kind::Exec),
    spec("exists", -2, READ, ALL_KEYS, Kind::Exists),
    spec("get", 2, READ, ONE_KEY, Kind::Get),
    spec("getset", 3, WRITE, ONE_KEY, Kind::GetSet),
    spec("hello", -1, NO_AUTH, NO_KEYS, Kind::Hello),
    spec("incr", 2, WRITE, ONE_KEY, Kind::Incr),
    spec("incrby", 3, WRITE, ONE_KEY, Kind::IncrBy),
    spec("info", -1, ADMIN, NO_KEYS, Kind::Info),
    spec("keys", 2, &["readonly"], NO_KEYS, Kind::Keys),
    spec("mget", -2, READ, ALL_KEYS, Kind::Mget),
    spec("mset", -3, WRITE, (1, -1, 2), Kind::Mset),
    spec("msetnx", -3, WRITE, (1, -1, 2), Kind::MsetNx),
    spec("multi", 1, CONNECTION, NO_KEYS, Kind::Multi),
    spec("ping", -1, CONNECTION, NO_KEYS, Kind::Ping),
    spec("quit", -1, NO_AUTH, NO_KEYS, Kind::Quit),
    spec("role", 1, ADMIN, NO_KEYS, Kind::Role),
    spec("scan", -2, &["readonly"], NO_KEYS, Kind::Scan),
    spec("select", 2, CONNECTION, NO_KEYS, Kind::Select),
    spec("set", -3, WRITE, ONE_KEY, Kind::Set),
    spec("setnx", 3, WRITE, ONE_KEY, Kind::SetNx),
    spec("strlen", 2, READ, ONE_KEY, Kind::Strlen),
    spec("type", 2, READ, ONE_KEY, Kind::Type),
    spec("unwatch", 1, CONNECTION, NO_KEYS, Kind::Unwatch),
    spec("watch", -2, CONNECTION, ALL_KEYS, Kind::Watch),
    spec("synod.cas", -4, WRITE, ONE_KEY, Kind::SynodCas),
    spec("synod.fence", 1, CONNECTION, NO_KEYS, Kind::SynodFence),
    spec("synod.get", 2, READ, ONE_KEY, Kind::SynodGet),
    spec(
        "synod.read-level",
        -1,
        CONNECTION,
        NO_KEYS,
        Kind::SynodReadLevel,
    ),
    spec("synod.session", -2, CONNECTION, NO_KEYS, Kind::SynodSession),
    spec(
        "synod.staleness",
        1,
        CONNECTION,
        NO_KEYS,
        Kind::SynodStaleness,
    ),
    spec("synod.status", 1, ADMIN, NO_KEYS, Kind::SynodStatus),
];

fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

fn arity_holds(arity: i64, count: usize) -> bool {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    if arity >= 0 {
        count == arity
    } else {
        count >= -arity
    }
}

impl Connection {
    /// A new connection. `config` must pass [`CommandConfig::validate`].
    pub fn new(id: u64, config: CommandConfig) -> Connection {
        if let Err(problem) = config.validate() {
            panic!("{problem}");
        }
        let authenticated = config.password.is_none();
        Connection {
            id,
            config,
            protocol: ProtocolVersion::Resp2,
            read_level: ReadLevel::Linearizable,
            authenticated,
            name: None,
            library_name: None,
            library_version: None,
            transaction: None,
            watched: BTreeMap::new(),
            watches_pending: 0,
            session: None,
            scan_cursors: BTreeMap::new(),
            scan_cursor_next: 1,
            fence: None,
            last_read: None,
        }
    }

    /// The protocol the client speaks: RESP2 until `HELLO 3`.
    pub fn protocol(&self) -> ProtocolVersion {
        self.protocol
    }

    /// The name the client gave with CLIENT SETNAME or HELLO SETNAME.
    pub fn client_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How this connection's reads are made consistent: linearizable until
    /// `SYNOD.READ-LEVEL` changes it.
    pub fn read_level(&self) -> ReadLevel {
        self.read_level
    }

    /// Plans one command (`args[0]` is its name).
    pub fn plan(&mut self, args: Vec<Bytes>) -> Plan {
        let plan = self.plan_command(&args);
        self.invariants();
        plan
    }

    /// Turns the node's answer to a plan into the reply for the client.
    pub fn finish(&mut self, then: Then, done: Done) -> Reply {
        let reply = match done {
            Done::Written(result) => self.finish_write(then, result),
            Done::Read(result) => self.finish_read(then, result),
            Done::Status(status) => self.finish_status(&then.step, &status),
        };
        self.invariants();
        reply
    }

    fn invariants(&self) {
        assert!(self.scan_cursors.len() <= self.config.scan_cursors_max);
        assert!(self.watched.len() <= self.config.keys_per_command_max);
        if let Some(transaction) = &self.transaction {
            assert!(transaction.ops.len() <= self.config.keys_per_command_max);
            let ops_count: usize = transaction.queued.iter().map(Queued::ops_count).sum();
            assert_eq!(ops_count, transaction.ops.len());
        }
        if let Some(session) = &self.session {
            assert!(session.sequence_next >= 1);
            assert!(session.acknowledged() < session.sequence_next);
            assert!(session.unknown.len() <= SESSION_UNKNOWN_MAX);
        }
    }

    fn plan_command(&mut self, args: &[Bytes]) -> Plan {
        let Some(name) = args.first() else {
            return Plan::Reply(error("ERR synod: empty command"));
        };
        let Some(spec) = lookup(name) else {
            self.flag_transaction();
            return Plan::Reply(error(unknown_command_text(args)));
        };
        if !arity_holds(spec.arity, args.len()) {
            self.flag_transaction();
            return Plan::Reply(arity_error(spec.name));
        }
        if !self.authenticated && !spec.flags.contains(&"no_auth") {
            self.flag_transaction();
            return Plan::Reply(error(ERROR_NOAUTH));
        }
        let runs_now = matches!(
            spec.kind,
            Kind::Exec | Kind::Discard | Kind::Multi | Kind::Watch | Kind::Quit
        );
        if self.transaction.is_some() && !runs_now {
            return Plan::Reply(self.queue(spec, args));
        }
        self.dispatch(spec.kind, args)
    }

    fn dispatch(&mut self, kind: Kind, args: &[Bytes]) -> Plan {
        match kind {
            Kind::Append => self.plan_append(args),
            Kind::Auth => Plan::Reply(self.auth(args)),
            Kind::Client => Plan::Reply(self.client(args)),
            Kind::CommandInfo => Plan::Reply(command_info(args)),
            Kind::DbSize => status_plan(Step::DbSize),
            Kind::Decr => self.plan_incr(args, Some(-1)),
            Kind::DecrBy => self.plan_decrby(args),
            Kind::Del => self.plan_del(args),
            Kind::Discard => Plan::Reply(self.discard()),
            Kind::Echo => Plan::Reply(echo(args)),
            Kind::Exec => self.plan_exec(),
            Kind::Exists => self.plan_exists(args),
            Kind::Get => self.plan_get(args, Step::Get),
            Kind::GetSet => self.plan_getset(args),
            Kind::Hello => Plan::Reply(self.hello(args)),
            Kind::Incr => self.plan_incr(args, Some(1)),
            Kind::IncrBy => self.plan_incr(args, None),
            Kind::Info => status_plan(Step::Info {
                sections: info_sections(args),
            }),
            Kind::Keys => self.plan_keys(args),
            Kind::Mget => self.plan_mget(args),
            Kind::Mset => self.plan_mset(args, false),
            Kind::MsetNx => self.plan_mset(args, true),
            Kind::Multi => Plan::Reply(self.multi()),
            Kind::Ping => Plan::Reply(ping(args)),
            Kind::Quit => Plan::Close(ok()),
            Kind::Role => status_plan(Step::Role),
            Kind::Scan => self.plan_scan(args),
            Kind::Select => Plan::Reply(select(args)),
            Kind::Set => self.plan_set(args),
            Kind::SetNx => self.plan_setnx(args),
            Kind::Strlen => self.plan_get(args, Step::Strlen),
            Kind::Type => self.plan_get(args, Step::Type),
            Kind::Unwatch => {
                self.watched.clear();
                Plan::Reply(ok())
            }
            Kind::Watch => self.plan_watch(args),
            Kind::SynodCas => self.plan_cas(args),
            Kind::SynodFence => Plan::Reply(self.fence_reply()),
            Kind::SynodGet => self.plan_get(args, Step::SynodGet),
            Kind::SynodReadLevel => Plan::Reply(self.set_read_level(args)),
            Kind::SynodSession => self.plan_session(args),
            Kind::SynodStaleness => Plan::Reply(self.staleness_reply()),
            Kind::SynodStatus => status_plan(Step::SynodStatus),
        }
    }

    // ---- Connection commands ----

    fn auth(&mut self, args: &[Bytes]) -> Reply {
        let (user, password) = match args {
            [_, password] => (None, password),
            [_, user, password] => (Some(user), password),
            _ => return error(ERROR_SYNTAX),
        };
        match (&self.config.password, user) {
            (None, None) => error(ERROR_AUTH_NO_PASSWORD),
            _ if self.credentials_hold(user.map(|user| &user[..]), password) => {
                self.authenticated = true;
                ok()
            }
            _ => error(ERROR_WRONGPASS),
        }
    }

    /// Whether `user` (default: "default") and `password` are the configured credentials.
    /// With no password configured, the default user needs none, as in Redis.
    fn credentials_hold(&self, user: Option<&[u8]>, password: &[u8]) -> bool {
        if user.is_some_and(|user| user != b"default") {
            return false;
        }
        match &self.config.password {
            None => true,
            Some(expected) => constant_time_equal(expected.as_bytes(), password),
        }
    }

    fn hello(&mut self, args: &[Bytes]) -> Reply {
        let mut protocol = self.protocol;
        if let Some(version) = args.get(1) {
            protocol = match synod_kv::parse_integer(version) {
                None => return error("ERR Protocol version is not an integer or out of range"),
                Some(2) => ProtocolVersion::Resp2,
                Some(3) => ProtocolVersion::Resp3,
                Some(_) => return error("NOPROTO unsupported protocol version"),
            };
        }
        let mut credentials = None;
        let mut name = None;
        let mut index = 2;
        while let Some(option) = args.get(index) {
            match (
                &option.to_ascii_lowercase()[..],
                args.get(index + 1),
                args.get(index + 2),
            ) {
                (b"auth", Some(user), Some(password)) => {
                    credentials = Some((user, password));
                    index += 3;
                }
                (b"setname", Some(value), _) => {
                    name = Some(value);
                    index += 2;
                }
                _ => {
                    let option = quote(option);
                    return error(format!("ERR Syntax error in HELLO option '{option}'"));
                }
            }
        }
        if let Some((user, password)) = credentials {
            if !self.credentials_hold(Some(user), password) {
                return error(ERROR_WRONGPASS);
            }
            self.authenticated = true;
        }
        if !self.authenticated {
            return error(ERROR_HELLO_NOAUTH);
        }
        if let Some(name) = name {
            let Some(name) = client_name(name) else {
                return error(ERROR_CLIENT_NAME);
            };
            self.name = name;
        }
        self.protocol = protocol;
        self.hello_reply()
    }

    fn hello_reply(&self) -> Reply {
        let proto = match self.protocol {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        };
        Reply::Map(vec![
            (text("server"), text("synod")),
            (text("version"), text(SYNOD_VERSION)),
            (text("proto"), Reply::Integer(proto)),
            (text("id"), integer(self.id)),
            (text("mode"), text("standalone")),
            (text("role"), text("master")),
            (text("modules"), Reply::Array(Some(Vec::new()))),
        ])
    }

    fn client(&mut self, args: &[Bytes]) -> Reply {
        let subcommand = args.get(1).map(|name| name.to_ascii_lowercase());
        match (subcommand.as_deref(), &args[2..]) {
            (Some(b"id"), []) => integer(self.id),
            (Some(b"getname"), []) => match &self.name {
                Some(name) => text(name),
                None => Reply::Bulk(None),
            },
            (Some(b"setname"), [name]) => match client_name(name) {
                Some(name) => {
                    self.name = name;
                    ok()
                }
                None => error(ERROR_CLIENT_NAME),
            },
            (Some(b"setinfo"), [attribute, value]) => self.client_setinfo(attribute, value),
            (Some(b"info"), []) => self.client_info(),
            (Some(name @ (b"id" | b"getname" | b"setname" | b"setinfo" | b"info")), _) => {
                let name = String::from_utf8_lossy(name);
                arity_error(&format!("client|{name}"))
            }
            _ => {
                let name = quote(args.get(1).map_or(&b""[..], |name| &name[..]));
                error(format!("ERR unknown subcommand '{name}'. Try CLIENT HELP."))
            }
        }
    }

    fn client_setinfo(&mut self, attribute: &[u8], value: &[u8]) -> Reply {
        let Some(value) = client_name(value) else {
            return error(
                "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
            );
        };
        match &attribute.to_ascii_lowercase()[..] {
            b"lib-name" => self.library_name = value,
            b"lib-ver" => self.library_version = value,
            _ => {
                let attribute = quote(attribute);
                return error(format!("ERR Unrecognized option '{attribute}'"));
            }
        }
        ok()
    }

    fn client_info(&self) -> Reply {
        let multi = self
            .transaction
            .as_ref()
            .map_or(-1, |transaction| length(transaction.queued.len()));
        let resp = match self.protocol {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        };
        let line = format!(
            "id={} name={} db=0 multi={multi} watch={} resp={resp} lib-name={} lib-ver={} \
             read-level={}\n",
            self.id,
            self.name.as_deref().unwrap_or(""),
            self.watched.len(),
            self.library_name.as_deref().unwrap_or(""),
            self.library_version.as_deref().unwrap_or(""),
            self.read_level.name(),
        );
        self.text_reply(line)
    }

    /// A block of text: a bulk string in RESP2, a verbatim "txt" string in RESP3.
    fn text_reply(&self, body: String) -> Reply {
        match self.protocol {
            ProtocolVersion::Resp2 => Reply::Bulk(Some(Bytes::from(body))),
            ProtocolVersion::Resp3 => Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from(body),
            },
        }
    }

    fn set_read_level(&mut self, args: &[Bytes]) -> Reply {
        match args {
            [_] => text(self.read_level.name()),
            [_, name] => match ReadLevel::parse(name) {
                Some(level) => {
                    self.read_level = level;
                    ok()
                }
                None => error(format!(
                    "ERR synod: unknown read level '{}'; use linearizable, lease, follower or \
                     stale",
                    quote(name)
                )),
            },
            _ => arity_error("synod.read-level"),
        }
    }

    fn fence_reply(&self) -> Reply {
        match self.fence {
            Some((term, index)) => Reply::Array(Some(vec![integer(term), integer(index)])),
            None => Reply::Null,
        }
    }

    fn staleness_reply(&self) -> Reply {
        match self.last_read {
            Some((applied, staleness)) => {
                Reply::Array(Some(vec![integer(applied), optional_integer(staleness)]))
            }
            None => Reply::Null,
        }
    }

    // ---- MULTI, EXEC, DISCARD, WATCH ----

    /// Marks an open transaction failed: a command was refused while it was open.
    fn flag_transaction(&mut self) {
        if let Some(transaction) = &mut self.transaction {
            transaction.failed = true;
        }
    }

    fn multi(&mut self) -> Reply {
        if self.transaction.is_some() {
            return error("ERR MULTI calls can not be nested");
        }
        self.transaction = Some(Transaction::default());
        ok()
    }

    fn discard(&mut self) -> Reply {
        if self.transaction.take().is_none() {
            return error("ERR DISCARD without MULTI");
        }
        self.watched.clear();
        ok()
    }

    /// Queues a command inside MULTI: `+QUEUED`, or the error that refuses it.
    fn queue(&mut self, spec: &Spec, args: &[Bytes]) -> Reply {
        let keys_max = self.config.keys_per_command_max;
        let Some(transaction) = self.transaction.as_mut() else {
            return error(ERROR_INTERNAL);
        };
        let queued = match queued_ops(spec, args) {
            Ok(queued) => queued,
            Err(reply) => {
                transaction.failed = true;
                return reply;
            }
        };
        let (queued, ops) = queued;
        if transaction.ops.len() + ops.len() > keys_max {
            transaction.failed = true;
            return error(format!(
                "ERR synod: this transaction would hold more than keys_per_command_max \
                 ({keys_max}) operations; split it"
            ));
        }
        let mut written = transaction.written.clone();
        for op in &ops {
            let key = match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
                TxnOp::Get { .. } => continue,
            };
            if !written.insert(key.clone()) {
                transaction.failed = true;
                return error(format!(
                    "ERR synod: this transaction already writes key '{}'; a synod \
                     transaction writes each key at most once",
                    quote(key)
                ));
            }
        }
        transaction.written = written;
        transaction.ops.extend(ops);
        transaction.queued.push(queued);
        Reply::Simple("QUEUED".to_owned())
    }

    fn plan_exec(&mut self) -> Plan {
        let Some(transaction) = self.transaction.take() else {
            return Plan::Reply(error("ERR EXEC without MULTI"));
        };
        let watched = std::mem::take(&mut self.watched);
        if transaction.failed {
            return Plan::Reply(error(ERROR_EXECABORT));
        }
        if self.watches_pending > 0 {
            return Plan::Reply(error(
                "ERR synod: EXEC arrived before the reply to WATCH; wait for WATCH's reply \
                 before sending EXEC (the transaction is discarded)",
            ));
        }
        if transaction.ops.is_empty() && watched.is_empty() {
            let replies = transaction.queued.iter().map(|queued| match queued {
                Queued::Fixed(reply) => reply.clone(),
                _ => error(ERROR_INTERNAL),
            });
            return Plan::Reply(Reply::Array(Some(replies.collect())));
        }
        let compares = watched
            .into_iter()
            .map(|(key, revision)| (key, Compare::ModRevisionEquals(revision)))
            .collect();
        let op = Operation::Txn {
            compares,
            success: transaction.ops,
            failure: Vec::new(),
        };
        self.write(
            op,
            Step::Exec {
                queued: transaction.queued,
            },
        )
    }

    fn plan_watch(&mut self, args: &[Bytes]) -> Plan {
        if self.transaction.is_some() {
            return Plan::Reply(error("ERR WATCH inside MULTI is not allowed"));
        }
        let keys = &args[1..];
        let new_count = keys
            .iter()
            .filter(|key| !self.watched.contains_key(&key[..]))
            .collect::<BTreeSet<_>>()
            .len();
        if self.watched.len() + new_count > self.config.keys_per_command_max {
            return Plan::Reply(self.too_many_keys(self.watched.len() + new_count));
        }
        self.watches_pending += 1;
        let ops = keys.iter().map(get_op).collect();
        Plan::Read {
            ops,
            level: ReadLevel::Linearizable,
            then: Then {
                step: Step::Watch {
                    keys: keys.to_vec(),
                },
                session: None,
            },
        }
    }

    // ---- Reads ----

    fn read(&self, ops: Vec<Operation>, step: Step) -> Plan {
        Plan::Read {
            ops,
            level: self.read_level,
            then: Then {
                step,
                session: None,
            },
        }
    }

    fn plan_get(&self, args: &[Bytes], step: Step) -> Plan {
        self.read(vec![get_op(&args[1])], step)
    }

    fn plan_mget(&self, args: &[Bytes]) -> Plan {
        let keys = &args[1..];
        if keys.len() > self.config.keys_per_command_max {
            return Plan::Reply(self.too_many_keys(keys.len()));
        }
        self.read(keys.iter().map(get_op).collect(), Step::Mget)
    }

    fn plan_exists(&self, args: &[Bytes]) -> Plan {
        let keys = &args[1..];
        if keys.len() > self.config.keys_per_command_max {
            return Plan::Reply(self.too_many_keys(keys.len()));
        }
        self.read(keys.iter().map(get_op).collect(), Step::Exists)
    }

    fn plan_keys(&self, args: &[Bytes]) -> Plan {
        let pattern = Pattern::parse(&args[1]);
        let prefix = pattern.literal_prefix();
        let op = Operation::Range {
            end: prefix_end(&prefix),
            start: Bytes::from(prefix),
            limit: self.config.range_limit_max,
            revision: None,
        };
        self.read(vec![op], Step::Keys { pattern })
    }

    fn plan_scan(&self, args: &[Bytes]) -> Plan {
        let Some(cursor) = parse_unsigned(&args[1]) else {
            return Plan::Reply(error("ERR invalid cursor"));
        };
        let mut count = SCAN_COUNT_DEFAULT;
        let mut step = ScanStep {
            pattern: None,
            type_excludes_all: false,
        };
        let mut options = args[2..].iter();
        while let Some(option) = options.next() {
            let Some(value) = options.next() else {
                return Plan::Reply(error(ERROR_SYNTAX));
            };
            match &option.to_ascii_lowercase()[..] {
                b"match" => step.pattern = Some(Pattern::parse(value)),
                b"count" => match synod_kv::parse_integer(value) {
                    None => return Plan::Reply(error(ERROR_NOT_INTEGER)),
                    Some(value) if value < 1 => return Plan::Reply(error(ERROR_SYNTAX)),
                    Some(value) => count = u32::try_from(value).unwrap_or(u32::MAX),
                },
                b"type" => step.type_excludes_all = !value.eq_ignore_ascii_case(b"string"),
                _ => return Plan::Reply(error(ERROR_SYNTAX)),
            }
        }
        let prefix = step
            .pattern
            .as_ref()
            .map_or_else(Vec::new, Pattern::literal_prefix);
        // Cursor 0, or one this connection does not know, starts over, as in Redis.
        let resume = self.scan_cursors.get(&cursor).cloned().unwrap_or_default();
        let start = if resume[..] > prefix[..] {
            resume
        } else {
            Bytes::from(prefix.clone())
        };
        let op = Operation::Range {
            start,
            end: prefix_end(&prefix),
            limit: count.min(self.config.range_limit_max),
            revision: None,
        };
        self.read(vec![op], Step::Scan(step))
    }

    // ---- Writes ----

    /// Plans a write, inside the connection's session when one is open.
    fn write(&mut self, op: Operation, step: Step) -> Plan {
        let session = match self.session.as_mut().map(Session::take).transpose() {
            Ok(session) => session,
            Err(reply) => return Plan::Reply(reply),
        };
        Plan::Write {
            command: Command { session, op },
            then: Then { step, session },
        }
    }

    fn plan_set(&mut self, args: &[Bytes]) -> Plan {
        let (condition, get) = match set_options(&args[3..]) {
            Ok(options) => options,
            Err(reply) => return Plan::Reply(reply),
        };
        let op = put_op(&args[1], &args[2], condition, get);
        self.write(op, Step::Set { get })
    }

    fn plan_setnx(&mut self, args: &[Bytes]) -> Plan {
        let op = put_op(&args[1], &args[2], PutCondition::IfAbsent, false);
        self.write(op, Step::SetNx)
    }

    fn plan_getset(&mut self, args: &[Bytes]) -> Plan {
        let op = put_op(&args[1], &args[2], PutCondition::Always, true);
        self.write(op, Step::GetSet)
    }

    fn plan_del(&mut self, args: &[Bytes]) -> Plan {
        let keys = &args[1..];
        if keys.len() > self.config.keys_per_command_max {
            return Plan::Reply(self.too_many_keys(keys.len()));
        }
        let op = Operation::Delete {
            keys: keys.to_vec(),
        };
        self.write(op, Step::Deleted)
    }

    fn plan_mset(&mut self, args: &[Bytes], only_if_all_absent: bool) -> Plan {
        let name = if only_if_all_absent { "msetnx" } else { "mset" };
        let Some(pairs) = key_value_pairs(&args[1..]) else {
            return Plan::Reply(arity_error(name));
        };
        if pairs.len() > self.config.keys_per_command_max {
            return Plan::Reply(self.too_many_keys(pairs.len()));
        }
        let puts: Vec<TxnOp> = pairs
            .into_iter()
            .map(|(key, value)| TxnOp::Put { key, value })
            .collect();
        let (compares, step) = if only_if_all_absent {
            let compares = puts
                .iter()
                .filter_map(|put| match put {
                    TxnOp::Put { key, .. } => Some((key.clone(), Compare::VersionEquals(0))),
                    _ => None,
                })
                .collect();
            (compares, Step::MsetNx)
        } else {
            (Vec::new(), Step::MsetOk)
        };
        let op = Operation::Txn {
            compares,
            success: puts,
            failure: Vec::new(),
        };
        self.write(op, step)
    }

    fn plan_incr(&mut self, args: &[Bytes], delta: Option<i64>) -> Plan {
        let delta = match delta {
            Some(delta) => delta,
            None => match synod_kv::parse_integer(&args[2]) {
                Some(delta) => delta,
                None => return Plan::Reply(error(ERROR_NOT_INTEGER)),
            },
        };
        let key = args[1].clone();
        self.write(Operation::Incr { key, delta }, Step::Integer)
    }

    fn plan_decrby(&mut self, args: &[Bytes]) -> Plan {
        let Some(decrement) = synod_kv::parse_integer(&args[2]) else {
            return Plan::Reply(error(ERROR_NOT_INTEGER));
        };
        let Some(delta) = decrement.checked_neg() else {
            return Plan::Reply(error("ERR decrement would overflow"));
        };
        let key = args[1].clone();
        self.write(Operation::Incr { key, delta }, Step::Integer)
    }

    fn plan_append(&mut self, args: &[Bytes]) -> Plan {
        let op = Operation::Append {
            key: args[1].clone(),
            suffix: args[2].clone(),
        };
        self.write(op, Step::Length)
    }

    fn plan_cas(&mut self, args: &[Bytes]) -> Plan {
        let compare = match args {
            [_, _, expected, _] if expected.eq_ignore_ascii_case(b"absent") => {
                Compare::ValueEquals(None)
            }
            [_, _, expected, _] => Compare::ValueEquals(Some(expected.clone())),
            [_, _, form, expected, _] if form.eq_ignore_ascii_case(b"value") => {
                Compare::ValueEquals(Some(expected.clone()))
            }
            [_, _, form, version, _] if form.eq_ignore_ascii_case(b"version") => {
                match parse_unsigned(version) {
                    Some(version) => Compare::VersionEquals(version),
                    None => return Plan::Reply(error(ERROR_NOT_INTEGER)),
                }
            }
            _ => return Plan::Reply(error(ERROR_SYNTAX)),
        };
        let (Some(key), Some(value)) = (args.get(1), args.last()) else {
            return Plan::Reply(error(ERROR_SYNTAX));
        };
        let op = Operation::Cas {
            key: key.clone(),
            compare,
            value: value.clone(),
        };
        self.write(op, Step::Cas)
    }

    fn plan_session(&mut self, args: &[Bytes]) -> Plan {
        let subcommand = args[1].to_ascii_lowercase();
        match (&subcommand[..], &args[2..]) {
            (b"open", []) => Plan::Write {
                command: Command {
                    session: None,
                    op: Operation::RegisterSession,
                },
                then: Then {
                    step: Step::SessionOpen,
                    session: None,
                },
            },
            (b"resume", [client, sequence]) => Plan::Reply(self.resume(client, sequence)),
            (b"info", []) => Plan::Reply(match &self.session {
                Some(session) => Reply::Array(Some(vec![
                    integer(session.client.get()),
                    integer(session.sequence_next),
                    integer(session.acknowledged()),
                ])),
                None => Reply::Null,
            }),
            (b"close", []) => match self.session {
                Some(_) => self.write(Operation::CloseSession, Step::SessionClose),
                None => Plan::Reply(error(ERROR_NO_SESSION)),
            },
            (b"open" | b"resume" | b"info" | b"close", _) => {
                let name = String::from_utf8_lossy(&subcommand).into_owned();
                Plan::Reply(arity_error(&format!("synod.session|{name}")))
            }
            _ => Plan::Reply(error(format!(
                "ERR unknown subcommand '{}'. Try OPEN, RESUME, INFO or CLOSE.",
                quote(&args[1])
            ))),
        }
    }

    fn resume(&mut self, client: &[u8], sequence: &[u8]) -> Reply {
        let (Some(client), Some(sequence)) = (parse_unsigned(client), parse_unsigned(sequence))
        else {
            return error(ERROR_NOT_INTEGER);
        };
        if client == 0 || sequence == 0 {
            return error("ERR synod: client ids and sequences start at 1");
        }
        self.session = Some(Session::new(ClientId(client), sequence));
        ok()
    }

    fn too_many_keys(&self, count: usize) -> Reply {
        error(format!(
            "ERR synod: {count} keys exceed keys_per_command_max ({}); split the command",
            self.config.keys_per_command_max
        ))
    }

    // ---- Finishing ----

    fn finish_write(&mut self, then: Then, result: Result<Written, ServiceError>) -> Reply {
        let Then { step, session } = then;
        let written = match result {
            Ok(written) => written,
            Err(service_error) => {
                if let Some(session_ref) = session {
                    self.settle(session_ref, service_error.outcome_unknown());
                }
                return write_error_reply(&service_error, session);
            }
        };
        if let Some(session_ref) = session {
            self.settle(session_ref, false);
        }
        if let Response::Error(command_error) = &written.response {
            if matches!(command_error, CommandError::SessionExpired { .. }) {
                self.session = None;
            }
            return command_error_reply(command_error);
        }
        self.fence = Some((written.term, written.index));
        self.reply_to_write(step, written.response)
    }

    fn settle(&mut self, session_ref: SessionRef, unknown: bool) {
        if let Some(session) = &mut self.session
            && session.client == session_ref.client
        {
            session.settle(session_ref.sequence, unknown);
        }
    }

    fn reply_to_write(&mut self, step: Step, response: Response) -> Reply {
        match (step, response) {
            (Step::Set { get: true }, Response::Put { previous, .. })
            | (Step::GetSet, Response::Put { previous, .. }) => value_reply(previous.as_ref()),
            (Step::Set { get: false }, Response::Put { written, .. }) => {
                if written {
                    ok()
                } else {
                    Reply::Bulk(None)
                }
            }
            (Step::SetNx, Response::Put { written, .. }) => Reply::Integer(written.into()),
            (Step::Deleted, Response::Deleted { count, .. }) => integer(count),
            (Step::MsetOk, Response::Txn { .. }) => ok(),
            (Step::MsetNx, Response::Txn { succeeded, .. }) => Reply::Integer(succeeded.into()),
            (Step::Integer, Response::Integer { value, .. }) => Reply::Integer(value),
            (Step::Length, Response::Length { length, .. }) => integer(length),
            (
                Step::Cas,
                Response::Cas {
                    succeeded, current, ..
                },
            ) => Reply::Array(Some(vec![
                Reply::Integer(succeeded.into()),
                value_reply(current.as_ref()),
            ])),
            (Step::SessionOpen, Response::Registered { client }) => {
                self.session = Some(Session::new(client, 1));
                integer(client.get())
            }
            (Step::SessionClose, Response::Done { .. }) => {
                self.session = None;
                ok()
            }
            (
                Step::Exec { queued },
                Response::Txn {
                    succeeded, results, ..
                },
            ) => {
                if succeeded {
                    exec_replies(queued, results)
                } else {
                    Reply::Array(None)
                }
            }
            _ => error(ERROR_INTERNAL),
        }
    }

    fn finish_read(&mut self, then: Then, result: Result<Vec<ReadDone>, ServiceError>) -> Reply {
        if matches!(then.step, Step::Watch { .. }) {
            self.watches_pending = self.watches_pending.saturating_sub(1);
        }
        let dones = match result {
            Ok(dones) => dones,
            Err(service_error) => return read_error_reply(&service_error),
        };
        if let Some(last) = dones.last() {
            self.last_read = Some((last.applied_index, last.staleness_ms));
        }
        match then.step {
            Step::Get => reply_or_error(read_value(dones.first()).map(|v| value_reply(v))),
            Step::SynodGet => synod_get_reply(dones.first()),
            Step::Strlen => reply_or_error(
                read_value(dones.first())
                    .map(|value| integer(value.map_or(0, |value| value.value.len() as u64))),
            ),
            Step::Type => reply_or_error(
                read_value(dones.first())
                    .map(|value| text_simple(if value.is_some() { "string" } else { "none" })),
            ),
            Step::Mget => mget_reply(&dones),
            Step::Exists => exists_reply(&dones),
            Step::Keys { pattern } => self.keys_reply(&pattern, dones.first()),
            Step::Scan(step) => self.scan_reply(&step, dones.first()),
            Step::Watch { keys } => self.watch_reply(&keys, &dones),
            _ => error(ERROR_INTERNAL),
        }
    }

    fn keys_reply(&self, pattern: &Pattern, done: Option<&ReadDone>) -> Reply {
        let (entries, more) = match read_range(done) {
            Ok(page) => page,
            Err(reply) => return reply,
        };
        if more {
            return error(format!(
                "ERR synod: KEYS reads at most range_limit_max ({}) keys and more lie in \
                 the range its pattern covers; use SCAN",
                self.config.range_limit_max
            ));
        }
        let keys = entries
            .iter()
            .filter(|entry| pattern.matches(&entry.key))
            .map(|entry| Reply::Bulk(Some(entry.key.clone())))
            .collect();
        Reply::Array(Some(keys))
    }

    fn scan_reply(&mut self, step: &ScanStep, done: Option<&ReadDone>) -> Reply {
        let (entries, more) = match read_range(done) {
            Ok(page) => page,
            Err(reply) => return reply,
        };
        let cursor = match entries.last() {
            Some(last) if more => {
                let mut next = Vec::with_capacity(last.key.len() + 1);
                next.extend_from_slice(&last.key);
                next.push(0);
                self.remember_cursor(Bytes::from(next))
            }
            _ => 0,
        };
        // TYPE naming another type than "string" matches no key, but the cursor moves on.
        let entries = if step.type_excludes_all {
            &[][..]
        } else {
            entries
        };
        let keys = entries
            .iter()
            .filter(|entry| step.pattern.as_ref().is_none_or(|p| p.matches(&entry.key)))
            .map(|entry| Reply::Bulk(Some(entry.key.clone())))
            .collect();
        Reply::Array(Some(vec![
            Reply::Bulk(Some(Bytes::from(cursor.to_string()))),
            Reply::Array(Some(keys)),
        ]))
    }

    /// Stores where the next SCAN page starts and returns its cursor number, forgetting the
    /// oldest cursor when the table is full.
    fn remember_cursor(&mut self, start: Bytes) -> u64 {
        while self.scan_cursors.len() >= self.config.scan_cursors_max {
            self.scan_cursors.pop_first();
        }
        let cursor = self.scan_cursor_next;
        self.scan_cursor_next = self.scan_cursor_next.checked_add(1).unwrap_or(1);
        self.scan_cursors.insert(cursor, start);
        cursor
    }

    fn watch_reply(&mut self, keys: &[Bytes], dones: &[ReadDone]) -> Reply {
        if dones.len() != keys.len() {
            return error(ERROR_INTERNAL);
        }
        let mut revisions = Vec::with_capacity(keys.len());
        for (key, done) in keys.iter().zip(dones) {
            match read_value(Some(done)) {
                Ok(value) => revisions.push((key, value.map_or(0, |value| value.mod_revision))),
                Err(reply) => return reply,
            }
        }
        for (key, revision) in revisions {
            if self.watched.len() >= self.config.keys_per_command_max {
                return self.too_many_keys(self.watched.len() + 1);
            }
            // Watching a key twice keeps the first revision, as in Redis.
            self.watched.entry(key.clone()).or_insert(revision);
        }
        ok()
    }

    fn finish_status(&self, step: &Step, status: &NodeStatus) -> Reply {
        match step {
            Step::Info { sections } => self.text_reply(self.info_text(status, sections)),
            Step::SynodStatus => status_reply(status),
            Step::DbSize => integer(status.keys),
            Step::Role => role_reply(status),
            _ => error(ERROR_INTERNAL),
        }
    }

    fn info_text(&self, status: &NodeStatus, sections: &[InfoSection]) -> String {
        let mut out = String::new();
        for section in sections {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            match section {
                InfoSection::Server => info_server(&mut out, status),
                InfoSection::Clients => {
                    out.push_str("# Clients\r\n");
                    line(&mut out, "connected_clients", status.connected_clients);
                }
                InfoSection::Replication => info_replication(&mut out, status),
                InfoSection::Keyspace => {
                    out.push_str("# Keyspace\r\n");
                    let keys = status.keys;
                    line(&mut out, "db0", format!("keys={keys},expires=0,avg_ttl=0"));
                }
                InfoSection::Synod => {
                    info_synod(&mut out, status);
                    line(&mut out, "read_level", self.read_level.name());
                }
            }
        }
        out
    }
}

/// The INFO sections synod writes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InfoSection {
    Server,
    Clients,
    Replication,
    Keyspace,
    Synod,
}

const INFO_SECTIONS: [(&str, InfoSection); 5] = [
    ("server", InfoSection::Server),
    ("clients", InfoSection::Clients),
    ("replication", InfoSection::Replication),
    ("keyspace", InfoSection::Keyspace),
    ("synod", InfoSection::Synod),
];

/// The sections INFO's arguments name: every section with none, or with "all", "default"
/// or "everything"; names synod does not have are ignored, as Redis does.
fn info_sections(args: &[Bytes]) -> Vec<InfoSection> {
    let wants_all = args.len() == 1
        || args[1..].iter().any(|arg| {
            [&b"all"[..], b"default", b"everything"]
                .iter()
                .any(|name| arg.eq_ignore_ascii_case(name))
        });
    INFO_SECTIONS
        .iter()
        .filter(|(name, _)| {
            wants_all
                || args[1..]
                    .iter()
                    .any(|arg| arg.eq_ignore_ascii_case(name.as_bytes()))
        })
        .map(|(_, section)| *section)
        .collect()
}

fn line(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn info_server(out: &mut String, status: &NodeStatus) {
    out.push_str("# Server\r\n");
    line(out, "redis_version", REDIS_VERSION_COMPATIBLE);
    line(out, "synod_version", SYNOD_VERSION);
    line(out, "redis_mode", "standalone");
    let (_, port) = split_address(&status.resp_address);
    line(out, "tcp_port", port);
    line(out, "uptime_in_seconds", status.uptime_ms / 1000);
    line(out, "uptime_in_days", status.uptime_ms / 86_400_000);
}

fn info_replication(out: &mut String, status: &NodeStatus) {
    out.push_str("# Replication\r\n");
    if status.role == "leader" {
        line(out, "role", "master");
        line(out, "connected_slaves", status.followers.len());
        return;
    }
    line(out, "role", "slave");
    let leader_address = leader_resp_address(status).unwrap_or("");
    let (host, port) = split_address(leader_address);
    line(out, "master_host", host);
    line(out, "master_port", port);
    let link = if status.leader.is_some() {
        "up"
    } else {
        "down"
    };
    line(out, "master_link_status", link);
}

fn info_synod(out: &mut String, status: &NodeStatus) {
    out.push_str("# Synod\r\n");
    line(out, "node", status.node);
    line(out, "cluster_id", status.cluster_id);
    line(out, "synod_role", &status.role);
    line(out, "term", status.term);
    let leader = status
        .leader
        .map_or_else(|| "none".to_owned(), |leader| leader.to_string());
    line(out, "leader", leader);
    line(out, "commit_index", status.commit_index);
    line(out, "applied_index", status.applied_index);
    line(out, "last_log_index", status.last_log_index);
    line(out, "first_log_index", status.first_log_index);
    line(out, "snapshot_index", status.snapshot_index);
    line(out, "voters", join_numbers(&status.voters));
    line(out, "learners", join_numbers(&status.learners));
    line(out, "revision", status.revision);
    line(out, "sessions", status.sessions);
    let contact = status
        .leader_contact_ms
        .map_or_else(|| "never".to_owned(), |ms| ms.to_string());
    line(out, "leader_contact_ms", contact);
    line(out, "synod_degraded", u8::from(status.degraded.is_some()));
    if let Some(reason) = &status.degraded {
        line(out, "synod_degraded_reason", reason);
    }
}

fn join_numbers(numbers: &[u64]) -> String {
    let texts: Vec<String> = numbers.iter().map(u64::to_string).collect();
    texts.join(",")
}

fn leader_resp_address(status: &NodeStatus) -> Option<&str> {
    let leader = status.leader?;
    status
        .members
        .iter()
        .find(|member| member.node == leader)
        .map(|member| member.resp_address.as_str())
}

/// Splits "host:port" at its last colon; a missing port is 0.
fn split_address(address: &str) -> (&str, u16) {
    match address.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(0)),
        None => (address, 0),
    }
}

/// ROLE, as Redis shapes it: `[master, offset, []]` on the leader, `[slave, host, port,
/// state, offset]` elsewhere; the offset is the applied index.
fn role_reply(status: &NodeStatus) -> Reply {
    if status.role == "leader" {
        return Reply::Array(Some(vec![
            text("master"),
            integer(status.applied_index),
            Reply::Array(Some(Vec::new())),
        ]));
    }
    let (host, port) = split_address(leader_resp_address(status).unwrap_or(""));
    let state = if status.leader.is_some() {
        "connected"
    } else {
        "connect"
    };
    Reply::Array(Some(vec![
        text("slave"),
        text(host),
        Reply::Integer(port.into()),
        text(state),
        integer(status.applied_index),
    ]))
}

/// SYNOD.STATUS: every field of [`NodeStatus`] as a map (a flat array in RESP2).
fn status_reply(status: &NodeStatus) -> Reply {
    let numbers =
        |values: &[u64]| Reply::Array(Some(values.iter().copied().map(integer).collect()));
    let followers = status.followers.iter().map(|follower| {
        Reply::Map(vec![
            (text("node"), integer(follower.node)),
            (text("voter"), Reply::Boolean(follower.voter)),
            (text("lag_entries"), integer(follower.lag_entries)),
            (text("lag_bytes"), integer(follower.lag_bytes)),
            (text("lag_ms"), integer(follower.lag_ms)),
            (text("active"), Reply::Boolean(follower.active)),
        ])
    });
    let members = status.members.iter().map(|member| {
        Reply::Map(vec![
            (text("node"), integer(member.node)),
            (text("resp_address"), text(&member.resp_address)),
            (text("http_address"), text(&member.http_address)),
        ])
    });
    Reply::Map(vec![
        (text("node"), integer(status.node)),
        (text("cluster_id"), integer(status.cluster_id)),
        (text("role"), text(&status.role)),
        (text("term"), integer(status.term)),
        (text("leader"), optional_integer(status.leader)),
        (text("commit_index"), integer(status.commit_index)),
        (text("applied_index"), integer(status.applied_index)),
        (text("last_log_index"), integer(status.last_log_index)),
        (text("first_log_index"), integer(status.first_log_index)),
        (text("snapshot_index"), integer(status.snapshot_index)),
        (text("voters"), numbers(&status.voters)),
        (text("learners"), numbers(&status.learners)),
        (text("followers"), Reply::Array(Some(followers.collect()))),
        (
            text("leader_contact_ms"),
            optional_integer(status.leader_contact_ms),
        ),
        (
            text("degraded"),
            status.degraded.as_deref().map_or(Reply::Null, text),
        ),
        (text("keys"), integer(status.keys)),
        (text("revision"), integer(status.revision)),
        (text("sessions"), integer(status.sessions)),
        (text("uptime_ms"), integer(status.uptime_ms)),
        (text("connected_clients"), integer(status.connected_clients)),
        (text("resp_address"), text(&status.resp_address)),
        (text("http_address"), text(&status.http_address)),
        (text("peer_address"), text(&status.peer_address)),
        (text("members"), Reply::Array(Some(members.collect()))),
    ])
}

// ---- Commands that need no state ----

fn ping(args: &[Bytes]) -> Reply {
    match args {
        [_] => Reply::Simple("PONG".to_owned()),
        [_, message] => Reply::Bulk(Some(message.clone())),
        _ => arity_error("ping"),
    }
}

fn echo(args: &[Bytes]) -> Reply {
    Reply::Bulk(Some(args[1].clone()))
}

fn select(args: &[Bytes]) -> Reply {
    match synod_kv::parse_integer(&args[1]) {
        None => error(ERROR_NOT_INTEGER),
        Some(0) => ok(),
        Some(_) => error("ERR DB index is out of range"),
    }
}

fn command_entry(spec: &Spec) -> Reply {
    let flags = spec.flags.iter().map(|flag| text_simple(flag)).collect();
    Reply::Array(Some(vec![
        text(spec.name),
        Reply::Integer(spec.arity),
        Reply::Set(flags),
        Reply::Integer(spec.first_key),
        Reply::Integer(spec.last_key),
        Reply::Integer(spec.step),
    ]))
}

/// COMMAND and its COUNT, LIST, INFO and DOCS subcommands.
fn command_info(args: &[Bytes]) -> Reply {
    let Some(subcommand) = args.get(1) else {
        return Reply::Array(Some(COMMANDS.iter().map(command_entry).collect()));
    };
    match (&subcommand.to_ascii_lowercase()[..], &args[2..]) {
        (b"count", []) => Reply::Integer(length(COMMANDS.len())),
        (b"list", []) => Reply::Array(Some(COMMANDS.iter().map(|spec| text(spec.name)).collect())),
        (b"info", []) => Reply::Array(Some(COMMANDS.iter().map(command_entry).collect())),
        (b"info", names) => Reply::Array(Some(
            names
                .iter()
                .map(|name| lookup(name).map_or(Reply::Array(None), command_entry))
                .collect(),
        )),
        (b"docs", _) => Reply::Map(Vec::new()),
        (b"count" | b"list", _) => {
            let name = String::from_utf8_lossy(subcommand).to_ascii_lowercase();
            arity_error(&format!("command|{name}"))
        }
        _ => error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            quote(subcommand)
        )),
    }
}

fn status_plan(step: Step) -> Plan {
    Plan::Status {
        then: Then {
            step,
            session: None,
        },
    }
}

// ---- Building operations ----

fn get_op(key: &Bytes) -> Operation {
    Operation::Get {
        key: key.clone(),
        revision: None,
    }
}

fn put_op(key: &Bytes, value: &Bytes, condition: PutCondition, return_previous: bool) -> Operation {
    Operation::Put {
        key: key.clone(),
        value: value.clone(),
        condition,
        return_previous,
    }
}

/// SET's options: the put's condition and whether GET was named.
fn set_options(options: &[Bytes]) -> Result<(PutCondition, bool), Reply> {
    let mut condition = PutCondition::Always;
    let mut get = false;
    for option in options {
        match &option.to_ascii_lowercase()[..] {
            b"nx" if condition != PutCondition::IfPresent => condition = PutCondition::IfAbsent,
            b"xx" if condition != PutCondition::IfAbsent => condition = PutCondition::IfPresent,
            b"get" => get = true,
            b"ex" | b"px" | b"exat" | b"pxat" | b"keepttl" => return Err(error(ERROR_NO_EXPIRY)),
            _ => return Err(error(ERROR_SYNTAX)),
        }
    }
    Ok((condition, get))
}

/// MSET's pairs, each key once with the last value named for it (the store refuses a
/// transaction that writes a key twice); `None` when the arguments do not pair up.
fn key_value_pairs(args: &[Bytes]) -> Option<Vec<(Bytes, Bytes)>> {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return None;
    }
    let mut last_value: BTreeMap<&Bytes, &Bytes> = BTreeMap::new();
    for pair in args.chunks_exact(2) {
        last_value.insert(&pair[0], &pair[1]);
    }
    // Keeps the order in which keys first appear.
    let mut pairs = Vec::with_capacity(last_value.len());
    for pair in args.chunks_exact(2) {
        if let Some(value) = last_value.remove(&pair[0]) {
            pairs.push((pair[0].clone(), value.clone()));
        }
    }
    Some(pairs)
}

/// The transaction ops a command queued in MULTI becomes, or the error that refuses it.
fn queued_ops(spec: &Spec, args: &[Bytes]) -> Result<(Queued, Vec<TxnOp>), Reply> {
    let get = |key: &Bytes| TxnOp::Get { key: key.clone() };
    let queued = match spec.kind {
        Kind::Get => (Queued::Value, vec![get(&args[1])]),
        Kind::Strlen => (Queued::Strlen, vec![get(&args[1])]),
        Kind::Type => (Queued::Type, vec![get(&args[1])]),
        Kind::Mget | Kind::Exists => {
            let gets: Vec<TxnOp> = args[1..].iter().map(get).collect();
            let count = gets.len();
            let queued = if spec.kind == Kind::Mget {
                Queued::Values { gets: count }
            } else {
                Queued::Exists { gets: count }
            };
            (queued, gets)
        }
        Kind::Set => queued_set(args)?,
        Kind::GetSet => (
            Queued::Previous,
            vec![
                get(&args[1]),
                TxnOp::Put {
                    key: args[1].clone(),
                    value: args[2].clone(),
                },
            ],
        ),
        Kind::Del => {
            // The store's Delete counts a key named twice once; so does this.
            let keys: BTreeSet<&Bytes> = args[1..].iter().collect();
            let deletes: Vec<TxnOp> = keys
                .into_iter()
                .map(|key| TxnOp::Delete { key: key.clone() })
                .collect();
            let count = deletes.len();
            (Queued::Deleted { deletes: count }, deletes)
        }
        Kind::Mset => {
            let pairs = key_value_pairs(&args[1..]).ok_or_else(|| arity_error("mset"))?;
            let puts: Vec<TxnOp> = pairs
                .into_iter()
                .map(|(key, value)| TxnOp::Put { key, value })
                .collect();
            (Queued::Ok { puts: puts.len() }, puts)
        }
        Kind::Ping => (Queued::Fixed(ping(args)), Vec::new()),
        Kind::Echo => (Queued::Fixed(echo(args)), Vec::new()),
        Kind::Unwatch => (Queued::Fixed(ok()), Vec::new()),
        Kind::Select => match select(args) {
            reply @ Reply::Simple(_) => (Queued::Fixed(reply), Vec::new()),
            refusal => return Err(refusal),
        },
        _ => return Err(not_in_transaction(spec.name)),
    };
    Ok(queued)
}

fn queued_set(args: &[Bytes]) -> Result<(Queued, Vec<TxnOp>), Reply> {
    let (condition, get) = set_options(&args[3..])?;
    if condition != PutCondition::Always {
        return Err(error(
            "ERR synod: SET NX and SET XX cannot run inside MULTI (a synod transaction \
             cannot make one write conditional); use WATCH, or SYNOD.CAS outside MULTI",
        ));
    }
    let put = TxnOp::Put {
        key: args[1].clone(),
        value: args[2].clone(),
    };
    if get {
        let read = TxnOp::Get {
            key: args[1].clone(),
        };
        return Ok((Queued::Previous, vec![read, put]));
    }
    Ok((Queued::Ok { puts: 1 }, vec![put]))
}

fn not_in_transaction(name: &str) -> Reply {
    let name = name.to_ascii_uppercase();
    error(format!(
        "ERR synod: {name} cannot run inside MULTI; a synod transaction holds only GET, \
         SET, GETSET, DEL, MGET, MSET, EXISTS, STRLEN, TYPE, PING, ECHO, SELECT and UNWATCH"
    ))
}

// ---- Building replies ----

fn exec_replies(queued: Vec<Queued>, results: Vec<TxnResult>) -> Reply {
    let mut results = results.into_iter();
    let replies = queued
        .into_iter()
        .map(|queued| {
            let taken: Vec<TxnResult> = results.by_ref().take(queued.ops_count()).collect();
            queued_reply(queued, &taken)
        })
        .collect();
    Reply::Array(Some(replies))
}

/// One queued command's reply from its share of the transaction's results.
fn queued_reply(queued: Queued, results: &[TxnResult]) -> Reply {
    if results.len() != queued.ops_count() {
        return error(ERROR_INTERNAL);
    }
    let values = || -> Option<Vec<Option<&VersionedValue>>> {
        results
            .iter()
            .map(|result| match result {
                TxnResult::Value(value) => Some(value.as_ref()),
                _ => None,
            })
            .collect()
    };
    let reply = match queued {
        Queued::Fixed(reply) => Some(reply),
        Queued::Ok { .. } => Some(ok()),
        Queued::Value => values()
            .and_then(|values| values.first().copied())
            .map(value_reply),
        // The Get, then the Put of the same key.
        Queued::Previous => match results {
            [TxnResult::Value(value), TxnResult::Put] => Some(value_reply(value.as_ref())),
            _ => None,
        },
        Queued::Values { .. } => {
            values().map(|values| Reply::Array(Some(values.into_iter().map(value_reply).collect())))
        }
        Queued::Exists { .. } => {
            values().map(|values| integer(values.iter().flatten().count() as u64))
        }
        Queued::Strlen => values()
            .and_then(|values| values.first().copied())
            .map(|value| integer(value.map_or(0, |value| value.value.len() as u64))),
        Queued::Type => values()
            .and_then(|values| values.first().copied())
            .map(|value| text_simple(if value.is_some() { "string" } else { "none" })),
        Queued::Deleted { .. } => results
            .iter()
            .map(|result| match result {
                TxnResult::Deleted { count } => Some(*count),
                _ => None,
            })
            .sum::<Option<u64>>()
            .map(integer),
    };
    reply.unwrap_or_else(|| error(ERROR_INTERNAL))
}

fn value_reply(value: Option<&VersionedValue>) -> Reply {
    Reply::Bulk(value.map(|value| value.value.clone()))
}

/// The value a Get read, or the reply that says why there is none.
fn read_value(done: Option<&ReadDone>) -> Result<Option<&VersionedValue>, Reply> {
    match done.map(|done| &done.response) {
        Some(Response::Value { value, .. }) => Ok(value.as_ref()),
        Some(Response::Error(command_error)) => Err(command_error_reply(command_error)),
        _ => Err(error(ERROR_INTERNAL)),
    }
}

/// A Range's entries and whether more keys lie beyond them.
fn read_range(done: Option<&ReadDone>) -> Result<(&[RangeEntry], bool), Reply> {
    match done.map(|done| &done.response) {
        Some(Response::Range { entries, more, .. }) => Ok((entries, *more)),
        Some(Response::Error(command_error)) => Err(command_error_reply(command_error)),
        _ => Err(error(ERROR_INTERNAL)),
    }
}

fn reply_or_error(result: Result<Reply, Reply>) -> Reply {
    result.unwrap_or_else(|reply| reply)
}

fn synod_get_reply(done: Option<&ReadDone>) -> Reply {
    let value = match read_value(done) {
        Ok(value) => value_reply(value),
        Err(reply) => return reply,
    };
    let Some(done) = done else {
        return error(ERROR_INTERNAL);
    };
    Reply::Array(Some(vec![
        value,
        integer(done.applied_index),
        optional_integer(done.staleness_ms),
    ]))
}

fn mget_reply(dones: &[ReadDone]) -> Reply {
    let mut replies = Vec::with_capacity(dones.len());
    for done in dones {
        match read_value(Some(done)) {
            Ok(value) => replies.push(value_reply(value)),
            Err(reply) => return reply,
        }
    }
    Reply::Array(Some(replies))
}

fn exists_reply(dones: &[ReadDone]) -> Reply {
    let mut count = 0;
    for done in dones {
        match read_value(Some(done)) {
            Ok(value) => count += u64::from(value.is_some()),
            Err(reply) => return reply,
        }
    }
    integer(count)
}

/// The error reply for a command the store refused or failed.
fn command_error_reply(command_error: &CommandError) -> Reply {
    match command_error {
        CommandError::NotAnInteger => error(ERROR_NOT_INTEGER),
        CommandError::IncrementOverflow => error("ERR increment or decrement would overflow"),
        CommandError::SessionExpired { client } => error(format!(
            "ERR synod: session {client} is unknown or has expired; open a new session with \
             SYNOD.SESSION OPEN"
        )),
        other => error(format!("ERR synod: {other}")),
    }
}

fn write_error_reply(service_error: &ServiceError, session: Option<SessionRef>) -> Reply {
    let retry = match session {
        Some(SessionRef {
            client, sequence, ..
        }) => format!(
            "to retry it exactly once, send SYNOD.SESSION RESUME {} {sequence} and then the \
             same write",
            client.get()
        ),
        None => "it may or may not have taken effect; open a session with SYNOD.SESSION OPEN \
                 before writing so that a retry takes effect exactly once"
            .to_owned(),
    };
    match service_error {
        ServiceError::Unknown { reason } => error(format!(
            "ERR synod: the write entered the log but its outcome is unknown ({reason}); \
             {retry}"
        )),
        ServiceError::Timeout { waited_ms } => error(format!(
            "ERR synod: the write got no answer within {waited_ms} ms and its outcome is \
             unknown; {retry}"
        )),
        ServiceError::LeaderChanged { detail } => error(format!(
            "ERR synod: the leader changed before the write was answered and its outcome is \
             unknown ({detail}); {retry}"
        )),
        other => service_error_reply(other),
    }
}

fn read_error_reply(service_error: &ServiceError) -> Reply {
    match service_error {
        ServiceError::Unknown { reason } => {
            error(format!("ERR synod: the read failed ({reason}); retry"))
        }
        ServiceError::Timeout { waited_ms } => error(format!(
            "TRYAGAIN synod: the read got no answer within {waited_ms} ms; retry"
        )),
        other => service_error_reply(other),
    }
}

/// The replies for errors where nothing was done.
fn service_error_reply(service_error: &ServiceError) -> Reply {
    match service_error {
        ServiceError::NoLeader { detail } => error(format!("TRYAGAIN synod: {detail}")),
        ServiceError::Overloaded { detail } => error(format!("BUSY {detail}")),
        ServiceError::NoQuorum { detail } => error(format!("TRYAGAIN {detail}")),
        ServiceError::ReadOnly { detail } => error(format!("READONLY {detail}")),
        // Refusals further in that already carry a Redis error code (a full gateway queue,
        // a read-only replica) keep it.
        ServiceError::Refused { reason }
            if reason.starts_with("BUSY ") || reason.starts_with("READONLY ") =>
        {
            error(reason.clone())
        }
        ServiceError::Refused { reason } if reason.to_ascii_lowercase().contains("overload") => {
            error(format!("BUSY synod: {reason}"))
        }
        other => error(format!("ERR synod: {other}")),
    }
}

fn unknown_command_text(args: &[Bytes]) -> String {
    let name = quote(&args[0]);
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= QUOTE_SIZE_MAX {
            break;
        }
        let room = QUOTE_SIZE_MAX - quoted.len();
        let text: String = String::from_utf8_lossy(arg).chars().take(room).collect();
        let _ = write!(quoted, "'{text}' ");
    }
    format!("ERR unknown command '{name}', with args beginning with: {quoted}")
}

fn arity_error(name: &str) -> Reply {
    error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Up to [`QUOTE_SIZE_MAX`] characters of an argument, for an error text.
fn quote(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(QUOTE_SIZE_MAX)
        .collect()
}

/// A client name or library field: `Some(None)` clears it; `None` when it holds a space or
/// a byte outside printable ASCII, which Redis refuses.
fn client_name(name: &[u8]) -> Option<Option<String>> {
    if name.is_empty() {
        return Some(None);
    }
    if !name.iter().all(|byte| (b'!'..=b'~').contains(byte)) {
        return None;
    }
    Some(Some(String::from_utf8_lossy(name).into_owned()))
}

/// Compares a password in time that does not depend on where the first difference lies.
fn constant_time_equal(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != given.len());
    for (index, byte) in given.iter().enumerate() {
        let expected_byte = expected.get(index).copied().unwrap_or(0);
        difference |= expected_byte ^ byte;
    }
    difference == 0
}

/// An unsigned decimal number: digits only, within u64.
fn parse_unsigned(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn ok() -> Reply {
    Reply::Simple("OK".to_owned())
}

fn error(message: impl Into<String>) -> Reply {
    Reply::Error(message.into())
}

fn text(value: &str) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(value.as_bytes())))
}

fn text_simple(value: &str) -> Reply {
    Reply::Simple(value.to_owned())
}

fn integer(value: u64) -> Reply {
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn optional_integer(value: Option<u64>) -> Reply {
    value.map_or(Reply::Null, integer)
}

fn length(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

// ---- Glob patterns ----

/// A Redis glob pattern (KEYS, SCAN MATCH): `*` any run of bytes, `?` one byte, `[abc]`,
/// `[^a]`, `[a-z]` (a reversed range counts as its reverse) and `\x` for a literal `x`. It
/// matches bytes, as Redis does, so it works on keys that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<GlobToken>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobToken {
    /// Any run of bytes, including none.
    Star,
    /// Any one byte.
    Any,
    Byte(u8),
    /// One byte in (or, `negated`, not in) one of the inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl GlobToken {
    /// Whether this token, which is not a star, matches `byte`.
    fn matches_one(&self, byte: u8) -> bool {
        match self {
            GlobToken::Star | GlobToken::Any => true,
            GlobToken::Byte(expected) => *expected == byte,
            GlobToken::Class { negated, ranges } => {
                let inside = ranges
                    .iter()
                    .any(|&(low, high)| (low..=high).contains(&byte));
                inside != *negated
            }
        }
    }
}

impl Pattern {
    /// Parses a pattern the way Redis's `stringmatchlen` reads one: an unclosed `[` runs to
    /// the end of the pattern, and a `\` at the very end is a literal `\`.
    pub fn parse(pattern: &[u8]) -> Pattern {
        let mut tokens = Vec::new();
        let mut index = 0;
        while let Some(&byte) = pattern.get(index) {
            index += 1;
            let token = match byte {
                b'*' if tokens.last() == Some(&GlobToken::Star) => continue,
                b'*' => GlobToken::Star,
                b'?' => GlobToken::Any,
                b'\\' => match pattern.get(index) {
                    Some(&escaped) => {
                        index += 1;
                        GlobToken::Byte(escaped)
                    }
                    None => GlobToken::Byte(b'\\'),
                },
                b'[' => {
                    let (token, next) = parse_class(pattern, index);
                    index = next;
                    token
                }
                _ => GlobToken::Byte(byte),
            };
            tokens.push(token);
        }
        Pattern { tokens }
    }

    /// Whether `text` matches the whole pattern. Each token but `*` matches exactly one
    /// byte, so backtracking to the last `*` alone is complete: O(pattern x text) time.
    pub fn matches(&self, text: &[u8]) -> bool {
        let tokens = &self.tokens;
        let (mut token, mut position) = (0, 0);
        // The token after the last star seen, and where in the text its run now ends.
        let mut star: Option<(usize, usize)> = None;
        while position < text.len() {
            match tokens.get(token) {
                Some(GlobToken::Star) => {
                    star = Some((token + 1, position));
                    token += 1;
                    continue;
                }
                Some(next) if next.matches_one(text[position]) => {
                    token += 1;
                    position += 1;
                    continue;
                }
                _ => {}
            }
            let Some((after_star, run_end)) = star else {
                return false;
            };
            token = after_star;
            position = run_end + 1;
            star = Some((after_star, run_end + 1));
        }
        tokens[token.min(tokens.len())..]
            .iter()
            .all(|token| *token == GlobToken::Star)
    }

    /// The literal bytes every match starts with, which bound the keys a KEYS or SCAN reads.
    fn literal_prefix(&self) -> Vec<u8> {
        self.tokens
            .iter()
            .map_while(|token| match token {
                GlobToken::Byte(byte) => Some(*byte),
                _ => None,
            })
            .collect()
    }
}

/// Parses a class whose `[` ended just before `start`: the token and the index after it.
fn parse_class(pattern: &[u8], start: usize) -> (GlobToken, usize) {
    let mut index = start;
    let negated = pattern.get(index) == Some(&b'^');
    if negated {
        index += 1;
    }
    let mut ranges = Vec::new();
    while let Some(&byte) = pattern.get(index) {
        match (byte, pattern.get(index + 1), pattern.get(index + 2)) {
            (b'\\', Some(&escaped), _) => {
                ranges.push((escaped, escaped));
                index += 2;
            }
            (b']', _, _) => return (GlobToken::Class { negated, ranges }, index + 1),
            (low, Some(b'-'), Some(&high)) => {
                ranges.push((low.min(high), low.max(high)));
                index += 3;
            }
            (byte, _, _) => {
                ranges.push((byte, byte));
                index += 1;
            }
        }
    }
    (GlobToken::Class { negated, ranges }, index)
}

/// The first key after every key that starts with `prefix`; `None` when no key is (an empty
/// prefix, or one of 0xff bytes only).
fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let last = prefix.iter().rposition(|&byte| byte != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(Bytes::from(end))
}
