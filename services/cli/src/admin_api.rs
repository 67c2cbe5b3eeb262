//! A client of the errors service's admin API (`/api/v1`), for the operator commands.

use anyhow::Context;
use billsync_config::Config;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Requests the CLI makes answer quickly; a bulk retry of many failures may take a while.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum AdminApiError {
    #[error("the errors service at {base} answered {status}: {message}")]
    Refused {
        base: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach the errors service at {base} (is it running? pass --url to point elsewhere): {source}")]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
}

/// The admin API at one base URL, with the bearer token.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
    timeout: Duration,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client, giving up on each request after `timeout` (a status report must
    /// not wait minutes for an unresponsive service).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The client for `config`: `url` when given, else `errors.listen`; the token is
    /// `errors.admin_token`.
    pub fn from_config(config: &Config, url: Option<&str>) -> anyhow::Result<Self> {
        let token = config
            .errors
            .admin_token
            .as_ref()
            .and_then(|token| token.value())
            .with_context(|| {
                format!(
                    "{}: errors.admin_token is not configured; the admin API needs it",
                    config.origin.display()
                )
            })?;
        let base = match url {
            Some(url) => url.to_string(),
            None => base_url_of(config.errors.listen),
        };
        Self::new(&base, token)
    }

    pub async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, AdminApiError> {
        let request = self.http.get(self.url(path)).query(query);
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| self.unreachable(e))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, AdminApiError> {
        let request = self.http.post(self.url(path)).json(body);
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// A successful response to `GET path`, for bodies read as a stream (the CSV).
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, AdminApiError> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AdminApiError> {
        let response = request
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(AdminApiError::Refused {
            base: self.base.clone(),
            status: status.as_u16(),
            message,
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> AdminApiError {
        AdminApiError::Unreachable {
            base: self.base.clone(),
            source,
        }
    }
}

/// Where to reach a service listening on `listen`: a wildcard address means this machine.
fn base_url_of(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_reached_on_this_machine() {
        assert_eq!(
            base_url_of("0.0.0.0:8090".parse().expect("addr")),
            "http://127.0.0.1:8090"
        );
        assert_eq!(
            base_url_of("[::]:8090".parse().expect("addr")),
            "http://[::1]:8090"
        );
        assert_eq!(
            base_url_of("10.1.2.3:9000".parse().expect("addr")),
            "http://10.1.2.3:9000"
        );
    }
}
