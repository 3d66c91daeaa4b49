//! Fetching a flow-log export from a proxy's admin API (for the CLI):
//! one plain HTTP/1.1 GET on a private current-thread runtime.

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: only http://HOST:PORT admin URLs are supported")]
    Url(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
}

/// GET `base` + `path_and_query` (e.g. `/flowlog?since=...`); the body.
pub fn get(base: &str, path_and_query: &str) -> Result<Vec<u8>, FetchError> {
    let url = format!("{}{}", base.trim_end_matches('/'), path_and_query);
    let uri: Uri = url.parse().map_err(|_| FetchError::Url(url.clone()))?;
    if uri.scheme_str() != Some("http") {
        return Err(FetchError::Url(url));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(FetchError::Url(url));
    };
    let err = |m: String| FetchError::Http {
        url: url.clone(),
        message: m,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    rt.block_on(async {
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr.as_str()),
        )
        .await
        .map_err(|_| err("connect timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| err(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.clone(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(body.to_vec())
    })
}
