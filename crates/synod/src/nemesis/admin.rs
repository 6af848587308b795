//! The harness's side of a node's HTTP admin API: `POST /faults/clock`, `GET`/`POST
//! /members` and `GET /metrics`, over plain HTTP/1.1 on loopback (one connection per request,
//! `Connection: close`), each bounded in time and size.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The largest answer read (`/metrics` is the largest, a few KiB).
const ANSWER_SIZE_MAX: u64 = 1 << 20;

/// An answer: the status code and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// The JSON body's `error` or `message` field, else the body itself.
    pub fn message(&self) -> String {
        let parsed: Option<Json> = serde_json::from_str(&self.body).ok();
        let field = parsed.as_ref().and_then(|json| {
            json.get("error")
                .or_else(|| json.get("message"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        });
        field.unwrap_or_else(|| self.body.trim().to_owned())
    }
}

/// Sends one request; `Err` says what went wrong (refused, timed out, malformed answer).
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|error| format!("cannot send to {address}: {error}"))?;
        let mut raw = Vec::new();
        stream
            .take(ANSWER_SIZE_MAX)
            .read_to_end(&mut raw)
            .await
            .map_err(|error| format!("no answer from {address}: {error}"))?;
        parse_answer(&raw).ok_or_else(|| format!("a malformed HTTP answer from {address}"))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{method} {path} on {address} timed out after {} ms",
            REQUEST_TIMEOUT.as_millis()
        )),
    }
}

/// Splits an HTTP/1.1 answer into its status and body (the node answers with
/// `Content-Length`, never chunked, when the client asks to close).
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        body: body.to_owned(),
    })
}

/// The voters and learners a node reports (`GET /members`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

pub async fn members(address: SocketAddr) -> Result<Members, String> {
    let answer = request(address, "GET", "/members", "").await?;
    if !answer.ok() {
        return Err(answer.message());
    }
    let json: Json = serde_json::from_str(&answer.body).map_err(|error| error.to_string())?;
    let ids = |name: &str| -> Vec<u64> {
        let mut ids: Vec<u64> = json[name]
            .as_array()
            .map(|ids| ids.iter().filter_map(Json::as_u64).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    };
    Ok(Members {
        leader: json["leader"].as_u64(),
        term: json["term"].as_u64().unwrap_or(0),
        voters: ids("voters"),
        learners: ids("learners"),
    })
}

/// The sum of the samples of every metric whose name contains `part` (`GET /metrics`).
pub async fn metric_sum(address: SocketAddr, part: &str) -> Result<f64, String> {
    let answer = request(address, "GET", "/metrics", "").await?;
    if !answer.ok() {
        return Err(answer.message());
    }
    let mut sum = 0.0;
    for line in answer.body.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if name.contains(part)
            && let Ok(value) = value.parse::<f64>()
        {
            sum += value;
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_into_status_and_body() {
        // Checks the status code and body of an answer, and that a truncated head is refused.
        let raw =
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 17\r\n\r\n{\"error\":\"busy\"}";
        let answer = parse_answer(raw).expect("an answer");
        assert_eq!(answer.status, 503);
        assert_eq!(answer.message(), "busy");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}
