//! Tests of the command layer: exact replies and plans for every command, MULTI/EXEC/WATCH
//! and session flows through `plan` and `finish` with fabricated answers, SCAN paging, the
//! glob matcher, RESP2 and RESP3 reply shapes, and a proptest that `plan` never panics.

use bytes::BytesMut;
use proptest::prelude::*;
use synod_kv::RangeEntry;

use super::*;
use crate::resp::encode;
use crate::status::{FollowerStatus, MemberEndpoints};

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

fn connection() -> Connection {
    Connection::new(7, CommandConfig::default())
}

/// Plans `words` and expects an immediate reply.
fn reply(connection: &mut Connection, words: &[&str]) -> Reply {
    match connection.plan(args(words)) {
        Plan::Reply(reply) => reply,
        other => panic!("{words:?} planned {other:?}, not a reply"),
    }
}

fn err(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
}

fn array(items: Vec<Reply>) -> Reply {
    Reply::Array(Some(items))
}

fn key(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn versioned(value: &str, mod_revision: u64) -> VersionedValue {
    VersionedValue {
        value: key(value),
        create_revision: 1,
        mod_revision,
        version: 1,
    }
}

fn encoded(reply: &Reply, version: ProtocolVersion) -> String {
    let mut out = BytesMut::new();
    encode(reply, version, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Plans `words` and expects a write: its command and continuation.
fn write_plan(connection: &mut Connection, words: &[&str]) -> (Command, Then) {
    match connection.plan(args(words)) {
        Plan::Write { command, then } => (command, then),
        other => panic!("{words:?} planned {other:?}, not a write"),
    }
}

/// Plans `words` and expects a read: its ops, level and continuation.
fn read_plan(connection: &mut Connection, words: &[&str]) -> (Vec<Operation>, ReadLevel, Then) {
    match connection.plan(args(words)) {
        Plan::Read { ops, level, then } => (ops, level, then),
        other => panic!("{words:?} planned {other:?}, not a read"),
    }
}

fn status_plan_of(connection: &mut Connection, words: &[&str]) -> Then {
    match connection.plan(args(words)) {
        Plan::Status { then } => then,
        other => panic!("{words:?} planned {other:?}, not a status request"),
    }
}

fn written(response: Response) -> Done {
    Done::Written(Ok(Written {
        response,
        term: 3,
        index: 42,
    }))
}

fn read_done(response: Response) -> ReadDone {
    ReadDone {
        response,
        applied_index: 40,
        staleness_ms: None,
    }
}

fn value_done(value: Option<VersionedValue>) -> ReadDone {
    read_done(Response::Value { revision: 9, value })
}

fn values_done(values: &[Option<&str>]) -> Done {
    let dones = values
        .iter()
        .map(|value| value_done(value.map(|value| versioned(value, 5))))
        .collect();
    Done::Read(Ok(dones))
}

fn range_done(keys: &[&str], more: bool) -> Done {
    let entries = keys
        .iter()
        .map(|name| RangeEntry {
            key: key(name),
            value: versioned("v", 2),
        })
        .collect();
    Done::Read(Ok(vec![read_done(Response::Range {
        revision: 9,
        entries,
        more,
    })]))
}

fn get(name: &str) -> Operation {
    Operation::Get {
        key: key(name),
        revision: None,
    }
}

fn put(name: &str, value: &str, condition: PutCondition, return_previous: bool) -> Operation {
    Operation::Put {
        key: key(name),
        value: key(value),
        condition,
        return_previous,
    }
}

fn txn_put(name: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key(name),
        value: key(value),
    }
}

fn put_response(written: bool, previous: Option<&str>) -> Response {
    Response::Put {
        revision: 9,
        written,
        previous: previous.map(|value| versioned(value, 4)),
    }
}

fn status_fixture(role: &str) -> NodeStatus {
    NodeStatus {
        node: 2,
        cluster_id: 77,
        role: role.to_owned(),
        term: 5,
        leader: Some(1),
        commit_index: 100,
        applied_index: 99,
        last_log_index: 101,
        first_log_index: 10,
        snapshot_index: 9,
        voters: vec![1, 2, 3],
        learners: vec![4],
        followers: vec![FollowerStatus {
            node: 3,
            voter: true,
            lag_entries: 1,
            lag_bytes: 30,
            lag_ms: 4,
            active: true,
        }],
        leader_contact_ms: Some(12),
        clock_skew_ppm_max: 0,
        lease_suspended_by_skew: false,
        degraded: None,
        keys: 1234,
        revision: 500,
        sessions: 6,
        uptime_ms: 90_061_000,
        connected_clients: 8,
        resp_address: "10.0.0.2:6379".to_owned(),
        http_address: "10.0.0.2:8080".to_owned(),
        peer_address: "10.0.0.2:7000".to_owned(),
        members: vec![MemberEndpoints {
            node: 1,
            resp_address: "10.0.0.1:6380".to_owned(),
            http_address: "10.0.0.1:8080".to_owned(),
        }],
    }
}

#[test]
fn connection_commands_reply_at_once_with_redis_texts() {
    // Checks the exact replies of the commands that need no node: PING, ECHO, SELECT,
    // CLIENT, unknown commands and arity errors, in any case.
    let mut c = connection();
    let table: Vec<(Vec<&str>, Reply)> = vec![
        (vec!["PING"], Reply::Simple("PONG".into())),
        (vec!["ping", "hi"], bulk("hi")),
        (
            vec!["ping", "a", "b"],
            err("ERR wrong number of arguments for 'ping' command"),
        ),
        (vec!["EcHo", ""], bulk("")),
        (
            vec!["echo"],
            err("ERR wrong number of arguments for 'echo' command"),
        ),
        (vec!["SELECT", "0"], Reply::Simple("OK".into())),
        (vec!["SELECT", "1"], err("ERR DB index is out of range")),
        (
            vec!["SELECT", "x"],
            err("ERR value is not an integer or out of range"),
        ),
        (vec!["CLIENT", "ID"], Reply::Integer(7)),
        (vec!["client", "getname"], Reply::Bulk(None)),
        (vec!["CLIENT", "SETNAME", "app"], Reply::Simple("OK".into())),
        (vec!["CLIENT", "GETNAME"], bulk("app")),
        (
            vec!["CLIENT", "SETNAME", "a b"],
            err("ERR Client names cannot contain spaces, newlines or special characters."),
        ),
        (
            vec!["CLIENT", "SETINFO", "LIB-NAME", "redis-py"],
            Reply::Simple("OK".into()),
        ),
        (
            vec!["CLIENT", "SETINFO", "LIB-VER", "5.0.1"],
            Reply::Simple("OK".into()),
        ),
        (
            vec!["CLIENT", "SETINFO", "color", "red"],
            err("ERR Unrecognized option 'color'"),
        ),
        (
            vec!["CLIENT", "GETNAME", "x"],
            err("ERR wrong number of arguments for 'client|getname' command"),
        ),
        (
            vec!["CLIENT", "KILL"],
            err("ERR unknown subcommand 'KILL'. Try CLIENT HELP."),
        ),
        (
            vec!["client"],
            err("ERR wrong number of arguments for 'client' command"),
        ),
        (
            vec!["foo", "a", "b"],
            err("ERR unknown command 'foo', with args beginning with: 'a' 'b' "),
        ),
        (
            vec!["foo"],
            err("ERR unknown command 'foo', with args beginning with: "),
        ),
        (
            vec!["get"],
            err("ERR wrong number of arguments for 'get' command"),
        ),
        (
            vec!["GET", "a", "b"],
            err("ERR wrong number of arguments for 'get' command"),
        ),
        (
            vec!["set", "a"],
            err("ERR wrong number of arguments for 'set' command"),
        ),
        (
            vec!["mset", "a", "1", "b"],
            err("ERR wrong number of arguments for 'mset' command"),
        ),
        (
            vec!["del"],
            err("ERR wrong number of arguments for 'del' command"),
        ),
        (
            vec!["incrby", "a"],
            err("ERR wrong number of arguments for 'incrby' command"),
        ),
        (
            vec!["synod.cas", "k", "v"],
            err("ERR wrong number of arguments for 'synod.cas' command"),
        ),
        (
            vec!["AUTH", "pw"],
            err(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            ),
        ),
        (
            vec!["AUTH", "default", "anything"],
            Reply::Simple("OK".into()),
        ),
        (
            vec!["AUTH", "alice", "pw"],
            err("WRONGPASS invalid username-password pair or user is disabled."),
        ),
        (vec!["AUTH", "a", "b", "c"], err("ERR syntax error")),
    ];
    for (words, expected) in table {
        assert_eq!(reply(&mut c, &words), expected, "{words:?}");
    }
    assert_eq!(
        c.plan(args(&["QUIT"])),
        Plan::Close(Reply::Simple("OK".into()))
    );
    let info = reply(&mut c, &["CLIENT", "INFO"]);
    assert_eq!(
        info,
        bulk(
            "id=7 name=app db=0 multi=-1 watch=0 resp=2 lib-name=redis-py lib-ver=5.0.1 \
             read-level=linearizable\n"
        )
    );
}

#[test]
fn unknown_command_errors_quote_any_bytes_and_stay_bounded() {
    // Checks that non-UTF-8 and very long arguments give a bounded error text, not a panic.
    let mut c = connection();
    let long = "x".repeat(500);
    let Reply::Error(text) = reply(&mut c, &["nope", &long, "b"]) else {
        panic!("not an error");
    };
    assert!(text.starts_with("ERR unknown command 'nope', with args beginning with: 'xxx"));
    assert!(text.len() < 200, "{}", text.len());
    let plan = c.plan(vec![Bytes::from_static(b"\xff\xfe"), Bytes::new()]);
    assert_eq!(
        plan,
        Plan::Reply(err(
            "ERR unknown command '\u{fffd}\u{fffd}', with args beginning with: '' "
        ))
    );
}

#[test]
fn a_password_gates_every_command_but_auth_hello_and_quit() {
    // Checks NOAUTH before AUTH, WRONGPASS, that AUTH and HELLO AUTH unlock the connection,
    // and that HELLO without AUTH is refused with Redis's text.
    let config = CommandConfig {
        password: Some("sesame".to_owned()),
        ..CommandConfig::default()
    };
    let mut c = Connection::new(1, config.clone());
    assert_eq!(
        reply(&mut c, &["GET", "k"]),
        err("NOAUTH Authentication required.")
    );
    assert_eq!(
        reply(&mut c, &["PING"]),
        err("NOAUTH Authentication required.")
    );
    let Reply::Error(hello) = reply(&mut c, &["HELLO", "3"]) else {
        panic!("HELLO before AUTH succeeded");
    };
    assert!(hello.starts_with("NOAUTH HELLO must be called with the client already"));
    assert_eq!(c.protocol(), ProtocolVersion::Resp2);
    assert_eq!(
        reply(&mut c, &["AUTH", "wrong"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        reply(&mut c, &["AUTH", "bob", "sesame"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        c.plan(args(&["QUIT"])),
        Plan::Close(Reply::Simple("OK".into()))
    );
    assert_eq!(
        reply(&mut c, &["AUTH", "sesame"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(reply(&mut c, &["PING"]), Reply::Simple("PONG".into()));

    let mut c = Connection::new(2, config);
    let hello = reply(&mut c, &["HELLO", "3", "AUTH", "default", "sesame"]);
    assert!(matches!(hello, Reply::Map(_)));
    assert_eq!(c.protocol(), ProtocolVersion::Resp3);
    assert_eq!(reply(&mut c, &["PING"]), Reply::Simple("PONG".into()));
}

#[test]
fn hello_switches_the_protocol_and_replies_a_map_in_either_shape() {
    // Checks HELLO's reply fields, its RESP2 (flat array) and RESP3 (map) encodings,
    // SETNAME, and its errors for bad versions and options.
    let mut c = connection();
    let version = env!("CARGO_PKG_VERSION");
    let expected = |proto: i64| {
        Reply::Map(vec![
            (bulk("server"), bulk("synod")),
            (bulk("version"), bulk(version)),
            (bulk("proto"), Reply::Integer(proto)),
            (bulk("id"), Reply::Integer(7)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("master")),
            (bulk("modules"), array(Vec::new())),
        ])
    };
    let hello = reply(&mut c, &["HELLO"]);
    assert_eq!(hello, expected(2));
    let resp2 = encoded(&hello, c.protocol());
    assert!(
        resp2.starts_with("*14\r\n$6\r\nserver\r\n$5\r\nsynod\r\n"),
        "{resp2}"
    );
    let hello = reply(&mut c, &["hello", "3", "setname", "me"]);
    assert_eq!(hello, expected(3));
    assert_eq!(c.protocol(), ProtocolVersion::Resp3);
    assert!(encoded(&hello, c.protocol()).starts_with("%7\r\n$6\r\nserver\r\n"));
    assert_eq!(reply(&mut c, &["CLIENT", "GETNAME"]), bulk("me"));
    assert_eq!(
        reply(&mut c, &["HELLO", "4"]),
        err("NOPROTO unsupported protocol version")
    );
    assert_eq!(
        reply(&mut c, &["HELLO", "x"]),
        err("ERR Protocol version is not an integer or out of range")
    );
    assert_eq!(
        reply(&mut c, &["HELLO", "2", "AUTH", "default"]),
        err("ERR Syntax error in HELLO option 'AUTH'")
    );
    assert_eq!(c.protocol(), ProtocolVersion::Resp3);
    assert_eq!(reply(&mut c, &["HELLO", "2"]), expected(2));
}

#[test]
fn command_lists_each_command_for_redis_cli() {
    // Checks COMMAND, COMMAND COUNT, COMMAND INFO and COMMAND DOCS reply shapes.
    let mut c = connection();
    let count = COMMANDS.len() as i64;
    assert_eq!(reply(&mut c, &["COMMAND", "COUNT"]), Reply::Integer(count));
    let Reply::Array(Some(all)) = reply(&mut c, &["COMMAND"]) else {
        panic!("COMMAND is not an array");
    };
    assert_eq!(all.len() as i64, count);
    let get_entry = array(vec![
        bulk("get"),
        Reply::Integer(2),
        Reply::Set(vec![
            Reply::Simple("readonly".into()),
            Reply::Simple("fast".into()),
        ]),
        Reply::Integer(1),
        Reply::Integer(1),
        Reply::Integer(1),
    ]);
    assert!(all.contains(&get_entry));
    assert_eq!(
        reply(&mut c, &["COMMAND", "INFO", "GET", "nope"]),
        array(vec![get_entry, Reply::Array(None)])
    );
    assert_eq!(reply(&mut c, &["COMMAND", "DOCS"]), Reply::Map(Vec::new()));
    assert_eq!(
        reply(&mut c, &["COMMAND", "FOO"]),
        err("ERR unknown subcommand 'FOO'. Try COMMAND HELP.")
    );
}

#[test]
fn writes_plan_their_operation_and_reply_from_the_response() {
    // Checks, for each write command, the exact operation planned and the reply built from
    // a fabricated response.
    let ok = Reply::Simple("OK".into());
    let table: Vec<(Vec<&str>, Operation, Response, Reply)> = vec![
        (
            vec!["SET", "k", "v"],
            put("k", "v", PutCondition::Always, false),
            put_response(true, None),
            ok.clone(),
        ),
        (
            vec!["set", "k", "v", "nx"],
            put("k", "v", PutCondition::IfAbsent, false),
            put_response(false, None),
            Reply::Bulk(None),
        ),
        (
            vec!["SET", "k", "v", "XX", "GET"],
            put("k", "v", PutCondition::IfPresent, true),
            put_response(true, Some("old")),
            bulk("old"),
        ),
        (
            vec!["SETNX", "k", "v"],
            put("k", "v", PutCondition::IfAbsent, false),
            put_response(true, None),
            Reply::Integer(1),
        ),
        (
            vec!["GETSET", "k", "v"],
            put("k", "v", PutCondition::Always, true),
            put_response(true, None),
            Reply::Bulk(None),
        ),
        (
            vec!["DEL", "a", "b", "a"],
            Operation::Delete {
                keys: vec![key("a"), key("b"), key("a")],
            },
            Response::Deleted {
                revision: 9,
                count: 2,
            },
            Reply::Integer(2),
        ),
        (
            vec!["INCR", "n"],
            Operation::Incr {
                key: key("n"),
                delta: 1,
            },
            Response::Integer {
                revision: 9,
                value: 6,
            },
            Reply::Integer(6),
        ),
        (
            vec!["DECR", "n"],
            Operation::Incr {
                key: key("n"),
                delta: -1,
            },
            Response::Integer {
                revision: 9,
                value: -1,
            },
            Reply::Integer(-1),
        ),
        (
            vec!["INCRBY", "n", "-20"],
            Operation::Incr {
                key: key("n"),
                delta: -20,
            },
            Response::Integer {
                revision: 9,
                value: -20,
            },
            Reply::Integer(-20),
        ),
        (
            vec!["DECRBY", "n", "5"],
            Operation::Incr {
                key: key("n"),
                delta: -5,
            },
            Response::Integer {
                revision: 9,
                value: 1,
            },
            Reply::Integer(1),
        ),
        (
            vec!["APPEND", "k", "xy"],
            Operation::Append {
                key: key("k"),
                suffix: key("xy"),
            },
            Response::Length {
                revision: 9,
                length: 5,
            },
            Reply::Integer(5),
        ),
        (
            vec!["MSET", "a", "1", "b", "2", "a", "3"],
            Operation::Txn {
                compares: Vec::new(),
                success: vec![txn_put("a", "3"), txn_put("b", "2")],
                failure: Vec::new(),
            },
            Response::Txn {
                revision: 9,
                succeeded: true,
                results: vec![TxnResult::Put, TxnResult::Put],
            },
            ok.clone(),
        ),
        (
            vec!["MSETNX", "a", "1"],
            Operation::Txn {
                compares: vec![(key("a"), Compare::VersionEquals(0))],
                success: vec![txn_put("a", "1")],
                failure: Vec::new(),
            },
            Response::Txn {
                revision: 9,
                succeeded: false,
                results: Vec::new(),
            },
            Reply::Integer(0),
        ),
    ];
    for (words, op, response, expected) in table {
        let mut c = connection();
        let (command, then) = write_plan(&mut c, &words);
        assert_eq!(command, Command { session: None, op }, "{words:?}");
        assert_eq!(c.finish(then, written(response)), expected, "{words:?}");
    }
}

#[test]
fn write_arguments_are_checked_before_anything_is_sent() {
    // Checks SET's option errors (expiry, NX with XX, unknown), integer parsing for
    // INCRBY/DECRBY, and DECRBY's overflow.
    let mut c = connection();
    let no_expiry =
        err("ERR synod: keys cannot expire; EX, PX, EXAT, PXAT and KEEPTTL are not supported");
    let table: Vec<(Vec<&str>, Reply)> = vec![
        (vec!["SET", "k", "v", "EX", "10"], no_expiry.clone()),
        (vec!["SET", "k", "v", "keepttl"], no_expiry),
        (vec!["SET", "k", "v", "NX", "XX"], err("ERR syntax error")),
        (vec!["SET", "k", "v", "FOO"], err("ERR syntax error")),
        (
            vec!["INCRBY", "k", "1.5"],
            err("ERR value is not an integer or out of range"),
        ),
        (
            vec!["INCRBY", "k", "+1"],
            err("ERR value is not an integer or out of range"),
        ),
        (
            vec!["DECRBY", "k", "-9223372036854775808"],
            err("ERR decrement would overflow"),
        ),
        (
            vec!["SYNOD.CAS", "k", "FOO", "1", "v"],
            err("ERR syntax error"),
        ),
        (
            vec!["SYNOD.CAS", "k", "VERSION", "-1", "v"],
            err("ERR value is not an integer or out of range"),
        ),
    ];
    for (words, expected) in table {
        assert_eq!(reply(&mut c, &words), expected, "{words:?}");
    }
}

#[test]
fn store_and_service_errors_become_clear_replies() {
    // Checks the text of every kind of failure a write or read can meet.
    let cases: Vec<(Done, Reply)> = vec![
        (
            written(Response::Error(CommandError::NotAnInteger)),
            err("ERR value is not an integer or out of range"),
        ),
        (
            written(Response::Error(CommandError::IncrementOverflow)),
            err("ERR increment or decrement would overflow"),
        ),
        (
            written(Response::Error(CommandError::ValueTooLarge {
                size: 9,
                max: 4,
            })),
            err("ERR synod: value is 9 bytes, more than value_size_max (4)"),
        ),
        (
            Done::Written(Err(ServiceError::NoLeader {
                detail: "no leader is known (election in progress); retry".into(),
            })),
            err("TRYAGAIN synod: no leader is known (election in progress); retry"),
        ),
        (
            Done::Written(Err(ServiceError::Refused {
                reason: "the node is overloaded".into(),
            })),
            err("BUSY synod: the node is overloaded"),
        ),
        (
            Done::Written(Err(ServiceError::Refused {
                reason: "shutting down".into(),
            })),
            err("ERR synod: shutting down"),
        ),
        (
            Done::Written(Err(ServiceError::Unknown {
                reason: "leadership lost".into(),
            })),
            err(
                "ERR synod: the write entered the log but its outcome is unknown (leadership \
                 lost); it may or may not have taken effect; open a session with \
                 SYNOD.SESSION OPEN before writing so that a retry takes effect exactly once",
            ),
        ),
        (
            Done::Written(Err(ServiceError::Timeout { waited_ms: 500 })),
            err(
                "ERR synod: the write got no answer within 500 ms and its outcome is unknown; \
                 it may or may not have taken effect; open a session with SYNOD.SESSION OPEN \
                 before writing so that a retry takes effect exactly once",
            ),
        ),
        (
            Done::Written(Err(ServiceError::LeaderChanged {
                detail: "node 1, which had the request, no longer leads (node 2 does)".into(),
            })),
            err(
                "ERR synod: the leader changed before the write was answered and its outcome \
                 is unknown (node 1, which had the request, no longer leads (node 2 does)); it \
                 may or may not have taken effect; open a session with SYNOD.SESSION OPEN \
                 before writing so that a retry takes effect exactly once",
            ),
        ),
    ];
    for (done, expected) in cases {
        let mut c = connection();
        let (_, then) = write_plan(&mut c, &["INCR", "n"]);
        assert_eq!(c.finish(then, done), expected);
        assert_eq!(reply(&mut c, &["SYNOD.FENCE"]), Reply::Null);
    }
    let mut c = connection();
    let (_, _, then) = read_plan(&mut c, &["GET", "k"]);
    let done = Done::Read(Err(ServiceError::Timeout { waited_ms: 80 }));
    assert_eq!(
        c.finish(then, done),
        err("TRYAGAIN synod: the read got no answer within 80 ms; retry")
    );
    let (_, _, then) = read_plan(&mut c, &["GET", "k"]);
    let compacted = CommandError::Compacted {
        revision: 1,
        compacted: 5,
    };
    let done = Done::Read(Ok(vec![read_done(Response::Error(compacted))]));
    assert_eq!(
        c.finish(then, done),
        err(
            "ERR synod: revision 1 has been compacted (compacted up to 5): read at 5 or \
             later"
        )
    );
}

#[test]
fn reads_plan_gets_at_the_connection_level_and_reply_like_redis() {
    // Checks GET, MGET, EXISTS (a key named twice counts twice), STRLEN and TYPE: their
    // ops, their level, and their replies.
    let mut c = connection();
    let (ops, level, then) = read_plan(&mut c, &["GET", "k"]);
    assert_eq!((ops, level), (vec![get("k")], ReadLevel::Linearizable));
    assert_eq!(c.finish(then, values_done(&[Some("v")])), bulk("v"));
    let (_, _, then) = read_plan(&mut c, &["GET", "k"]);
    assert_eq!(c.finish(then, values_done(&[None])), Reply::Bulk(None));

    let (ops, _, then) = read_plan(&mut c, &["MGET", "a", "b"]);
    assert_eq!(ops, vec![get("a"), get("b")]);
    assert_eq!(
        c.finish(then, values_done(&[Some("1"), None])),
        array(vec![bulk("1"), Reply::Bulk(None)])
    );
    let (ops, _, then) = read_plan(&mut c, &["EXISTS", "a", "a", "b"]);
    assert_eq!(ops, vec![get("a"), get("a"), get("b")]);
    let done = values_done(&[Some("1"), Some("1"), None]);
    assert_eq!(c.finish(then, done), Reply::Integer(2));
    let (_, _, then) = read_plan(&mut c, &["STRLEN", "a"]);
    assert_eq!(
        c.finish(then, values_done(&[Some("hello")])),
        Reply::Integer(5)
    );
    let (_, _, then) = read_plan(&mut c, &["STRLEN", "a"]);
    assert_eq!(c.finish(then, values_done(&[None])), Reply::Integer(0));
    let (_, _, then) = read_plan(&mut c, &["TYPE", "a"]);
    assert_eq!(
        c.finish(then, values_done(&[Some("x")])),
        Reply::Simple("string".into())
    );
    let (_, _, then) = read_plan(&mut c, &["TYPE", "a"]);
    assert_eq!(
        c.finish(then, values_done(&[None])),
        Reply::Simple("none".into())
    );
}

#[test]
fn read_levels_staleness_and_synod_get() {
    // Checks SYNOD.READ-LEVEL, that reads use the chosen level, SYNOD.GET's reply and that
    // SYNOD.STALENESS reports the last read.
    let mut c = connection();
    assert_eq!(reply(&mut c, &["SYNOD.READ-LEVEL"]), bulk("linearizable"));
    assert_eq!(reply(&mut c, &["SYNOD.STALENESS"]), Reply::Null);
    assert_eq!(
        reply(&mut c, &["SYNOD.READ-LEVEL", "STALE"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(c.read_level(), ReadLevel::Stale);
    assert_eq!(reply(&mut c, &["synod.read-level"]), bulk("stale"));
    assert_eq!(
        reply(&mut c, &["SYNOD.READ-LEVEL", "eventual"]),
        err(
            "ERR synod: unknown read level 'eventual'; use linearizable, lease, follower or \
             stale"
        )
    );
    let stale = |value: Option<&str>| {
        Done::Read(Ok(vec![ReadDone {
            response: Response::Value {
                revision: 3,
                value: value.map(|value| versioned(value, 2)),
            },
            applied_index: 17,
            staleness_ms: Some(250),
        }]))
    };
    let (_, level, then) = read_plan(&mut c, &["GET", "k"]);
    assert_eq!(level, ReadLevel::Stale);
    assert_eq!(c.finish(then, stale(Some("v"))), bulk("v"));
    assert_eq!(
        reply(&mut c, &["SYNOD.STALENESS"]),
        array(vec![Reply::Integer(17), Reply::Integer(250)])
    );
    let (ops, _, then) = read_plan(&mut c, &["SYNOD.GET", "k"]);
    assert_eq!(ops, vec![get("k")]);
    assert_eq!(
        c.finish(then, stale(None)),
        array(vec![
            Reply::Bulk(None),
            Reply::Integer(17),
            Reply::Integer(250)
        ])
    );
    reply(&mut c, &["SYNOD.READ-LEVEL", "follower"]);
    let (_, _, then) = read_plan(&mut c, &["SYNOD.GET", "k"]);
    assert_eq!(
        c.finish(then, values_done(&[Some("v")])),
        array(vec![bulk("v"), Reply::Integer(40), Reply::Null])
    );
    assert_eq!(
        reply(&mut c, &["SYNOD.STALENESS"]),
        array(vec![Reply::Integer(40), Reply::Null])
    );
}

#[test]
fn synod_cas_compares_on_value_version_or_absence() {
    // Checks the three SYNOD.CAS forms (and the explicit VALUE form) and the reply
    // [1 or 0, current value].
    let table: Vec<(Vec<&str>, Compare)> = vec![
        (
            vec!["SYNOD.CAS", "k", "old", "new"],
            Compare::ValueEquals(Some(key("old"))),
        ),
        (
            vec!["SYNOD.CAS", "k", "absent", "new"],
            Compare::ValueEquals(None),
        ),
        (
            vec!["SYNOD.CAS", "k", "VERSION", "3", "new"],
            Compare::VersionEquals(3),
        ),
        (
            vec!["SYNOD.CAS", "k", "value", "ABSENT", "new"],
            Compare::ValueEquals(Some(key("ABSENT"))),
        ),
    ];
    for (words, compare) in table {
        let mut c = connection();
        let (command, _) = write_plan(&mut c, &words);
        let op = Operation::Cas {
            key: key("k"),
            compare,
            value: key("new"),
        };
        assert_eq!(command.op, op, "{words:?}");
    }
    let mut c = connection();
    let (_, then) = write_plan(&mut c, &["SYNOD.CAS", "k", "old", "new"]);
    let response = Response::Cas {
        revision: 9,
        succeeded: false,
        current: Some(versioned("other", 8)),
    };
    assert_eq!(
        c.finish(then, written(response)),
        array(vec![Reply::Integer(0), bulk("other")])
    );
    let (_, then) = write_plan(&mut c, &["SYNOD.CAS", "k", "absent", "new"]);
    let response = Response::Cas {
        revision: 10,
        succeeded: true,
        current: Some(versioned("new", 10)),
    };
    assert_eq!(
        c.finish(then, written(response)),
        array(vec![Reply::Integer(1), bulk("new")])
    );
    assert_eq!(
        reply(&mut c, &["SYNOD.FENCE"]),
        array(vec![Reply::Integer(3), Reply::Integer(42)])
    );
}

#[test]
fn multi_exec_becomes_one_transaction_with_one_reply_per_command() {
    // Checks that queued commands become one Txn (GETSET and SET GET read before they
    // write, DEL deletes each key once) and that EXEC's replies come from the results.
    let mut c = connection();
    let queued = Reply::Simple("QUEUED".into());
    assert_eq!(reply(&mut c, &["MULTI"]), Reply::Simple("OK".into()));
    for words in [
        vec!["SET", "a", "1"],
        vec!["GET", "a"],
        vec!["PING"],
        vec!["GETSET", "b", "2"],
        vec!["DEL", "c", "d", "c"],
        vec!["MGET", "a", "z"],
        vec!["MSET", "e", "5", "f", "6"],
        vec!["EXISTS", "a", "z", "a"],
        vec!["STRLEN", "a"],
        vec!["TYPE", "z"],
        vec!["SET", "g", "7", "GET"],
    ] {
        assert_eq!(reply(&mut c, &words), queued, "{words:?}");
    }
    let (command, then) = write_plan(&mut c, &["EXEC"]);
    let get_op = |name: &str| TxnOp::Get { key: key(name) };
    let delete = |name: &str| TxnOp::Delete { key: key(name) };
    let success = vec![
        txn_put("a", "1"),
        get_op("a"),
        get_op("b"),
        txn_put("b", "2"),
        delete("c"),
        delete("d"),
        get_op("a"),
        get_op("z"),
        txn_put("e", "5"),
        txn_put("f", "6"),
        get_op("a"),
        get_op("z"),
        get_op("a"),
        get_op("a"),
        get_op("z"),
        get_op("g"),
        txn_put("g", "7"),
    ];
    let expected = Operation::Txn {
        compares: Vec::new(),
        success,
        failure: Vec::new(),
    };
    assert_eq!(command.op, expected);
    let one = || TxnResult::Value(Some(versioned("1", 9)));
    let results = vec![
        TxnResult::Put,
        one(),
        TxnResult::Value(None),
        TxnResult::Put,
        TxnResult::Deleted { count: 1 },
        TxnResult::Deleted { count: 0 },
        one(),
        TxnResult::Value(None),
        TxnResult::Put,
        TxnResult::Put,
        one(),
        TxnResult::Value(None),
        one(),
        one(),
        TxnResult::Value(None),
        TxnResult::Value(Some(versioned("old", 3))),
        TxnResult::Put,
    ];
    let response = Response::Txn {
        revision: 9,
        succeeded: true,
        results,
    };
    let ok = Reply::Simple("OK".into());
    assert_eq!(
        c.finish(then, written(response)),
        array(vec![
            ok.clone(),
            bulk("1"),
            Reply::Simple("PONG".into()),
            Reply::Bulk(None),
            Reply::Integer(1),
            array(vec![bulk("1"), Reply::Bulk(None)]),
            ok,
            Reply::Integer(2),
            Reply::Integer(1),
            Reply::Simple("none".into()),
            bulk("old"),
        ])
    );
    assert_eq!(reply(&mut c, &["EXEC"]), err("ERR EXEC without MULTI"));
}

#[test]
fn multi_errors_match_redis_and_abort_exec() {
    // Checks nested MULTI, EXEC/DISCARD without MULTI, WATCH inside MULTI, and that a
    // refused command (unknown, wrong arity, not expressible in a Txn, a key written twice)
    // makes EXEC fail with EXECABORT.
    let mut c = connection();
    assert_eq!(
        reply(&mut c, &["DISCARD"]),
        err("ERR DISCARD without MULTI")
    );
    assert_eq!(reply(&mut c, &["EXEC"]), err("ERR EXEC without MULTI"));
    reply(&mut c, &["MULTI"]);
    assert_eq!(
        reply(&mut c, &["MULTI"]),
        err("ERR MULTI calls can not be nested")
    );
    assert_eq!(
        reply(&mut c, &["WATCH", "a"]),
        err("ERR WATCH inside MULTI is not allowed")
    );
    assert_eq!(reply(&mut c, &["EXEC"]), array(Vec::new()));

    let execabort = err("EXECABORT Transaction discarded because of previous errors.");
    let refusals: Vec<Vec<&str>> = vec![
        vec!["FOO"],
        vec!["GET"],
        vec!["INCR", "a"],
        vec!["SET", "a", "1", "NX"],
        vec!["SET", "a", "1", "EX", "5"],
        vec!["SELECT", "2"],
        vec!["SYNOD.SESSION", "OPEN"],
    ];
    for words in refusals {
        reply(&mut c, &["MULTI"]);
        assert_eq!(
            reply(&mut c, &["SET", "x", "1"]),
            Reply::Simple("QUEUED".into())
        );
        assert!(
            matches!(reply(&mut c, &words), Reply::Error(_)),
            "{words:?}"
        );
        assert_eq!(reply(&mut c, &["EXEC"]), execabort, "{words:?}");
    }
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["SET", "x", "1"]);
    assert_eq!(
        reply(&mut c, &["DEL", "x"]),
        err(
            "ERR synod: this transaction already writes key 'x'; a synod transaction writes \
             each key at most once"
        )
    );
    assert_eq!(reply(&mut c, &["EXEC"]), execabort);
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["SET", "x", "1"]);
    assert_eq!(reply(&mut c, &["DISCARD"]), Reply::Simple("OK".into()));
    assert!(matches!(
        c.plan(args(&["SET", "x", "1"])),
        Plan::Write { .. }
    ));
}

#[test]
fn multi_longer_than_the_key_limit_is_refused() {
    // Checks the per-command key limit on DEL, MGET and WATCH, and on a MULTI's total ops.
    let config = CommandConfig {
        keys_per_command_max: 3,
        ..CommandConfig::default()
    };
    let mut c = Connection::new(1, config);
    let too_many = err("ERR synod: 4 keys exceed keys_per_command_max (3); split the command");
    assert_eq!(reply(&mut c, &["DEL", "a", "b", "c", "d"]), too_many);
    assert_eq!(reply(&mut c, &["MGET", "a", "b", "c", "d"]), too_many);
    assert_eq!(reply(&mut c, &["WATCH", "a", "b", "c", "d"]), too_many);
    assert_eq!(
        reply(&mut c, &["MSET", "a", "1", "b", "2", "c", "3", "d", "4"]),
        too_many
    );
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["MGET", "a", "b"]);
    assert_eq!(
        reply(&mut c, &["MGET", "c", "d"]),
        err(
            "ERR synod: this transaction would hold more than keys_per_command_max (3) \
             operations; split it"
        )
    );
    assert_eq!(
        reply(&mut c, &["EXEC"]),
        err("EXECABORT Transaction discarded because of previous errors.")
    );
}

#[test]
fn watch_adds_mod_revision_compares_and_a_changed_key_gives_the_null_array() {
    // Checks that WATCH reads linearizably, that EXEC compares each watched key's mod
    // revision (0 when absent), and that a failed compare replies *-1 in RESP2 and _ in
    // RESP3; EXEC forgets the watches.
    for protocol in ["2", "3"] {
        let mut c = connection();
        reply(&mut c, &["HELLO", protocol]);
        reply(&mut c, &["SYNOD.READ-LEVEL", "stale"]);
        let (ops, level, then) = read_plan(&mut c, &["WATCH", "a", "b"]);
        assert_eq!(ops, vec![get("a"), get("b")]);
        assert_eq!(level, ReadLevel::Linearizable);
        let done = Done::Read(Ok(vec![
            value_done(Some(versioned("1", 12))),
            value_done(None),
        ]));
        assert_eq!(c.finish(then, done), Reply::Simple("OK".into()));
        reply(&mut c, &["MULTI"]);
        reply(&mut c, &["SET", "a", "2"]);
        let (command, then) = write_plan(&mut c, &["EXEC"]);
        let expected = Operation::Txn {
            compares: vec![
                (key("a"), Compare::ModRevisionEquals(12)),
                (key("b"), Compare::ModRevisionEquals(0)),
            ],
            success: vec![txn_put("a", "2")],
            failure: Vec::new(),
        };
        assert_eq!(command.op, expected);
        let response = Response::Txn {
            revision: 13,
            succeeded: false,
            results: Vec::new(),
        };
        let exec = c.finish(then, written(response));
        assert_eq!(exec, Reply::Array(None));
        let wire = encoded(&exec, c.protocol());
        assert_eq!(wire, if protocol == "2" { "*-1\r\n" } else { "_\r\n" });
        reply(&mut c, &["MULTI"]);
        reply(&mut c, &["SET", "a", "3"]);
        let (command, _) = write_plan(&mut c, &["EXEC"]);
        let Operation::Txn { compares, .. } = command.op else {
            panic!("EXEC is not a Txn");
        };
        assert!(compares.is_empty());
    }
}

#[test]
fn unwatch_and_discard_forget_watches_and_exec_waits_for_watch() {
    // Checks UNWATCH and DISCARD clear the watched keys, and that EXEC planned before
    // WATCH's answer is refused rather than run without the compare.
    let mut c = connection();
    let (_, _, then) = read_plan(&mut c, &["WATCH", "a"]);
    c.finish(then, values_done(&[Some("1")]));
    assert_eq!(reply(&mut c, &["UNWATCH"]), Reply::Simple("OK".into()));
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["SET", "a", "1"]);
    let (command, _) = write_plan(&mut c, &["EXEC"]);
    assert!(matches!(command.op, Operation::Txn { ref compares, .. } if compares.is_empty()));

    let (_, _, then) = read_plan(&mut c, &["WATCH", "a"]);
    c.finish(then, values_done(&[Some("1")]));
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["DISCARD"]);
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["SET", "a", "1"]);
    let (command, _) = write_plan(&mut c, &["EXEC"]);
    assert!(matches!(command.op, Operation::Txn { ref compares, .. } if compares.is_empty()));

    let (_, _, watch) = read_plan(&mut c, &["WATCH", "a"]);
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["SET", "a", "1"]);
    assert_eq!(
        reply(&mut c, &["EXEC"]),
        err(
            "ERR synod: EXEC arrived before the reply to WATCH; wait for WATCH's reply \
             before sending EXEC (the transaction is discarded)"
        )
    );
    c.finish(watch, values_done(&[None]));
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["PING"]);
    let (command, _) = write_plan(&mut c, &["EXEC"]);
    let expected = Operation::Txn {
        compares: vec![(key("a"), Compare::ModRevisionEquals(0))],
        success: Vec::new(),
        failure: Vec::new(),
    };
    assert_eq!(command.op, expected);
}

#[test]
fn session_writes_carry_exact_sequences_and_acknowledgements() {
    // Checks SYNOD.SESSION OPEN/INFO/CLOSE and that each write carries the next sequence
    // and the highest sequence finished with all below it, including across pipelined
    // writes and a write of unknown outcome.
    let mut c = connection();
    assert_eq!(reply(&mut c, &["SYNOD.SESSION", "INFO"]), Reply::Null);
    let (command, then) = write_plan(&mut c, &["SYNOD.SESSION", "OPEN"]);
    assert_eq!(
        command,
        Command {
            session: None,
            op: Operation::RegisterSession
        }
    );
    let registered = Response::Registered {
        client: ClientId(50),
    };
    assert_eq!(c.finish(then, written(registered)), Reply::Integer(50));
    let info = |c: &mut Connection| reply(c, &["SYNOD.SESSION", "INFO"]);
    let numbers = |values: [i64; 3]| array(values.into_iter().map(Reply::Integer).collect());
    assert_eq!(info(&mut c), numbers([50, 1, 0]));

    let session = |sequence, acknowledged| {
        Some(SessionRef {
            client: ClientId(50),
            sequence,
            acknowledged,
        })
    };
    let (first, then_first) = write_plan(&mut c, &["SET", "a", "1"]);
    let (second, then_second) = write_plan(&mut c, &["SET", "b", "1"]);
    assert_eq!(first.session, session(1, 0));
    assert_eq!(second.session, session(2, 0));
    c.finish(then_first, written(put_response(true, None)));
    let (third, then_third) = write_plan(&mut c, &["SET", "c", "1"]);
    assert_eq!(third.session, session(3, 1));
    c.finish(then_second, written(put_response(true, None)));
    c.finish(then_third, written(put_response(true, None)));
    assert_eq!(info(&mut c), numbers([50, 4, 3]));

    // Sequence 4's outcome is unknown: it stays unacknowledged so it can be retried.
    let (_, then_unknown) = write_plan(&mut c, &["INCR", "n"]);
    let unknown = Done::Written(Err(ServiceError::Unknown {
        reason: "leader changed".into(),
    }));
    assert_eq!(
        c.finish(then_unknown, unknown),
        err(
            "ERR synod: the write entered the log but its outcome is unknown (leader \
             changed); to retry it exactly once, send SYNOD.SESSION RESUME 50 4 and then the \
             same write"
        )
    );
    let (fifth, then_fifth) = write_plan(&mut c, &["SET", "d", "1"]);
    assert_eq!(fifth.session, session(5, 3));
    c.finish(then_fifth, written(put_response(true, None)));
    assert_eq!(info(&mut c), numbers([50, 6, 3]));

    assert_eq!(
        reply(&mut c, &["SYNOD.SESSION", "RESUME", "50", "4"]),
        Reply::Simple("OK".into())
    );
    let (retry, then_retry) = write_plan(&mut c, &["INCR", "n"]);
    assert_eq!(retry.session, session(4, 3));
    let integer_response = Response::Integer {
        revision: 20,
        value: 1,
    };
    assert_eq!(
        c.finish(then_retry, written(integer_response)),
        Reply::Integer(1)
    );
    assert_eq!(info(&mut c), numbers([50, 5, 4]));

    let (close, then_close) = write_plan(&mut c, &["SYNOD.SESSION", "CLOSE"]);
    assert_eq!(close.op, Operation::CloseSession);
    assert_eq!(close.session, session(5, 4));
    let done = Response::Done { revision: 21 };
    assert_eq!(
        c.finish(then_close, written(done)),
        Reply::Simple("OK".into())
    );
    assert_eq!(info(&mut c), Reply::Null);
    let (plain, _) = write_plan(&mut c, &["SET", "a", "1"]);
    assert_eq!(plain.session, None);
}

#[test]
fn session_errors_are_clear_and_an_expired_session_is_dropped() {
    // Checks CLOSE and RESUME argument errors, and that SessionExpired tells the user to
    // open a new session and ends the connection's session.
    let mut c = connection();
    assert_eq!(
        reply(&mut c, &["SYNOD.SESSION", "CLOSE"]),
        err("ERR synod: no session is open on this connection; open one with SYNOD.SESSION OPEN")
    );
    assert_eq!(
        reply(&mut c, &["SYNOD.SESSION", "RESUME", "x", "1"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        reply(&mut c, &["SYNOD.SESSION", "RESUME", "5", "0"]),
        err("ERR synod: client ids and sequences start at 1")
    );
    assert_eq!(
        reply(&mut c, &["SYNOD.SESSION", "RESUME", "5"]),
        err("ERR wrong number of arguments for 'synod.session|resume' command")
    );
    assert_eq!(
        reply(&mut c, &["SYNOD.SESSION", "FROB"]),
        err("ERR unknown subcommand 'FROB'. Try OPEN, RESUME, INFO or CLOSE.")
    );
    reply(&mut c, &["SYNOD.SESSION", "RESUME", "5", "9"]);
    let (command, then) = write_plan(&mut c, &["SET", "a", "1"]);
    assert_eq!(
        command.session,
        Some(SessionRef {
            client: ClientId(5),
            sequence: 9,
            acknowledged: 8
        })
    );
    let expired = Response::Error(CommandError::SessionExpired {
        client: ClientId(5),
    });
    assert_eq!(
        c.finish(then, written(expired)),
        err(
            "ERR synod: session c5 is unknown or has expired; open a new session with \
             SYNOD.SESSION OPEN"
        )
    );
    assert_eq!(reply(&mut c, &["SYNOD.SESSION", "INFO"]), Reply::Null);
    reply(
        &mut c,
        &["SYNOD.SESSION", "RESUME", "5", "18446744073709551615"],
    );
    assert_eq!(
        reply(&mut c, &["SET", "a", "1"]),
        err(
            "ERR synod: this session has used every sequence number; open a new one with \
             SYNOD.SESSION OPEN"
        )
    );
}

#[test]
fn scan_pages_through_a_range_with_bounded_cursors() {
    // Checks SCAN's ranges, MATCH filtering with a literal prefix bound, COUNT, cursor
    // numbers for following pages, 0 at the end, unknown cursors starting over, and the
    // bounded cursor table.
    let config = CommandConfig {
        scan_cursors_max: 2,
        range_limit_max: 100,
        ..CommandConfig::default()
    };
    let mut c = Connection::new(1, config);
    let range = |start: &str, end: Option<&str>, limit: u32| Operation::Range {
        start: key(start),
        end: end.map(key),
        limit,
        revision: None,
    };
    let (ops, _, then) = read_plan(&mut c, &["SCAN", "0"]);
    assert_eq!(ops, vec![range("", None, 10)]);
    let page = c.finish(then, range_done(&["a", "b"], true));
    assert_eq!(
        page,
        array(vec![bulk("1"), array(vec![bulk("a"), bulk("b")])])
    );
    let (ops, _, then) = read_plan(&mut c, &["SCAN", "1", "COUNT", "500"]);
    assert_eq!(ops, vec![range("b\0", None, 100)]);
    let page = c.finish(then, range_done(&["c"], false));
    assert_eq!(page, array(vec![bulk("0"), array(vec![bulk("c")])]));

    let (ops, _, then) = read_plan(&mut c, &["scan", "0", "match", "user:*", "count", "2"]);
    assert_eq!(ops, vec![range("user:", Some("user;"), 2)]);
    let page = c.finish(then, range_done(&["user:1", "user:2"], true));
    assert_eq!(
        page,
        array(vec![bulk("2"), array(vec![bulk("user:1"), bulk("user:2")])])
    );
    let (ops, _, then) = read_plan(&mut c, &["SCAN", "2", "MATCH", "user:?", "COUNT", "2"]);
    assert_eq!(ops, vec![range("user:2\0", Some("user;"), 2)]);
    let page = c.finish(then, range_done(&["user:3", "user:10"], true));
    assert_eq!(page, array(vec![bulk("3"), array(vec![bulk("user:3")])]));
    // The table holds two cursors: 1 was forgotten and starts over.
    let (ops, _, _) = read_plan(&mut c, &["SCAN", "1"]);
    assert_eq!(ops, vec![range("", None, 10)]);
    let (ops, _, then) = read_plan(&mut c, &["SCAN", "99", "TYPE", "hash"]);
    assert_eq!(ops, vec![range("", None, 10)]);
    assert_eq!(
        c.finish(then, range_done(&["a"], false)),
        array(vec![bulk("0"), array(Vec::new())])
    );
    let errors: Vec<(Vec<&str>, Reply)> = vec![
        (vec!["SCAN", "x"], err("ERR invalid cursor")),
        (vec!["SCAN", "-1"], err("ERR invalid cursor")),
        (vec!["SCAN", "0", "COUNT", "0"], err("ERR syntax error")),
        (
            vec!["SCAN", "0", "COUNT", "z"],
            err("ERR value is not an integer or out of range"),
        ),
        (vec!["SCAN", "0", "MATCH"], err("ERR syntax error")),
        (vec!["SCAN", "0", "LIMIT", "3"], err("ERR syntax error")),
    ];
    for (words, expected) in errors {
        assert_eq!(reply(&mut c, &words), expected, "{words:?}");
    }
}

#[test]
fn keys_reads_the_pattern_prefix_and_filters_with_the_glob() {
    // Checks KEYS' range (bounded by the pattern's literal prefix), its filtering, and its
    // error when more keys lie in the range than range_limit_max.
    let mut c = connection();
    let (ops, _, then) = read_plan(&mut c, &["KEYS", "h?llo*"]);
    let expected = Operation::Range {
        start: key("h"),
        end: Some(key("i")),
        limit: 10_000,
        revision: None,
    };
    assert_eq!(ops, vec![expected]);
    let done = range_done(&["hallo", "hello world", "hllo", "hxllo"], false);
    assert_eq!(
        c.finish(then, done),
        array(vec![bulk("hallo"), bulk("hello world"), bulk("hxllo")])
    );
    let (ops, _, then) = read_plan(&mut c, &["KEYS", "*"]);
    assert!(matches!(&ops[0], Operation::Range { start, end: None, .. } if start.is_empty()));
    assert_eq!(
        c.finish(then, range_done(&["a"], true)),
        err(
            "ERR synod: KEYS reads at most range_limit_max (10000) keys and more lie in the \
             range its pattern covers; use SCAN"
        )
    );
}

#[test]
fn glob_patterns_match_like_redis() {
    // Checks the glob matcher against a table of patterns and keys, including classes,
    // negation, ranges, escapes, unclosed brackets and non-UTF-8 bytes.
    let table: &[(&[u8], &[u8], bool)] = &[
        (b"*", b"", true),
        (b"*", b"anything", true),
        (b"h?llo", b"hello", true),
        (b"h?llo", b"hllo", false),
        (b"h*llo", b"hllo", true),
        (b"h*llo", b"heeeello", true),
        (b"h[ae]llo", b"hallo", true),
        (b"h[ae]llo", b"hillo", false),
        (b"h[^e]llo", b"hallo", true),
        (b"h[^e]llo", b"hello", false),
        (b"h[a-b]llo", b"hbllo", true),
        (b"h[a-b]llo", b"hcllo", false),
        (b"h[b-a]llo", b"hallo", true),
        (b"h\\*llo", b"h*llo", true),
        (b"h\\*llo", b"hello", false),
        (b"[\\]]", b"]", true),
        (b"a*b*c", b"aXbYc", true),
        (b"a*b*c", b"aXbY", false),
        (b"*a*a*a", b"aaaa", true),
        (b"*a*a*a", b"aab", false),
        (b"ab\\", b"ab\\", true),
        (b"[abc", b"b", true),
        (b"[]", b"a", false),
        (b"[^]", b"a", true),
        (b"\xff*", b"\xff\x00", true),
        (b"", b"", true),
        (b"", b"a", false),
        (b"a**", b"a", true),
    ];
    for &(pattern, text, expected) in table {
        let glob = Pattern::parse(pattern);
        assert_eq!(
            glob.matches(text),
            expected,
            "{:?} on {:?}",
            String::from_utf8_lossy(pattern),
            String::from_utf8_lossy(text)
        );
    }
    assert_eq!(Pattern::parse(b"ab\\*c*").literal_prefix(), b"ab*c");
    assert_eq!(prefix_end(b"a\xff"), Some(key("b")));
    assert_eq!(prefix_end(b"\xff\xff"), None);
}

#[test]
fn status_commands_shape_info_dbsize_role_and_synod_status() {
    // Checks INFO's text (role:master on the leader, role:slave elsewhere, synod's fields,
    // the keyspace line, section filtering), its RESP2 bulk and RESP3 verbatim shapes,
    // DBSIZE, ROLE and SYNOD.STATUS as a RESP3 map and a RESP2 flat array.
    let mut c = connection();
    let then = status_plan_of(&mut c, &["INFO"]);
    let leader = Box::new(status_fixture("leader"));
    let Reply::Bulk(Some(text)) = c.finish(then, Done::Status(leader.clone())) else {
        panic!("INFO is not a bulk string in RESP2");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    for line in [
        "# Server\r\n",
        "redis_version:7.2.0\r\n",
        "tcp_port:6379\r\n",
        "uptime_in_days:1\r\n",
        "\r\n# Clients\r\nconnected_clients:8\r\n",
        "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n",
        "# Keyspace\r\ndb0:keys=1234,expires=0,avg_ttl=0\r\n",
        "# Synod\r\nnode:2\r\ncluster_id:77\r\nsynod_role:leader\r\nterm:5\r\nleader:1\r\n",
        "commit_index:100\r\napplied_index:99\r\nlast_log_index:101\r\n",
        "voters:1,2,3\r\nlearners:4\r\n",
        "read_level:linearizable\r\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    reply(&mut c, &["HELLO", "3"]);
    let then = status_plan_of(&mut c, &["INFO", "replication"]);
    let follower = Box::new(status_fixture("follower"));
    let expected = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6380\r\n\
                    master_link_status:up\r\n";
    assert_eq!(
        c.finish(then, Done::Status(follower.clone())),
        Reply::Verbatim {
            format: *b"txt",
            text: key(expected)
        }
    );
    let then = status_plan_of(&mut c, &["DBSIZE"]);
    assert_eq!(
        c.finish(then, Done::Status(follower.clone())),
        Reply::Integer(1234)
    );
    let then = status_plan_of(&mut c, &["ROLE"]);
    assert_eq!(
        c.finish(then, Done::Status(follower.clone())),
        array(vec![
            bulk("slave"),
            bulk("10.0.0.1"),
            Reply::Integer(6380),
            bulk("connected"),
            Reply::Integer(99),
        ])
    );
    let then = status_plan_of(&mut c, &["ROLE"]);
    assert_eq!(
        c.finish(then, Done::Status(leader.clone())),
        array(vec![bulk("master"), Reply::Integer(99), array(Vec::new())])
    );
    let then = status_plan_of(&mut c, &["SYNOD.STATUS"]);
    let status = c.finish(then, Done::Status(leader));
    let Reply::Map(pairs) = &status else {
        panic!("SYNOD.STATUS is not a map");
    };
    assert_eq!(pairs.len(), 24);
    assert_eq!(pairs[0], (bulk("node"), Reply::Integer(2)));
    assert_eq!(pairs[14], (bulk("degraded"), Reply::Null));
    assert_eq!(pairs[4], (bulk("leader"), Reply::Integer(1)));
    assert_eq!(
        pairs[10],
        (
            bulk("voters"),
            array(vec![
                Reply::Integer(1),
                Reply::Integer(2),
                Reply::Integer(3)
            ])
        )
    );
    let resp3 = encoded(&status, ProtocolVersion::Resp3);
    assert!(resp3.starts_with("%24\r\n$4\r\nnode\r\n:2\r\n"), "{resp3}");
    let resp2 = encoded(&status, ProtocolVersion::Resp2);
    assert!(resp2.starts_with("*48\r\n$4\r\nnode\r\n:2\r\n"), "{resp2}");
}

#[test]
fn mismatched_answers_give_an_error_not_a_panic() {
    // Checks that an answer of the wrong kind or length for a plan is reported as an
    // internal error reply.
    let internal = err(ERROR_INTERNAL);
    let mut c = connection();
    let (_, then) = write_plan(&mut c, &["SET", "a", "1"]);
    assert_eq!(
        c.finish(then, written(Response::Done { revision: 1 })),
        internal
    );
    let (_, _, then) = read_plan(&mut c, &["MGET", "a", "b"]);
    assert_eq!(
        c.finish(then, Done::Read(Ok(Vec::new()))),
        array(Vec::new())
    );
    let (_, _, then) = read_plan(&mut c, &["GET", "a"]);
    assert_eq!(c.finish(then, Done::Read(Ok(Vec::new()))), internal);
    let (_, _, then) = read_plan(&mut c, &["GET", "a"]);
    let status = Box::new(status_fixture("leader"));
    assert_eq!(c.finish(then, Done::Status(status)), internal);
    reply(&mut c, &["MULTI"]);
    reply(&mut c, &["GET", "a"]);
    let (_, then) = write_plan(&mut c, &["EXEC"]);
    let response = Response::Txn {
        revision: 2,
        succeeded: true,
        results: vec![TxnResult::Put],
    };
    assert_eq!(c.finish(then, written(response)), array(vec![internal]));
}

/// Arguments that reach deep into the command table: a known name (in any case) or noise,
/// then words that are options of some command, numbers, or arbitrary bytes.
fn arguments_strategy() -> impl Strategy<Value = Vec<Bytes>> {
    let names: Vec<&'static str> = COMMANDS.iter().map(|spec| spec.name).collect();
    let name = prop_oneof![
        proptest::sample::select(names).prop_map(|name| name.to_ascii_uppercase().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    let words = [
        "nx", "xx", "get", "ex", "match", "count", "type", "auth", "setname", "open", "resume",
        "info", "close", "version", "absent", "value", "0", "1", "3", "-1", "*", "[", "\\",
    ];
    let arg = prop_oneof![
        proptest::sample::select(words.to_vec()).prop_map(|word| word.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
        any::<i64>().prop_map(|number| number.to_string().into_bytes()),
    ];
    (name, proptest::collection::vec(arg, 0..8))
        .prop_map(|(name, rest)| std::iter::once(name).chain(rest).map(Bytes::from).collect())
}

/// Answers of every kind, to feed `finish` whatever a plan asked for.
fn answers() -> Vec<Done> {
    vec![
        written(put_response(true, Some("x"))),
        written(Response::Error(CommandError::NotAnInteger)),
        Done::Written(Err(ServiceError::Timeout { waited_ms: 1 })),
        values_done(&[Some("1"), None]),
        range_done(&["a", "b"], true),
        Done::Read(Ok(Vec::new())),
        Done::Read(Err(ServiceError::Refused { reason: "x".into() })),
        Done::Status(Box::new(status_fixture("leader"))),
    ]
}

proptest! {
    #[test]
    fn plan_and_finish_never_panic(
        commands in proptest::collection::vec(arguments_strategy(), 1..12),
        answer in 0usize..8,
        password in any::<bool>(),
    ) {
        // Checks that no sequence of arbitrary commands, answered with arbitrary answers,
        // makes plan or finish panic or break the connection's invariants.
        let config = CommandConfig {
            password: password.then(|| "pw".to_owned()),
            keys_per_command_max: 4,
            scan_cursors_max: 2,
            range_limit_max: 3,
        };
        let mut c = Connection::new(1, config);
        for (index, command) in commands.into_iter().enumerate() {
            let then = match c.plan(command) {
                Plan::Write { then, .. } | Plan::Read { then, .. } | Plan::Status { then } => {
                    then
                }
                Plan::Reply(_) | Plan::Close(_) => continue,
            };
            let mut all = answers();
            let done = all.swap_remove((answer + index) % all.len());
            let _ = c.finish(then, done);
        }
    }
}
