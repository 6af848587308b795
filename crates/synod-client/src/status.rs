//! Reading a `SYNOD.STATUS` reply: who answered, who leads, and where every member serves RESP.

use synod_server::Reply;

/// The part of a node's status a client needs to route requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: u64,
    /// `"leader"`, `"follower"`, `"candidate"`, `"learner"` or `"starting"`.
    pub role: String,
    pub term: u64,
    /// The leader the node knows of, if any.
    pub leader: Option<u64>,
    /// Where the answering node serves RESP.
    pub resp_address: String,
    /// Every member: node id and RESP address.
    pub members: Vec<MemberAddress>,
    /// Why the node says it is degraded (no quorum, read-only storage), if it does.
    pub degraded: Option<String>,
    /// On a leader: how far each follower is (empty elsewhere, or from an older server).
    pub followers: Vec<FollowerProgress>,
}

/// A leader's view of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerProgress {
    pub node: u64,
    pub voter: bool,
    /// Entries the follower lacks.
    pub lag_entries: u64,
    /// Whether the leader heard from it recently.
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddress {
    pub node: u64,
    pub resp_address: String,
    pub http_address: String,
}

impl ClusterStatus {
    /// The RESP address of the leader, when one is known and listed among the members.
    pub fn leader_address(&self) -> Option<&str> {
        let leader = self.leader?;
        if leader == self.node && !self.resp_address.is_empty() {
            return Some(&self.resp_address);
        }
        self.members
            .iter()
            .find(|member| member.node == leader)
            .map(|member| member.resp_address.as_str())
    }
}

/// Parses a `SYNOD.STATUS` reply: a RESP3 map or a RESP2 flat array of field names and values.
/// `Err` names what is missing or malformed.
pub fn parse_status(reply: &Reply) -> Result<ClusterStatus, String> {
    let fields = fields(reply).ok_or("the reply is not a map or a flat array of fields")?;
    let field = |name: &str| named(&fields, name).ok_or(format!("field {name:?} is missing"));
    let integer =
        |name: &str| as_integer(field(name)?).ok_or(format!("field {name:?} is not an integer"));
    let members_reply = field("members")?;
    let members = match members_reply {
        Reply::Array(Some(items)) | Reply::Set(items) => items
            .iter()
            .map(parse_member)
            .collect::<Result<Vec<_>, _>>()?,
        Reply::Array(None) | Reply::Null | Reply::Bulk(None) => Vec::new(),
        _ => return Err("field \"members\" is not an array".into()),
    };
    let leader = match field("leader")? {
        Reply::Null | Reply::Bulk(None) | Reply::Array(None) => None,
        other => Some(as_integer(other).ok_or("field \"leader\" is not an integer or nil")?),
    };
    let followers = match field("followers") {
        Ok(Reply::Array(Some(items)) | Reply::Set(items)) => items
            .iter()
            .map(parse_follower)
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    Ok(ClusterStatus {
        degraded: field("degraded").ok().and_then(as_text),
        followers,
        node: integer("node")?,
        role: as_text(field("role")?).ok_or("field \"role\" is not a string")?,
        term: integer("term")?,
        leader,
        resp_address: field("resp_address")
            .ok()
            .and_then(as_text)
            .unwrap_or_default(),
        members,
    })
}

fn parse_follower(reply: &Reply) -> Result<FollowerProgress, String> {
    let fields = fields(reply).ok_or("a follower is not a map or a flat array of fields")?;
    let field = |name: &str| named(&fields, name);
    let integer = |name: &str| {
        field(name).and_then(as_integer).ok_or(format!(
            "a follower's {name:?} is missing or not an integer"
        ))
    };
    let flag = |name: &str| match field(name) {
        Some(Reply::Boolean(value)) => Ok(*value),
        Some(other) => as_integer(other)
            .map(|value| value != 0)
            .ok_or(format!("a follower's {name:?} is not a boolean")),
        None => Err(format!("a follower's {name:?} is missing")),
    };
    Ok(FollowerProgress {
        node: integer("node")?,
        voter: flag("voter")?,
        lag_entries: integer("lag_entries")?,
        active: flag("active")?,
    })
}

fn parse_member(reply: &Reply) -> Result<MemberAddress, String> {
    let fields = fields(reply).ok_or("a member is not a map or a flat array of fields")?;
    let text = |name: &str| {
        named(&fields, name)
            .and_then(as_text)
            .ok_or(format!("a member's {name:?} is missing or not a string"))
    };
    let node = named(&fields, "node")
        .and_then(as_integer)
        .ok_or("a member's \"node\" is missing or not an integer")?;
    Ok(MemberAddress {
        node,
        resp_address: text("resp_address")?,
        http_address: text("http_address").unwrap_or_default(),
    })
}

/// The value of the field `name` among `fields`.
fn named<'a>(fields: &[(String, &'a Reply)], name: &str) -> Option<&'a Reply> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| *value)
}

/// The (name, value) pairs of a map, or of a flat array that alternates names and values.
fn fields(reply: &Reply) -> Option<Vec<(String, &Reply)>> {
    match reply {
        Reply::Map(pairs) => pairs
            .iter()
            .map(|(key, value)| Some((as_text(key)?, value)))
            .collect(),
        Reply::Array(Some(items)) if items.len().is_multiple_of(2) => items
            .chunks_exact(2)
            .map(|pair| Some((as_text(&pair[0])?, &pair[1])))
            .collect(),
        _ => None,
    }
}

/// The text of a simple, bulk or verbatim string.
pub fn as_text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Simple(text) => Some(text.clone()),
        Reply::Bulk(Some(data)) | Reply::Verbatim { text: data, .. } => {
            Some(String::from_utf8_lossy(data).into_owned())
        }
        _ => None,
    }
}

/// A non-negative integer, sent as an integer or as decimal text.
pub fn as_integer(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Integer(value) => u64::try_from(*value).ok(),
        other => as_text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
    }

    fn member(node: i64, port: u16) -> Reply {
        Reply::Array(Some(vec![
            bulk("node"),
            Reply::Integer(node),
            bulk("resp_address"),
            bulk(&format!("127.0.0.1:{port}")),
            bulk("http_address"),
            bulk(&format!("127.0.0.1:{}", port + 1000)),
        ]))
    }

    fn status_fields(leader: Reply) -> Vec<(Reply, Reply)> {
        vec![
            (bulk("node"), Reply::Integer(2)),
            (bulk("role"), bulk("follower")),
            (bulk("term"), Reply::Integer(5)),
            (bulk("leader"), leader),
            (bulk("resp_address"), bulk("127.0.0.1:6002")),
            (
                bulk("members"),
                Reply::Array(Some(vec![member(1, 6001), member(2, 6002)])),
            ),
            (bulk("commit_index"), Reply::Integer(9)),
        ]
    }

    #[test]
    fn parses_a_resp3_map_and_finds_the_leader() {
        // Checks a RESP3 status: the leader's RESP address comes from the members list.
        let status = parse_status(&Reply::Map(status_fields(Reply::Integer(1)))).unwrap();
        assert_eq!(status.node, 2);
        assert_eq!(status.term, 5);
        assert_eq!(status.leader, Some(1));
        assert_eq!(status.members.len(), 2);
        assert_eq!(status.leader_address(), Some("127.0.0.1:6001"));
    }

    #[test]
    fn parses_a_resp2_flat_array_with_no_leader() {
        // Checks a RESP2 status (flat array) whose leader is nil: no leader address.
        let flat = status_fields(Reply::Bulk(None))
            .into_iter()
            .flat_map(|(key, value)| [key, value])
            .collect();
        let status = parse_status(&Reply::Array(Some(flat))).unwrap();
        assert_eq!(status.leader, None);
        assert_eq!(status.leader_address(), None);
        assert_eq!(status.role, "follower");
    }

    #[test]
    fn parses_a_leaders_followers_and_a_degraded_reason() {
        // Checks the optional fields: a leader's followers (RESP3 booleans or RESP2
        // integers) and the degraded reason; absent, they are empty.
        let follower = |node: i64, voter: Reply, lag: i64, active: Reply| {
            Reply::Map(vec![
                (bulk("node"), Reply::Integer(node)),
                (bulk("voter"), voter),
                (bulk("lag_entries"), Reply::Integer(lag)),
                (bulk("lag_bytes"), Reply::Integer(0)),
                (bulk("active"), active),
            ])
        };
        let mut fields = status_fields(Reply::Integer(2));
        fields.push((
            bulk("followers"),
            Reply::Array(Some(vec![
                follower(1, Reply::Boolean(true), 3, Reply::Boolean(true)),
                follower(3, Reply::Integer(0), 70, Reply::Integer(0)),
            ])),
        ));
        fields.push((bulk("degraded"), bulk("read-only: the disk is full")));
        let status = parse_status(&Reply::Map(fields)).unwrap();
        assert_eq!(
            status.followers,
            [
                FollowerProgress {
                    node: 1,
                    voter: true,
                    lag_entries: 3,
                    active: true
                },
                FollowerProgress {
                    node: 3,
                    voter: false,
                    lag_entries: 70,
                    active: false
                },
            ]
        );
        assert_eq!(
            status.degraded.as_deref(),
            Some("read-only: the disk is full")
        );
        let plain = parse_status(&Reply::Map(status_fields(Reply::Integer(1)))).unwrap();
        assert!(plain.followers.is_empty() && plain.degraded.is_none());
        let mut broken = status_fields(Reply::Integer(2));
        broken.push((
            bulk("followers"),
            Reply::Array(Some(vec![Reply::Map(vec![(
                bulk("node"),
                Reply::Integer(1),
            )])])),
        ));
        let error = parse_status(&Reply::Map(broken)).unwrap_err();
        assert!(error.contains("voter"), "{error}");
    }

    #[test]
    fn refuses_a_reply_that_is_not_a_status() {
        // Checks that an error reply or a missing field is refused with its name.
        assert!(parse_status(&Reply::Error("ERR unknown command".into())).is_err());
        let mut fields = status_fields(Reply::Integer(1));
        fields.retain(|(key, _)| *key != bulk("term"));
        let error = parse_status(&Reply::Map(fields)).unwrap_err();
        assert!(error.contains("term"), "{error}");
    }
}
