//! Fuzzes the RESP request and reply parsers: any bytes, whole or cut in two, must parse to
//! commands, replies, "need more bytes" or an error, never a panic; and every reply that
//! parses must encode and parse back to itself (NaN doubles aside, which are not equal).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use synod_server::{ProtocolVersion, Reply, ReplyParser, RequestParser, RespLimits, encode};

const TINY: RespLimits = RespLimits {
    arguments_max: 3,
    bulk_size_max: 8,
    inline_size_max: 16,
    aggregate_depth_max: 3,
};

/// Feeds `pieces` one after another to a request parser, taking every command it can.
fn drain_requests(pieces: &[&[u8]], limits: RespLimits) {
    let mut parser = RequestParser::new(limits);
    let mut buffer = BytesMut::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match parser.feed(&mut buffer) {
                Ok(Some(command)) => assert!(!command.is_empty(), "empty commands are skipped"),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Feeds `pieces` to a reply parser; every reply must survive a RESP3 round trip.
fn drain_replies(pieces: &[&[u8]], limits: RespLimits) {
    let mut parser = ReplyParser::new(limits);
    let mut buffer = BytesMut::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match parser.feed(&mut buffer) {
                Ok(Some(reply)) => check_round_trip(&reply),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn check_round_trip(reply: &Reply) {
    let mut wire = BytesMut::new();
    encode(reply, ProtocolVersion::Resp3, &mut wire);
    // Default limits, not the ones the input met: a double's canonical text may be longer
    // than the text it was parsed from (`1e-20` comes back as twenty-odd digits).
    let again = ReplyParser::new(RespLimits::default())
        .feed(&mut wire)
        .expect("an encoded reply parses")
        .expect("an encoded reply is whole");
    assert!(wire.is_empty(), "the parser takes the whole encoded reply");
    let mut first = BytesMut::new();
    encode(reply, ProtocolVersion::Resp3, &mut first);
    let mut second = BytesMut::new();
    encode(&again, ProtocolVersion::Resp3, &mut second);
    // Bytes, not values, are compared: NaN is not equal to itself, and RESP3 sends null
    // bulks and arrays as `_`, but the second encoding must equal the first.
    assert_eq!(first, second, "a reply survives a RESP3 round trip");
}

fuzz_target!(|data: &[u8]| {
    let cut = data
        .first()
        .map_or(0, |&byte| usize::from(byte))
        .min(data.len());
    for limits in [RespLimits::default(), TINY] {
        drain_requests(&[data], limits);
        drain_requests(&[&data[..cut], &data[cut..]], limits);
        drain_replies(&[data], limits);
        drain_replies(&[&data[..cut], &data[cut..]], limits);
    }
});
