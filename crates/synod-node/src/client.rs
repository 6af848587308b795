//! The client protocol of a replica: requests that clients (the RESP front end, the Rust
//! client, the simulator's workload) send to a node's CLIENT_PORT, and the responses the
//! replica sends back to the port the request names. Explicit little-endian encoding;
//! decoding never panics and names what was wrong.

use bytes::Bytes;
use synod_core::NodeId;
use synod_raft::MembershipChange;
use thiserror::Error;

/// The format version written first in every request and response.
pub const CLIENT_FORMAT_VERSION: u8 = 1;
/// The largest key or value a request may carry (the state machine has its own limits).
pub const CLIENT_FIELD_SIZE_MAX: usize = 8 << 20;

/// How a read is made consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// ReadIndex at the leader; a follower asks the leader for the index (follower read).
    Linearizable,
    /// The leader's lease (falls back to ReadIndex when the lease is off or lapsed).
    Lease,
    /// Served from this replica's applied state at once, with its staleness.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// A state-machine command (an encoded `synod_kv::Command`), through the log.
    Write(Bytes),
    /// A read without the log: an encoded `synod_kv::Command` whose operation is `Get` or
    /// `Range`, served from the replica's applied state once `consistency` allows.
    Read {
        query: Bytes,
        consistency: ReadConsistency,
        /// The client's session token: the highest log index it has seen (a write's
        /// index, a read's applied index). A stale read waits until this replica has
        /// applied that far, so a client never reads older state than it has already seen
        /// (read-your-writes, monotonic reads). 0: no wait.
        min_applied: u64,
    },
    /// An operator's request: a membership change (answered once its entry applies) or a
    /// leader transfer (answered `Accepted` once started).
    Admin(AdminRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    ChangeMembership(MembershipChange),
    TransferLeadership(NodeId),
}

/// The most voters one SetVoters change may name.
pub const VOTERS_COUNT_MAX: usize = 4_096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    /// The port on the client's node the response goes to.
    pub reply_port: u16,
    pub body: RequestBody,
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command was committed and applied: the state machine's encoded response and the
    /// fencing token (term, index) of its entry.
    Applied {
        response: Bytes,
        term: u64,
        index: u64,
    },
    /// A read's answer (the state machine's encoded `Response`) as of `applied_index`. Stale
    /// reads also carry the time since this replica last heard from a leader (`None`: never;
    /// 0 on the leader).
    Read {
        response: Bytes,
        applied_index: u64,
        staleness_ns: Option<u64>,
    },
    /// This node is not the leader; retry at `leader` if known. Nothing was done.
    NotLeader { leader: Option<NodeId> },
    /// Refused before reaching the log or the read path (overload, limits, starting up,
    /// a lost read round): nothing was done and a retry is safe.
    Refused { reason: String },
    /// The command entered the log but its outcome is unknown (the replica lost track of
    /// it); a retry must use a session to stay exactly-once.
    Unknown { reason: String },
    /// An operator request was started (a leader transfer); watch the leader to see it end.
    Accepted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub id: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientDecodeError {
    #[error("client message truncated: {what} needs {needed} bytes at offset {offset}")]
    Truncated {
        what: &'static str,
        needed: usize,
        offset: usize,
    },
    #[error("client message has unknown {what} {value} at offset {offset}")]
    Unknown {
        what: &'static str,
        value: u64,
        offset: usize,
    },
    #[error("client message field {what} of {size} bytes exceeds {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("client message has {count} trailing bytes")]
    Trailing { count: usize },
    #[error("client message field {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, what: &'static str, size: usize) -> Result<&'a [u8], ClientDecodeError> {
        let remaining = self.bytes.len() - self.offset;
        if size > remaining {
            return Err(ClientDecodeError::Truncated {
                what,
                needed: size,
                offset: self.offset,
            });
        }
        let slice = &self.bytes[self.offset..self.offset + size];
        self.offset += size;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ClientDecodeError> {
        Ok(self.take(what, 1)?[0])
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ClientDecodeError> {
        let bytes = self.take(what, 8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
    }

    fn bytes(&mut self, what: &'static str) -> Result<Bytes, ClientDecodeError> {
        let size = u32::from_le_bytes(self.take(what, 4)?.try_into().expect("four bytes"));
        let size = size as usize;
        if size > CLIENT_FIELD_SIZE_MAX {
            return Err(ClientDecodeError::TooLarge {
                what,
                size,
                limit: CLIENT_FIELD_SIZE_MAX,
            });
        }
        Ok(Bytes::copy_from_slice(self.take(what, size)?))
    }

    fn tag(&mut self, what: &'static str, max: u8) -> Result<u8, ClientDecodeError> {
        let offset = self.offset;
        let value = self.u8(what)?;
        if value > max {
            return Err(ClientDecodeError::Unknown {
                what,
                value: u64::from(value),
                offset,
            });
        }
        Ok(value)
    }

    fn option_u64(&mut self, what: &'static str) -> Result<Option<u64>, ClientDecodeError> {
        match self.tag(what, 1)? {
            0 => Ok(None),
            _ => Ok(Some(self.u64(what)?)),
        }
    }

    fn finish(self) -> Result<(), ClientDecodeError> {
        let count = self.bytes.len() - self.offset;
        if count != 0 {
            return Err(ClientDecodeError::Trailing { count });
        }
        Ok(())
    }

    fn version(&mut self) -> Result<(), ClientDecodeError> {
        let offset = self.offset;
        let version = self.u8("version")?;
        if version != CLIENT_FORMAT_VERSION {
            return Err(ClientDecodeError::Unknown {
                what: "version",
                value: u64::from(version),
                offset,
            });
        }
        Ok(())
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_option_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

fn encode_admin(out: &mut Vec<u8>, admin: &AdminRequest) {
    let (tag, nodes): (u8, Vec<NodeId>) = match admin {
        AdminRequest::ChangeMembership(MembershipChange::AddLearner(node)) => (0, vec![*node]),
        AdminRequest::ChangeMembership(MembershipChange::Promote(node)) => (1, vec![*node]),
        AdminRequest::ChangeMembership(MembershipChange::Remove(node)) => (2, vec![*node]),
        AdminRequest::ChangeMembership(MembershipChange::SetVoters(voters)) => (3, voters.clone()),
        AdminRequest::TransferLeadership(node) => (4, vec![*node]),
    };
    assert!(nodes.len() <= VOTERS_COUNT_MAX, "too many voters to encode");
    out.push(tag);
    out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    for node in nodes {
        out.extend_from_slice(&node.0.to_le_bytes());
    }
}

fn decode_admin(reader: &mut Reader<'_>) -> Result<AdminRequest, ClientDecodeError> {
    let tag = reader.tag("admin request", 4)?;
    let count = u32::from_le_bytes(reader.take("node count", 4)?.try_into().expect("four"));
    let count = count as usize;
    if count > VOTERS_COUNT_MAX {
        return Err(ClientDecodeError::TooLarge {
            what: "node list",
            size: count,
            limit: VOTERS_COUNT_MAX,
        });
    }
    let offset = reader.offset;
    if tag != 3 && count != 1 {
        return Err(ClientDecodeError::Unknown {
            what: "node count of a single-node request",
            value: count as u64,
            offset,
        });
    }
    let mut nodes = Vec::with_capacity(count.min(reader.bytes.len() / 8));
    for _ in 0..count {
        nodes.push(NodeId(reader.u64("node id")?));
    }
    let node = nodes.first().copied().unwrap_or(NodeId(0));
    Ok(match tag {
        0 => AdminRequest::ChangeMembership(MembershipChange::AddLearner(node)),
        1 => AdminRequest::ChangeMembership(MembershipChange::Promote(node)),
        2 => AdminRequest::ChangeMembership(MembershipChange::Remove(node)),
        3 => AdminRequest::ChangeMembership(MembershipChange::SetVoters(nodes)),
        _ => AdminRequest::TransferLeadership(node),
    })
}

impl ClientRequest {
    pub fn encode(&self) -> Bytes {
        let mut out = vec![CLIENT_FORMAT_VERSION];
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.reply_port.to_le_bytes());
        match &self.body {
            RequestBody::Write(command) => {
                out.push(0);
                put_bytes(&mut out, command);
            }
            RequestBody::Read {
                query,
                consistency,
                min_applied,
            } => {
                out.push(1);
                put_bytes(&mut out, query);
                out.extend_from_slice(&min_applied.to_le_bytes());
                out.push(match consistency {
                    ReadConsistency::Linearizable => 0,
                    ReadConsistency::Lease => 1,
                    ReadConsistency::Stale => 2,
                });
            }
            RequestBody::Admin(admin) => {
                out.push(2);
                encode_admin(&mut out, admin);
            }
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<ClientRequest, ClientDecodeError> {
        let mut reader = Reader { bytes, offset: 0 };
        reader.version()?;
        let id = reader.u64("request id")?;
        let port = reader.take("reply port", 2)?;
        let reply_port = u16::from_le_bytes(port.try_into().expect("two bytes"));
        let body = match reader.tag("request kind", 2)? {
            0 => RequestBody::Write(reader.bytes("command")?),
            2 => RequestBody::Admin(decode_admin(&mut reader)?),
            _ => {
                let query = reader.bytes("read query")?;
                let min_applied = reader.u64("minimum applied index")?;
                let consistency = match reader.tag("read consistency", 2)? {
                    0 => ReadConsistency::Linearizable,
                    1 => ReadConsistency::Lease,
                    _ => ReadConsistency::Stale,
                };
                RequestBody::Read {
                    query,
                    consistency,
                    min_applied,
                }
            }
        };
        reader.finish()?;
        Ok(ClientRequest {
            id,
            reply_port,
            body,
        })
    }
}

impl ClientResponse {
    pub fn encode(&self) -> Bytes {
        let mut out = vec![CLIENT_FORMAT_VERSION];
        out.extend_from_slice(&self.id.to_le_bytes());
        match &self.outcome {
            Outcome::Applied {
                response,
                term,
                index,
            } => {
                out.push(0);
                put_bytes(&mut out, response);
                out.extend_from_slice(&term.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
            }
            Outcome::Read {
                response,
                applied_index,
                staleness_ns,
            } => {
                out.push(1);
                put_bytes(&mut out, response);
                out.extend_from_slice(&applied_index.to_le_bytes());
                put_option_u64(&mut out, *staleness_ns);
            }
            Outcome::NotLeader { leader } => {
                out.push(2);
                put_option_u64(&mut out, leader.map(|node| node.0));
            }
            Outcome::Refused { reason } => {
                out.push(3);
                put_bytes(&mut out, reason.as_bytes());
            }
            Outcome::Unknown { reason } => {
                out.push(4);
                put_bytes(&mut out, reason.as_bytes());
            }
            Outcome::Accepted => out.push(5),
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<ClientResponse, ClientDecodeError> {
        let mut reader = Reader { bytes, offset: 0 };
        reader.version()?;
        let id = reader.u64("response id")?;
        let text = |reader: &mut Reader<'_>| -> Result<String, ClientDecodeError> {
            let bytes = reader.bytes("reason")?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ClientDecodeError::NotUtf8 { what: "reason" })
        };
        let outcome = match reader.tag("outcome", 5)? {
            0 => Outcome::Applied {
                response: reader.bytes("response")?,
                term: reader.u64("term")?,
                index: reader.u64("index")?,
            },
            1 => {
                let response = reader.bytes("read response")?;
                Outcome::Read {
                    response,
                    applied_index: reader.u64("applied index")?,
                    staleness_ns: reader.option_u64("staleness")?,
                }
            }
            2 => Outcome::NotLeader {
                leader: reader.option_u64("leader")?.map(NodeId),
            },
            3 => Outcome::Refused {
                reason: text(&mut reader)?,
            },
            4 => Outcome::Unknown {
                reason: text(&mut reader)?,
            },
            _ => Outcome::Accepted,
        };
        reader.finish()?;
        Ok(ClientResponse { id, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        // Checks every request and outcome kind decodes to what was encoded.
        let requests = [
            RequestBody::Admin(AdminRequest::TransferLeadership(NodeId(2))),
            RequestBody::Admin(AdminRequest::ChangeMembership(MembershipChange::SetVoters(
                vec![NodeId(1), NodeId(4)],
            ))),
            RequestBody::Write(Bytes::from_static(b"cmd")),
            RequestBody::Read {
                query: Bytes::from_static(b"q"),
                consistency: ReadConsistency::Stale,
                min_applied: 12,
            },
        ];
        for body in requests {
            let request = ClientRequest {
                id: 7,
                reply_port: 300,
                body,
            };
            assert_eq!(ClientRequest::decode(&request.encode()).unwrap(), request);
        }
        let outcomes = [
            Outcome::Applied {
                response: Bytes::from_static(b"r"),
                term: 2,
                index: 9,
            },
            Outcome::Read {
                response: Bytes::from_static(b"v"),
                applied_index: 4,
                staleness_ns: Some(5),
            },
            Outcome::NotLeader {
                leader: Some(NodeId(3)),
            },
            Outcome::Refused {
                reason: "busy".into(),
            },
            Outcome::Unknown {
                reason: "lost".into(),
            },
            Outcome::Accepted,
        ];
        for outcome in outcomes {
            let response = ClientResponse { id: 1, outcome };
            assert_eq!(
                ClientResponse::decode(&response.encode()).unwrap(),
                response
            );
        }
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        // Checks decoding refuses every strict prefix and arbitrary bytes without panicking.
        let request = ClientRequest {
            id: 1,
            reply_port: 2,
            body: RequestBody::Write(Bytes::from_static(b"abc")),
        }
        .encode();
        for cut in 0..request.len() {
            assert!(ClientRequest::decode(&request[..cut]).is_err());
        }
        let mut state = 1u64;
        for _ in 0..2_000 {
            let len = (state % 40) as usize;
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            let _ = ClientRequest::decode(&garbage);
            let _ = ClientResponse::decode(&garbage);
        }
    }
}
