//! synod-server: the RESP (Redis protocol) and HTTP front ends of a synod node; today the
//! RESP codec.
//!
//! [`resp`] is sans-IO: a connection task reads bytes into a `BytesMut`, takes whole
//! commands off its front with a [`RequestParser`], and writes each [`Reply`] with
//! [`encode`] in the protocol version the client chose with `HELLO`:
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use synod_server::{ProtocolVersion, Reply, RequestParser, RespLimits, encode};
//!
//! let mut parser = RequestParser::new(RespLimits::default());
//! let mut input = BytesMut::from(&b"*1\r\n$4\r\nPING\r\nPING\r\n"[..]);
//! let mut output = BytesMut::new();
//! while let Some(command) = parser.feed(&mut input).unwrap() {
//!     assert_eq!(command, vec![Bytes::from_static(b"PING")]);
//!     encode(&Reply::Simple("PONG".into()), ProtocolVersion::Resp2, &mut output);
//! }
//! assert_eq!(&output[..], b"+PONG\r\n+PONG\r\n");
//! ```

pub mod admin;
pub mod admission;
pub mod command;
pub mod config;
pub mod connection;
pub mod gateway;
pub mod health;
pub mod metrics;
pub mod resp;
pub mod server;
pub mod status;

pub use command::{
    CommandConfig, Connection, Done, Pattern, Plan, ReadDone, ServiceError, Then, Written,
};
pub use config::ServerConfig;
pub use resp::{ProtocolVersion, Reply, ReplyParser, RequestParser, RespError, RespLimits, encode};
pub use server::{ServerError, run_server};
pub use status::{FollowerStatus, MemberEndpoints, NodeStatus, ReadLevel};
