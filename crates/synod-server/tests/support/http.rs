//! A minimal HTTP/1.1 client for tests of synod's admin API: one request per connection
//! (`Connection: close`), the whole answer read until the server closes.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer: status code, headers with lowercase names, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `method path` with `body` (as JSON when not empty) to `address`.
pub async fn request(
    address: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<Answer> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(address, method, path, body))
        .await
        .with_context(|| format!("{method} {path} on {address} took over {REQUEST_TIMEOUT:?}"))?
}

async fn exchange(address: &str, method: &str, path: &str, body: &str) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connect {address}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("answer is not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("answer has no header end: {text:?}");
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut text: &str) -> anyhow::Result<String> {
    let mut body = String::new();
    loop {
        let (size, rest) = text.split_once("\r\n").context("chunk size line")?;
        let size = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(rest.get(..size).context("short chunk")?);
        text = rest.get(size + 2..).context("chunk end")?;
    }
}
