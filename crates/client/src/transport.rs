//! How requests reach a server: over HTTP with `hyper`, or handed to an
//! in-process service (the server's own router serves its MCP endpoint this
//! way, so MCP tools run exactly the HTTP API's code without a socket).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Sends one request and returns the whole response. Errors are transport
/// failures (connection refused, reset, timeout), as text.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `req`, giving up after `timeout`.
    async fn send(
        &self,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, String>;
}

/// HTTP/1.1 over TCP, with a pool of kept-alive connections per server.
///
/// `hyper`'s own client, not `reqwest`: a request here is already an
/// `http::Request`, and `reqwest` turned each one's URI into a `url::Url`
/// (a full WHATWG parse) and back; at the request rates of `aruntime bench`
/// that and its other layers were a tenth of the client's CPU, on the cores
/// the server and its writer need (docs/performance.md, finding 39). Plain
/// `http://` only; proxies are not used: aruntime servers are reached
/// directly.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpTransport {
    /// A connection pool.
    pub fn new() -> Result<HttpTransport, String> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // A request is one small write; waiting to coalesce it with the
        // next only adds latency.
        connector.set_nodelay(true);
        // Idle connections are closed after 90 s, as `reqwest` did; the pool
        // needs a timer for that.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(HttpTransport { client })
    }
}

/// The message of an error and of its causes, which `hyper` keeps apart.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(
        &self,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, String> {
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, Full::new(body));
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| chain(&e))?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no response within {timeout:?}"))?
    }
}
