//! synod-runtime: the production executor. It runs the same `synod_actor::System`s as the
//! simulator, on tokio, with real TCP between nodes, real files and the real clock.
//!
//! One node is one task (the node loop, `node_loop.rs`) that owns the node's `System` and
//! feeds it every input: network arrivals from the reader tasks, disk completions from the
//! IO thread, timer deadlines, and closures injected through a [`NodeHandle`]. The actors
//! reach the world through [`Services`](synod_actor::Services), implemented here by
//! never-blocking hand-offs to bounded queues:
//!
//! ```text
//! peers --TCP--> reader tasks --inbound (bounded; readers wait)--> node loop
//! node loop --try_send (bounded per peer)--> peer sender tasks --TCP--> peers
//! node loop --try_send (bounded)--> IO thread --completions (bounded)--> node loop
//! injected closures (bounded) --> node loop
//! ```
//!
//! ```no_run
//! # async fn example() -> Result<(), synod_runtime::RuntimeError> {
//! use synod_core::NodeId;
//! use synod_runtime::{NodeRuntime, NodeRuntimeConfig};
//!
//! let mut config = NodeRuntimeConfig::new(NodeId(1));
//! config.listen_address = Some("127.0.0.1:0".parse().expect("address"));
//! let runtime = NodeRuntime::new(config)?;
//! let report = runtime
//!     .run(|_system| { /* spawn the node's actors */ }, tokio::signal::ctrl_c())
//!     .await?;
//! println!("{}", report.tree_text);
//! # Ok(())
//! # }
//! ```
//!
//! The wire format is in docs/wire.md. Invariant: nothing here decides anything for an actor;
//! the node's behaviour lives in the actors, which run unchanged under synod-sim.

mod bench;
mod clock;
mod config;
mod disk;
mod endpoint;
mod error;
pub mod frame;
mod node;
mod node_loop;
mod peer;
mod peer_breaker;
mod record;
mod services;
mod transport;
mod wiring;

pub use bench::{BENCH_CHAIN_LENGTH_MAX, BENCH_WINDOW, ChainReport, bench_actor_chain};
pub use clock::{CLOCK_DRIFT_PPM_MAX, CLOCK_OFFSET_MS_MAX, ClockFaultSettings};
pub use config::{NodeRuntimeConfig, peer_breaker_default};
pub use disk::{DISK_SYNC_DELAY_MAX, DiskFaultSettings, DiskStats, LOCK_FILE_NAME};
pub use endpoint::{Endpoint, EndpointSendError, EndpointSender};
pub use error::RuntimeError;
pub use node::{InjectError, Injection, NodeHandle, NodeReport, NodeRuntime, run_node};
pub use node_loop::LoopStats;
pub use services::{ObservationRecord, ServicesStats};
pub use transport::{Direction, NetworkErrorRecord, PeerError, PeerErrorKind, PeerStats};
