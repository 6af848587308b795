//! The envelope of Raft messages between replicas: the cluster's id, then the message in
//! synod-raft's encoding. A message from another cluster (a misconfigured node, a node
//! wiped and started as a new cluster at the same address) is refused before Raft sees it,
//! so a stranger's term can never depose this cluster's leader.

use bytes::Bytes;
use synod_raft::Message;
use synod_raft::codec::{DecodeError, decode_message_bytes, encode_message};
use thiserror::Error;

/// Bytes of the envelope header: the cluster id, little-endian.
pub const PEER_HEADER_SIZE: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerDecodeError {
    #[error("peer message of {size} bytes is shorter than its {PEER_HEADER_SIZE}-byte header")]
    Truncated { size: usize },
    #[error("peer message from cluster {found}, but this node belongs to cluster {expected}")]
    ForeignCluster { expected: u64, found: u64 },
    #[error("peer message does not decode: {0}")]
    Message(DecodeError),
}

/// Encodes `message` for the peers of cluster `cluster_id`.
pub fn encode_peer_message(cluster_id: u64, message: &Message) -> Bytes {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&cluster_id.to_le_bytes());
    encode_message(message, &mut bytes);
    Bytes::from(bytes)
}

/// Decodes a peer message, refusing one from another cluster.
pub fn decode_peer_message(cluster_id: u64, bytes: &Bytes) -> Result<Message, PeerDecodeError> {
    if bytes.len() < PEER_HEADER_SIZE {
        return Err(PeerDecodeError::Truncated { size: bytes.len() });
    }
    let header: [u8; PEER_HEADER_SIZE] = bytes[..PEER_HEADER_SIZE].try_into().expect("eight");
    let found = u64::from_le_bytes(header);
    if found != cluster_id {
        return Err(PeerDecodeError::ForeignCluster {
            expected: cluster_id,
            found,
        });
    }
    decode_message_bytes(&bytes.slice(PEER_HEADER_SIZE..)).map_err(PeerDecodeError::Message)
}

#[cfg(test)]
mod tests {
    use synod_core::{NodeId, Term};
    use synod_raft::MessageBody;

    use super::*;

    fn message() -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::TimeoutNow,
        }
    }

    #[test]
    fn a_message_round_trips_within_its_cluster() {
        // Checks the envelope: the cluster id first, then the message, decoded back whole.
        let bytes = encode_peer_message(7, &message());
        assert_eq!(&bytes[..8], &7u64.to_le_bytes());
        assert_eq!(decode_peer_message(7, &bytes), Ok(message()));
    }

    #[test]
    fn a_message_from_another_cluster_or_cut_short_is_refused_with_the_reason() {
        // Checks that a stranger's message is refused naming both clusters, and that short
        // or undecodable bytes are refused rather than panicking.
        let bytes = encode_peer_message(8, &message());
        assert_eq!(
            decode_peer_message(7, &bytes).unwrap_err().to_string(),
            "peer message from cluster 8, but this node belongs to cluster 7"
        );
        let short = Bytes::from_static(b"abc");
        assert_eq!(
            decode_peer_message(7, &short),
            Err(PeerDecodeError::Truncated { size: 3 })
        );
        let garbage = Bytes::from([7u64.to_le_bytes().to_vec(), vec![0xff; 5]].concat());
        assert!(matches!(
            decode_peer_message(7, &garbage),
            Err(PeerDecodeError::Message(_))
        ));
    }
}
