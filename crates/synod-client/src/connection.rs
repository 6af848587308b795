//! One RESP connection: requests encoded as multibulk arrays, replies parsed with
//! synod-server's `ReplyParser`, every call bounded by a timeout.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use synod_server::{Reply, ReplyParser, RespLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ClientError;

/// Limits on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most commands in one `call_many`.
    pub pipeline_max: usize,
    /// Most bytes buffered while a reply arrives; a larger reply closes the connection.
    pub reply_size_max: usize,
    /// Bytes asked of the socket per read.
    pub read_chunk_size: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            pipeline_max: 4096,
            reply_size_max: 64 * 1024 * 1024,
            read_chunk_size: 16 * 1024,
        }
    }
}

/// A TCP connection to one RESP server (a synod node or Redis), with `TCP_NODELAY`.
///
/// An error reply (`-ERR ...`) is a reply: `call` returns it as `Ok(Reply::Error(..))`.
/// A timeout, IO or protocol error leaves replies out of step with requests, so the
/// connection refuses every later call with [`ClientError::Broken`].
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    address: String,
    timeout: Duration,
    limits: ConnectionLimits,
    parser: ReplyParser,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    broken: bool,
}

impl Connection {
    /// Connects to `address` (`host:port`) within `timeout`; `timeout` also bounds each call.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Connection, ClientError> {
        Connection::connect_with_limits(address, timeout, ConnectionLimits::default()).await
    }

    pub async fn connect_with_limits(
        address: &str,
        timeout: Duration,
        limits: ConnectionLimits,
    ) -> Result<Connection, ClientError> {
        if timeout.is_zero() {
            return Err(ClientError::Config(
                "the request timeout must be positive".into(),
            ));
        }
        let connecting = TcpStream::connect(address);
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => {
                return Err(ClientError::ConnectTimeout {
                    address: address.to_owned(),
                    timeout_ms: millis(timeout),
                });
            }
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    address: address.to_owned(),
                    source,
                });
            }
            Ok(Ok(stream)) => stream,
        };
        stream
            .set_nodelay(true)
            .map_err(|source| ClientError::Connect {
                address: address.to_owned(),
                source,
            })?;
        let resp_limits = RespLimits {
            bulk_size_max: limits.reply_size_max,
            ..RespLimits::default()
        };
        Ok(Connection {
            stream,
            address: address.to_owned(),
            timeout,
            limits,
            parser: ReplyParser::new(resp_limits),
            read_buffer: BytesMut::with_capacity(limits.read_chunk_size),
            write_buffer: BytesMut::with_capacity(1024),
            broken: false,
        })
    }

    /// The address this connection was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether an earlier failure left the connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends one command and waits for its reply, within the timeout.
    pub async fn call(&mut self, arguments: &[&[u8]]) -> Result<Reply, ClientError> {
        let mut replies = self.call_many(&[arguments]).await?;
        assert_eq!(replies.len(), 1, "one command gives one reply");
        Ok(replies.pop().expect("one reply"))
    }

    /// Sends `commands` in one write (pipelined) and waits for all their replies, in order,
    /// within one timeout.
    pub async fn call_many(&mut self, commands: &[&[&[u8]]]) -> Result<Vec<Reply>, ClientError> {
        if self.broken {
            return Err(ClientError::Broken {
                address: self.address.clone(),
            });
        }
        if commands.len() > self.limits.pipeline_max {
            return Err(ClientError::PipelineTooLong {
                count: commands.len(),
                pipeline_max: self.limits.pipeline_max,
            });
        }
        self.write_buffer.clear();
        for arguments in commands {
            encode_command(arguments, &mut self.write_buffer);
        }
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(commands.len())).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                address: self.address.clone(),
                timeout_ms: millis(timeout),
            }),
        };
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn exchange(&mut self, count: usize) -> Result<Vec<Reply>, ClientError> {
        let io_error = |address: &str, source| ClientError::Io {
            address: address.to_owned(),
            source,
        };
        self.stream
            .write_all(&self.write_buffer)
            .await
            .map_err(|source| io_error(&self.address, source))?;
        let mut replies = Vec::with_capacity(count);
        // Each pass parses a reply or reads at least one byte, and the buffer is bounded by
        // reply_size_max, so the loop ends (the caller's timeout bounds it in time too).
        while replies.len() < count {
            let parsed = self.parser.feed(&mut self.read_buffer).map_err(|source| {
                ClientError::Protocol {
                    address: self.address.clone(),
                    source,
                }
            })?;
            if let Some(reply) = parsed {
                replies.push(reply);
                continue;
            }
            if self.read_buffer.len() >= self.limits.reply_size_max {
                return Err(ClientError::ReplyTooLarge {
                    address: self.address.clone(),
                    reply_size_max: self.limits.reply_size_max,
                });
            }
            self.read_buffer.reserve(self.limits.read_chunk_size);
            let read = self
                .stream
                .read_buf(&mut self.read_buffer)
                .await
                .map_err(|source| io_error(&self.address, source))?;
            if read == 0 {
                return Err(ClientError::Closed {
                    address: self.address.clone(),
                });
            }
        }
        Ok(replies)
    }
}

/// Appends one command as a RESP multibulk array of bulk strings, the form every Redis
/// server accepts.
pub fn encode_command(arguments: &[&[u8]], out: &mut BytesMut) {
    out.put_u8(b'*');
    out.put_slice(arguments.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for argument in arguments {
        out.put_u8(b'$');
        out.put_slice(argument.len().to_string().as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(argument);
        out.put_slice(b"\r\n");
    }
}

pub(crate) fn millis(span: Duration) -> u64 {
    u64::try_from(span.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_command_writes_a_multibulk_of_bulk_strings() {
        // Checks the exact bytes of a command, including an empty and a binary argument.
        let mut out = BytesMut::new();
        encode_command(&[b"SET", b"k", b"", b"\r\n"], &mut out);
        assert_eq!(
            &out[..],
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\n\r\n\r\n"
        );
    }

    #[test]
    fn encoded_commands_parse_back_with_the_server_parser() {
        // Checks that the server's request parser reads what the client encodes.
        let mut out = BytesMut::new();
        encode_command(&[b"SYNOD.SESSION", b"RESUME", b"7", b"42"], &mut out);
        let mut parser = synod_server::RequestParser::new(RespLimits::default());
        let command = parser.feed(&mut out).unwrap().unwrap();
        let command: Vec<&[u8]> = command.iter().map(|argument| &argument[..]).collect();
        assert_eq!(command, vec![&b"SYNOD.SESSION"[..], b"RESUME", b"7", b"42"]);
        assert!(out.is_empty());
    }
}
