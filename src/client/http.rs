//! The cluster client's HTTP/1.1 transport: kept-alive connections per node, each one a
//! hyper connection of its own, handed to one request at a time.
//!
//! Why not reqwest (which the harness uses for admin calls): the load generator is the
//! harness's own cost in every open-loop run, and reqwest's general machinery (URL parsing,
//! default-header merging, its pool's bookkeeping, a redirect policy, a timeout layer) was
//! most of its CPU per operation. Here a request is one pool lookup, one hyper request on an
//! origin-form path, and one pool return.
//!
//! Outcomes are told apart the way the client must count writes ([`SendError`]): a request
//! that certainly never left (no connection, or a kept-alive connection found closed before
//! the request was written) may be retried; one that failed after it may have been sent may
//! have been applied.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use thiserror::Error;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;

/// An answer, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, Error)]
pub enum SendError {
    /// The request cannot be written (a path or address that is not valid HTTP): it was
    /// never sent.
    #[error("cannot send {what}: {why}")]
    Invalid { what: String, why: String },
    /// No connection could be made: the request was never sent.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A new connection closed before the request was written (hyper handed it back): it
    /// was never sent.
    #[error("connection to {addr} closed before the request was sent: {source}")]
    NotSent {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// The connection broke after the request may have been written (or while its answer
    /// was read): the server may have acted on it.
    #[error("connection to {addr} failed: {source}")]
    Broken {
        addr: String,
        #[source]
        source: hyper::Error,
    },
}

/// Kept-alive connections, per `host:port`. Cheap to share; safe from many tasks.
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Sender>>>,
    /// Idle connections kept per node; more are closed when their request ends.
    max_idle: usize,
}

impl Pool {
    /// A pool keeping up to `max_idle` idle connections per node.
    pub fn new(max_idle: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
        }
    }

    /// Send `method path` (origin form, already percent-encoded) with `body` to `addr`
    /// (`host:port`) and read the whole answer.
    pub async fn send(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response, SendError> {
        let mut req = request(addr, method, path, body)?;
        // A kept-alive connection may have been closed by the node meanwhile: then hyper
        // hands the request back unsent, and it goes on a new connection (at most once per
        // idle connection, so this ends).
        let (sender, resp) = loop {
            let (mut sender, fresh) = match self.checkout(addr).await {
                Some(s) => (s, false),
                None => (self.dial(addr).await?, true),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => break (sender, resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    Some(_) => {
                        return Err(SendError::NotSent {
                            addr: addr.to_string(),
                            source: e.into_error(),
                        });
                    }
                    None => {
                        return Err(SendError::Broken {
                            addr: addr.to_string(),
                            source: e.into_error(),
                        });
                    }
                },
            }
        };
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| SendError::Broken {
                addr: addr.to_string(),
                source,
            })?
            .to_bytes();
        // The answer is read whole, so the connection is free for the next request (which
        // waits, if need be, for hyper to notice); one the node closes is dropped.
        if !sender.is_closed() {
            self.checkin(addr, sender);
        }
        Ok(Response { status, body })
    }

    /// An idle connection to `addr` that is ready for a request, if there is one.
    async fn checkout(&self, addr: &str) -> Option<Sender> {
        loop {
            let mut s = self.idle.lock().get_mut(addr)?.pop()?;
            if s.is_ready() || s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    fn checkin(&self, addr: &str, s: Sender) {
        let mut idle = self.idle.lock();
        match idle.get_mut(addr) {
            Some(list) if list.len() < self.max_idle => list.push(s),
            Some(_) => {}
            None => {
                idle.insert(addr.to_string(), vec![s]);
            }
        }
    }

    async fn dial(&self, addr: &str) -> Result<Sender, SendError> {
        let connect = |source| SendError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = TcpStream::connect(addr).await.map_err(connect)?;
        // Requests are small and answered one at a time: never wait for Nagle.
        stream.set_nodelay(true).map_err(connect)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| SendError::Broken {
                addr: addr.to_string(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("client connection closed: {e}");
            }
        });
        Ok(sender)
    }
}

fn request(
    addr: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, SendError> {
    let invalid = |why: String| SendError::Invalid {
        what: format!("{method} http://{addr}{path}"),
        why,
    };
    let mut req = Request::new(Full::new(body));
    *req.uri_mut() = path.parse().map_err(|e| invalid(format!("{e}")))?;
    let host = header::HeaderValue::from_str(addr).map_err(|e| invalid(format!("{e}")))?;
    req.headers_mut().insert(header::HOST, host);
    *req.method_mut() = method;
    Ok(req)
}
