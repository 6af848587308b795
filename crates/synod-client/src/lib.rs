//! synod-client: a Rust client for synod nodes, speaking RESP (it works against plain Redis
//! too).
//!
//! [`Connection`] is one TCP connection: `call` sends a command and waits for its reply,
//! `call_many` pipelines several, each bounded by a timeout; replies are parsed with
//! synod-server's `ReplyParser`. [`Client`] is cluster-aware: it asks a seed for
//! `SYNOD.STATUS`, sends requests to the leader, and on a connection error, a timeout or
//! `-TRYAGAIN` finds the leader again and retries with backoff ([`retry`]) until the
//! operation's deadline. Its writes are exactly-once: the first write opens a
//! `SYNOD.SESSION`, every write carries the session's next sequence, and a write whose reply
//! was lost is sent again on a new connection after `SYNOD.SESSION RESUME <client>
//! <sequence>`, so the node answers it from its cache instead of applying it twice.
//!
//! Every connect and call goes through the node's circuit breaker ([`breakers`], one
//! synod-resilience `CircuitBreaker` per address, set by [`ClientConfig::breaker`]): a node
//! that keeps failing or answering slowly is skipped while another can be asked, and
//! [`Client::breaker_states`] shows each breaker.
//!
//! ```no_run
//! # async fn example() -> Result<(), synod_client::ClientError> {
//! use synod_client::{Client, ClientConfig};
//!
//! let mut client = Client::new(&["127.0.0.1:7001", "127.0.0.1:7002"], ClientConfig::default())?;
//! client.set(b"greeting", b"hello").await?;
//! assert_eq!(client.get(b"greeting").await?.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

pub mod breakers;
pub mod client;
pub mod connection;
pub mod error;
pub mod retry;
pub mod status;

pub use breakers::NodeBreakerState;
pub use client::{CasOutcome, Client, ClientConfig, outcome_unknown};
pub use connection::{Connection, ConnectionLimits, encode_command};
pub use error::{ClientError, Retry};
pub use status::{ClusterStatus, FollowerProgress, MemberAddress, parse_status};
pub use synod_resilience::{BreakerConfig, BreakerState, SlidingWindow};
pub use synod_server::{ReadLevel, Reply};
