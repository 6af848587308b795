//! What can go wrong talking to a node, and whether a request that failed may have run.

use std::io;

use synod_server::RespError;

/// Why a request failed. Each text says what happened and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {address}: {source}; check that a synod node (or Redis) listens \
         there and that the address is right"
    )]
    Connect { address: String, source: io::Error },
    #[error(
        "connecting to {address} took longer than {timeout_ms} ms; check that the host is \
         reachable, or raise the request timeout"
    )]
    ConnectTimeout { address: String, timeout_ms: u64 },
    #[error(
        "the connection to {address} failed during a request: {source}; the request may or \
         may not have been applied (retry a write only through a session)"
    )]
    Io { address: String, source: io::Error },
    #[error(
        "{address} closed the connection before replying; the request may or may not have \
         been applied (retry a write only through a session)"
    )]
    Closed { address: String },
    #[error(
        "no reply from {address} within {timeout_ms} ms; the request may or may not have been \
         applied; the connection is closed (raise the request timeout if the node is just slow)"
    )]
    Timeout { address: String, timeout_ms: u64 },
    #[error(
        "{address} sent bytes that are not RESP ({source}); is that a Redis-protocol port? \
         The connection is closed"
    )]
    Protocol { address: String, source: RespError },
    #[error(
        "the reply from {address} is larger than {reply_size_max} bytes; the connection is \
         closed (raise reply_size_max if such replies are expected)"
    )]
    ReplyTooLarge {
        address: String,
        reply_size_max: usize,
    },
    #[error(
        "an earlier request on the connection to {address} failed, so its replies are out of \
         step; open a new connection"
    )]
    Broken { address: String },
    #[error("pipeline of {count} commands exceeds pipeline_max ({pipeline_max}); split it")]
    PipelineTooLong { count: usize, pipeline_max: usize },
    /// The server answered with an error reply (`-ERR ...`, `-WRONGTYPE ...`).
    #[error("{address} answered with an error: {message}")]
    Server { address: String, message: String },
    /// The node cannot take the request now and did not apply it: the cluster has no
    /// leader it knows of (`-TRYAGAIN`), or the node's disk is full or failing
    /// (`-READONLY`); retry after a pause, through the leader found again.
    #[error(
        "{address} cannot take the request now ({message}): an election is probably running \
         or this node's disk failed; retry in a moment"
    )]
    TryAgain { address: String, message: String },
    #[error("{command}: unexpected reply from {address}: {reply}")]
    UnexpectedReply {
        address: String,
        command: String,
        reply: String,
    },
    #[error(
        "none of the seeds ({seeds}) named a leader: {detail}; check that a majority of the \
         cluster is up and that the seeds are synod RESP addresses"
    )]
    NoLeader { seeds: String, detail: String },
    #[error(
        "gave up after {attempts} attempts in {elapsed_ms} ms (deadline {deadline_ms} ms, \
         attempts_max {attempts_max}); last error: {last}"
    )]
    GaveUp {
        attempts: u32,
        attempts_max: u32,
        elapsed_ms: u64,
        deadline_ms: u64,
        last: Box<ClientError>,
    },
    /// The node's circuit breaker is open: recent calls to it failed or were slow, so the
    /// client does not send it more for a while. Nothing was sent.
    #[error(
        "the circuit breaker for {address} is open after repeated failures or slow replies; \
         the client sends it nothing for {retry_after_ms} ms more (Client::breaker_states \
         shows each node's breaker)"
    )]
    BreakerOpen {
        address: String,
        retry_after_ms: u64,
    },
    #[error("client config: {0}")]
    Config(String),
}

/// Whether, and how, a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request was certainly not applied (it never left, or no leader took it): any
    /// request may be sent again.
    Safe,
    /// The request may have been applied: a read may be sent again, a write only within its
    /// session, with the same sequence, so that it applies once.
    Ambiguous,
    /// Sending it again gives the same answer (a wrong argument, a type error).
    Never,
}

impl ClientError {
    /// How this failure may be retried (a pure classification, tested in `retry`).
    pub fn retry(&self) -> Retry {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectTimeout { .. }
            | ClientError::TryAgain { .. }
            | ClientError::NoLeader { .. }
            | ClientError::Broken { .. }
            | ClientError::BreakerOpen { .. } => Retry::Safe,
            ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. }
            | ClientError::Protocol { .. }
            | ClientError::ReplyTooLarge { .. } => Retry::Ambiguous,
            ClientError::Server { .. }
            | ClientError::UnexpectedReply { .. }
            | ClientError::PipelineTooLong { .. }
            | ClientError::GaveUp { .. }
            | ClientError::Config(_) => Retry::Never,
        }
    }

    /// Whether the connection the request used must be dropped.
    pub fn breaks_connection(&self) -> bool {
        self.retry() == Retry::Ambiguous || matches!(self, ClientError::Broken { .. })
    }
}
