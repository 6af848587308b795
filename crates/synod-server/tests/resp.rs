//! The RESP codec: exact reply bytes in both versions, request parsing (multibulk, inline,
//! pipelined, split anywhere), Redis's error texts, and property tests that replies round-trip
//! and that no input panics either parser.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use synod_server::{
    ProtocolVersion, Reply, ReplyParser, RequestParser, RespError, RespLimits, encode,
};

fn encoded(reply: &Reply, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(reply, version, &mut out);
    out.to_vec()
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

/// Parses every command in `input`, given in one piece; panics on an error.
fn parse_all(input: &[u8]) -> Vec<Vec<Bytes>> {
    let mut parser = RequestParser::new(RespLimits::default());
    let mut buffer = BytesMut::from(input);
    let mut commands = Vec::new();
    while let Some(command) = parser.feed(&mut buffer).unwrap() {
        commands.push(command);
    }
    commands
}

/// The error the first command in `input` gives, with `limits`.
fn request_error(input: &[u8], limits: RespLimits) -> String {
    let mut parser = RequestParser::new(limits);
    let mut buffer = BytesMut::from(input);
    parser.feed(&mut buffer).unwrap_err().to_string()
}

#[test]
fn every_reply_encodes_to_exact_bytes_in_both_versions() {
    // Checks the exact RESP2 and RESP3 bytes of every reply kind, nulls included.
    let verbatim = Reply::Verbatim {
        format: *b"txt",
        text: Bytes::from_static(b"hi"),
    };
    let table: Vec<(Reply, &[u8], &[u8])> = vec![
        (Reply::Simple("OK".into()), b"+OK\r\n", b"+OK\r\n"),
        (Reply::Simple("a\r\nb".into()), b"+a  b\r\n", b"+a  b\r\n"),
        (
            Reply::Error("ERR no".into()),
            b"-ERR no\r\n",
            b"-ERR no\r\n",
        ),
        (Reply::Integer(-42), b":-42\r\n", b":-42\r\n"),
        (bulk("hey"), b"$3\r\nhey\r\n", b"$3\r\nhey\r\n"),
        (bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (Reply::Bulk(None), b"$-1\r\n", b"_\r\n"),
        (Reply::Array(None), b"*-1\r\n", b"_\r\n"),
        (Reply::Array(Some(vec![])), b"*0\r\n", b"*0\r\n"),
        (
            Reply::Array(Some(vec![Reply::Integer(1), bulk("a")])),
            b"*2\r\n:1\r\n$1\r\na\r\n",
            b"*2\r\n:1\r\n$1\r\na\r\n",
        ),
        (
            Reply::Map(vec![
                (bulk("k"), Reply::Integer(1)),
                (bulk("j"), Reply::Null),
            ]),
            b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n$-1\r\n",
            b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n_\r\n",
        ),
        (
            Reply::Set(vec![Reply::Integer(7)]),
            b"*1\r\n:7\r\n",
            b"~1\r\n:7\r\n",
        ),
        (Reply::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (Reply::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
        (
            Reply::Double(f64::NEG_INFINITY),
            b"$4\r\n-inf\r\n",
            b",-inf\r\n",
        ),
        (Reply::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n"),
        (Reply::Double(1e300), b"$5\r\n1e300\r\n", b",1e300\r\n"),
        (Reply::Boolean(true), b":1\r\n", b"#t\r\n"),
        (Reply::Boolean(false), b":0\r\n", b"#f\r\n"),
        (Reply::Null, b"$-1\r\n", b"_\r\n"),
        (verbatim, b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n"),
        (
            Reply::Push(vec![bulk("message"), Reply::Integer(3)]),
            b"*2\r\n$7\r\nmessage\r\n:3\r\n",
            b">2\r\n$7\r\nmessage\r\n:3\r\n",
        ),
    ];
    for (reply, resp2, resp3) in table {
        let (got2, got3) = (
            encoded(&reply, ProtocolVersion::Resp2),
            encoded(&reply, ProtocolVersion::Resp3),
        );
        assert_eq!(
            got2,
            resp2,
            "RESP2 of {reply:?}: {:?}",
            got2.escape_ascii().to_string()
        );
        assert_eq!(
            got3,
            resp3,
            "RESP3 of {reply:?}: {:?}",
            got3.escape_ascii().to_string()
        );
    }
}

#[test]
fn multibulk_and_inline_commands_parse_in_order() {
    // Checks a pipeline of multibulk and inline commands, with empty commands skipped.
    let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\n*-1\r\nPING\r\n\r\n  SET  a\tb \r\nECHO x\n\
                  *1\r\n$0\r\n\r\n";
    let commands = parse_all(input);
    assert_eq!(
        commands,
        vec![
            args(&["GET", "k"]),
            args(&["PING"]),
            args(&["SET", "a", "b"]),
            args(&["ECHO", "x"]),
            args(&[""]),
        ]
    );
}

#[test]
fn binary_arguments_keep_their_bytes() {
    // Checks that bulk arguments may hold CR, LF and non-UTF-8 bytes.
    let commands = parse_all(b"*2\r\n$3\r\nSET\r\n$4\r\n\r\n\xff\x00\r\n");
    assert_eq!(
        commands,
        vec![vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"\r\n\xff\x00")
        ]]
    );
}

#[test]
fn pipelined_commands_split_at_every_boundary_parse_the_same() {
    // Checks that cutting a pipeline into two pieces anywhere, or feeding it one byte at a
    // time, gives the same commands and leaves nothing behind.
    let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nv\r\nlu\r\nPING\r\n\
                         *1\r\n$4\r\nPING\r\nECHO  hi\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
    let expected = parse_all(input);
    assert_eq!(expected.len(), 5);
    for cut in 0..=input.len() {
        let mut parser = RequestParser::new(RespLimits::default());
        let mut buffer = BytesMut::new();
        let mut commands = Vec::new();
        for piece in [&input[..cut], &input[cut..]] {
            buffer.extend_from_slice(piece);
            while let Some(command) = parser.feed(&mut buffer).unwrap() {
                commands.push(command);
            }
        }
        assert_eq!(commands, expected, "cut at byte {cut}");
        assert!(buffer.is_empty(), "cut at byte {cut}");
    }
    let mut parser = RequestParser::new(RespLimits::default());
    let mut buffer = BytesMut::new();
    let mut commands = Vec::new();
    for &byte in input {
        buffer.extend_from_slice(&[byte]);
        while let Some(command) = parser.feed(&mut buffer).unwrap() {
            commands.push(command);
        }
    }
    assert_eq!(commands, expected);
}

#[test]
fn incomplete_command_stays_in_the_buffer() {
    // Checks that a partial command returns None and leaves its bytes in place.
    let mut parser = RequestParser::new(RespLimits::default());
    let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\n"[..]);
    assert_eq!(parser.feed(&mut buffer).unwrap(), None);
    assert_eq!(&buffer[..], b"*2\r\n$3\r\nGET\r\n$1\r\n");
    buffer.extend_from_slice(b"k\r\n");
    assert_eq!(parser.feed(&mut buffer).unwrap(), Some(args(&["GET", "k"])));
    assert!(buffer.is_empty());
}

#[test]
fn request_errors_say_what_was_wrong_like_redis() {
    // Checks the text of every request error, each limit refused before the data arrives.
    let small = RespLimits {
        arguments_max: 4,
        bulk_size_max: 10,
        inline_size_max: 16,
        ..RespLimits::default()
    };
    let table: Vec<(&[u8], &str)> = vec![
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*5\r\n", "Protocol error: invalid multibulk length"),
        (b"*+1\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$11\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$1x\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$1\r\nab\r\n",
            "Protocol error: expected CRLF after bulk data",
        ),
        (
            b"PING PING PING PING",
            "Protocol error: too big inline request",
        ),
        (
            b"*11111111111111111",
            "Protocol error: too big mbulk count string",
        ),
        (
            b"*1\r\n$1111111111111111111",
            "Protocol error: too big bulk count string",
        ),
        (b"*1\rx", "Protocol error: expected '\\n' after '\\r'"),
    ];
    for (input, message) in table {
        let got = request_error(input, small);
        assert_eq!(got, message, "input {:?}", input.escape_ascii().to_string());
    }
    let overflow = request_error(b"*99999999999999999999\r\n", RespLimits::default());
    assert_eq!(overflow, "Protocol error: invalid multibulk length");
}

#[test]
fn parser_recovers_state_after_an_error() {
    // Checks that a parser given a fresh buffer after an error parses normally.
    let mut parser = RequestParser::new(RespLimits::default());
    let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nGET\r\nx"[..]);
    assert_eq!(
        parser.feed(&mut buffer),
        Err(RespError::BulkPrefixExpected { got: 'x' })
    );
    let mut buffer = BytesMut::from(&b"PING\r\n"[..]);
    assert_eq!(parser.feed(&mut buffer).unwrap(), Some(args(&["PING"])));
}

#[test]
fn reply_parser_reads_resp2_nulls_attributes_and_big_numbers() {
    // Checks RESP2 nulls, a dropped attribute, a blob error and a big number.
    let mut parser = ReplyParser::new(RespLimits::default());
    let input = b"$-1\r\n*-1\r\n|1\r\n+ttl\r\n:3\r\n:5\r\n!3\r\nERR\r\n(123\r\n";
    let mut buffer = BytesMut::from(&input[..]);
    let mut replies = Vec::new();
    while let Some(reply) = parser.feed(&mut buffer).unwrap() {
        replies.push(reply);
    }
    let expected = vec![
        Reply::Bulk(None),
        Reply::Array(None),
        Reply::Integer(5),
        Reply::Error("ERR".into()),
        bulk("123"),
    ];
    assert_eq!(replies, expected);
}

#[test]
fn reply_parser_refuses_what_exceeds_its_limits() {
    // Checks the errors for a too-deep reply, a too-long aggregate and a too-big bulk.
    let limits = RespLimits {
        arguments_max: 2,
        bulk_size_max: 3,
        aggregate_depth_max: 2,
        ..RespLimits::default()
    };
    let table: Vec<(&[u8], RespError)> = vec![
        (
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            RespError::AggregateTooDeep {
                aggregate_depth_max: 2,
            },
        ),
        (b"*3\r\n", RespError::AggregateLengthInvalid),
        (b"$4\r\n", RespError::BulkLengthInvalid),
        (b"?\r\n", RespError::ReplyTypeUnknown { got: '?' }),
        (b"$?\r\n", RespError::StreamedUnsupported),
        (b"#x\r\n", RespError::BooleanInvalid),
    ];
    for (input, error) in table {
        let mut parser = ReplyParser::new(limits);
        let mut buffer = BytesMut::from(input);
        assert_eq!(parser.feed(&mut buffer), Err(error), "{input:?}");
    }
}

/// Random RESP3 replies that parse back equal: no NaN (it is not equal to itself), no null
/// bulk or array (RESP3 sends both as `_`, which parses as `Null`), no CR or LF in lines.
fn reply_strategy() -> impl Strategy<Value = Reply> {
    let line = "[a-zA-Z0-9 :_-]{0,12}";
    let leaf = prop_oneof![
        line.prop_map(Reply::Simple),
        line.prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|data| Reply::Bulk(Some(Bytes::from(data)))),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |value| !value.is_nan())
            .prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Boolean),
        Just(Reply::Null),
        (
            any::<[u8; 3]>(),
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(format, text)| Reply::Verbatim {
                format,
                text: Bytes::from(text),
            }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..6);
        prop_oneof![
            items.clone().prop_map(|items| Reply::Array(Some(items))),
            items.clone().prop_map(Reply::Set),
            items.prop_map(Reply::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Reply::Map),
        ]
    })
}

/// Runs a parser over all of `input` until it needs more bytes or fails.
fn drain_replies(input: &[u8], limits: RespLimits) {
    let mut parser = ReplyParser::new(limits);
    let mut buffer = BytesMut::from(input);
    while let Ok(Some(_)) = parser.feed(&mut buffer) {}
}

fn drain_requests(input: &[u8], limits: RespLimits) {
    let mut parser = RequestParser::new(limits);
    let mut buffer = BytesMut::from(input);
    while let Ok(Some(_)) = parser.feed(&mut buffer) {}
}

/// Pipelines of line ends and short runs of type bytes, digits and signs.
fn resp_shaped_bytes() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let piece = prop_oneof![
        Just(b"\r\n".to_vec()),
        "[-*$%~>|_#,:+=!(?0-9tf]{1,4}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..40)
}

// Failures are shrunk and saved under proptest-regressions/; rerun with
// `cargo test -p synod-server --test resp`, or set PROPTEST_RNG_SEED to replay a seed.
proptest! {
    #[test]
    fn resp3_replies_round_trip(replies in proptest::collection::vec(reply_strategy(), 1..4)) {
        // Checks that encoded RESP3 replies, pipelined and fed in two pieces, parse back equal.
        let mut wire = BytesMut::new();
        for reply in &replies {
            encode(reply, ProtocolVersion::Resp3, &mut wire);
        }
        let wire = wire.to_vec();
        for cut in [0, wire.len() / 2, wire.len()] {
            let mut parser = ReplyParser::new(RespLimits::default());
            let mut buffer = BytesMut::from(&wire[..cut]);
            let mut parsed = Vec::new();
            while let Some(reply) = parser.feed(&mut buffer).unwrap() {
                parsed.push(reply);
            }
            buffer.extend_from_slice(&wire[cut..]);
            while let Some(reply) = parser.feed(&mut buffer).unwrap() {
                parsed.push(reply);
            }
            prop_assert_eq!(&parsed, &replies);
            prop_assert!(buffer.is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_either_parser(
        input in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        // Checks that neither parser panics on any bytes, with default and tiny limits.
        let tiny = RespLimits {
            arguments_max: 2,
            bulk_size_max: 4,
            inline_size_max: 8,
            aggregate_depth_max: 2,
        };
        for limits in [RespLimits::default(), tiny] {
            drain_requests(&input, limits);
            drain_replies(&input, limits);
        }
    }

    #[test]
    fn resp_shaped_bytes_never_panic_either_parser(input in resp_shaped_bytes()) {
        // Checks protocol-looking input, which reaches deeper than random bytes, never panics.
        let input = input.concat();
        drain_requests(&input, RespLimits::default());
        drain_replies(&input, RespLimits::default());
    }
}
