//! Fuzzes every decoder a peer or client reaches over the network: Raft messages and log
//! entries, the client protocol, and state-machine commands. Any bytes must decode to an
//! error or to a value that re-encodes to exactly the same bytes (the encodings are
//! canonical), and nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use synod_kv::Command;
use synod_node::client::{ClientRequest, ClientResponse};
use synod_raft::codec::{decode_entry, decode_message, encode_entry, encode_message};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_message(data) {
        let mut again = Vec::new();
        encode_message(&message, &mut again);
        assert_eq!(again, data, "a Raft message re-encodes differently");
    }
    if let Ok(entry) = decode_entry(data) {
        let mut again = Vec::new();
        encode_entry(&entry, &mut again);
        assert_eq!(again, data, "a log entry re-encodes differently");
    }
    if let Ok(request) = ClientRequest::decode(data) {
        assert_eq!(request.encode().as_ref(), data, "a client request re-encodes differently");
    }
    if let Ok(response) = ClientResponse::decode(data) {
        assert_eq!(response.encode().as_ref(), data, "a client response re-encodes differently");
    }
    if let Ok(command) = Command::decode(data) {
        let _ = command.encode();
    }
});
