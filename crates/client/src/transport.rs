//! How requests reach a server: over HTTP with `reqwest`, or handed to an
//! in-process service (the server's own router serves its MCP endpoint this
//! way, so MCP tools run exactly the HTTP API's code without a socket).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

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

/// HTTP/1.1 over TCP.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A connection pool. Proxies are ignored: aruntime servers are
    /// reached directly.
    pub fn new() -> Result<HttpTransport, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpTransport { client })
    }
}

/// The message of an error and of its causes, which `reqwest` keeps apart.
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
        let mut req = reqwest::Request::try_from(req).map_err(|e| chain(&e))?;
        *req.timeout_mut() = Some(timeout);
        let resp = self.client.execute(req).await.map_err(|e| chain(&e))?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let body = resp.bytes().await.map_err(|e| chain(&e))?;
        out.body(body).map_err(|e| e.to_string())
    }
}
