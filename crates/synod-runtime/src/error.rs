//! Errors of the runtime as a whole: a node that could not start, or that stopped on its own.

use std::net::SocketAddr;
use std::path::PathBuf;

use synod_core::{ConfigError, NodeId};
use thiserror::Error;

use crate::node::NodeReport;

/// Why a node could not start, or why it stopped without being asked to.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "data directory {dir} is locked by another synod runtime (lock file {lock_file}): \
         stop that node or give this one another data_dir"
    )]
    DataDirectoryLocked { dir: PathBuf, lock_file: PathBuf },
    #[error("data directory {dir}: {message}")]
    DataDirectory { dir: PathBuf, message: String },
    #[error("cannot listen on {address}: {message}")]
    Listen {
        address: SocketAddr,
        message: String,
    },
    #[error("port {port} already has an endpoint on this node: open each port once")]
    EndpointTaken { port: u16 },
    #[error("cannot start the disk thread of node {node}: {message}")]
    DiskThread { node: NodeId, message: String },
    /// The root supervisor gave up: every actor has been stopped and the node is down. The
    /// report holds the panics, the counters and the observations up to that point.
    #[error("node {node} halted: its root supervisor gave up ({reason})")]
    Halted {
        node: NodeId,
        reason: String,
        report: Box<NodeReport>,
    },
}
