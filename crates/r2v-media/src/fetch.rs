//! The SSRF-guarded HTTP fetcher for reference URLs (and, later, webhooks).
//!
//! The guard refuses loopback, private, link-local, CGNAT, multicast and unspecified
//! addresses unless the operator allows them. It applies in three places: literal IPs in
//! the URL, every address a host name resolves to (a custom resolver, so the address
//! checked is the address connected to), and every redirect hop. Proxies from the
//! environment are ignored. The body is streamed with a size cap, and the whole fetch
//! has a timeout.

use crate::error::MediaError;
use futures_util::StreamExt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the fetcher may reach, and how long it may take.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Allow every non-public address (loopback, private ranges, link-local…).
    pub allow_private: bool,
    /// Non-public addresses allowed one by one, for operators who need just a few.
    pub allowed_addresses: Vec<IpAddr>,
    /// Limit for the whole fetch, body included.
    pub timeout: Duration,
    /// Limit for connecting.
    pub connect_timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            allowed_addresses: Vec::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
        }
    }
}

impl FetchPolicy {
    /// Whether the guard lets a connection to `ip` through.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || self.allowed_addresses.contains(&ip) || is_public(ip)
    }

    fn check_url(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme `{}` is not allowed; use http or https",
                url.scheme()
            ));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("the URL has no host".to_owned()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "the address {ip} is private, loopback or link-local, which this server does not fetch from"
            ))
        }
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// Resolves names with the system resolver and drops the addresses the policy refuses.
struct GuardedResolver {
    policy: Arc<FetchPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if allowed.is_empty() {
                let shown: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses ({}), which this server does not fetch from",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client that enforces a [`FetchPolicy`]. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<FetchPolicy>,
}

impl Fetcher {
    /// Builds the client for `policy`.
    pub fn new(policy: FetchPolicy) -> Result<Self, MediaError> {
        // reqwest is built without a bundled crypto provider; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(policy.timeout)
            .connect_timeout(policy.connect_timeout)
            .user_agent(concat!("r2v/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver {
                policy: policy.clone(),
            })
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > redirect_policy.max_redirects {
                    let max = redirect_policy.max_redirects;
                    return attempt.error(format!("more than {max} redirects"));
                }
                match redirect_policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(reason) => {
                        let reason = format!("redirected to {}: {reason}", attempt.url());
                        attempt.error(reason)
                    }
                }
            }))
            .build()
            .map_err(|e| {
                MediaError::io("could not build the HTTP client", std::io::Error::other(e))
            })?;
        Ok(Self { client, policy })
    }

    /// The policy this fetcher enforces.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Downloads `url`, refusing bodies over `max_bytes` while they stream in.
    pub async fn get(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, MediaError> {
        let fail = |reason: String| MediaError::Download {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| fail(format!("the URL is invalid ({e})")))?;
        self.policy.check_url(&parsed).map_err(fail)?;
        let response = self
            .client
            .get(parsed)
            .send()
            .await
            .map_err(|e| fail(describe(&e, self.policy.timeout)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("the server answered {status}")));
        }
        if response.content_length().is_some_and(|len| len > max_bytes) {
            return Err(MediaError::TooLarge {
                max_size: max_bytes,
            });
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| fail(describe(&e, self.policy.timeout)))?;
            if body.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(MediaError::TooLarge {
                    max_size: max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl Fetcher {
    /// POSTs `body` as JSON with extra `headers` (webhook delivery), through the same
    /// guard; returns the response status.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<u16, MediaError> {
        let fail = |reason: String| MediaError::Download {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| fail(format!("the URL is invalid ({e})")))?;
        self.policy.check_url(&parsed).map_err(fail)?;
        let mut request = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(describe(&e, self.policy.timeout)))?;
        Ok(response.status().as_u16())
    }

    /// Checks `url` against the guard now, resolving its host: for URLs that are only
    /// used later (webhooks), so that a bad one is refused when it is given.
    pub async fn check(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("the URL is invalid ({e})"))?;
        self.policy.check_url(&parsed)?;
        if let Some(url::Host::Domain(host)) = parsed.host() {
            let port = parsed.port_or_known_default().unwrap_or(80);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("{host} does not resolve ({e})"))?
                .collect();
            if !addrs.iter().any(|a| self.policy.permits(a.ip())) {
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses, which this server does not send to"
                ));
            }
        }
        Ok(())
    }
}

/// The most specific words in a reqwest error's source chain.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no complete answer within {}s", timeout.as_secs());
    }
    let mut innermost = None;
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    match innermost {
        Some(text) if !text.is_empty() => text,
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let policy = FetchPolicy::default();
        for url in [
            "http://127.0.0.1/x",
            "http://[::1]/",
            "file:///etc/passwd",
            "http://169.254.169.254/latest",
        ] {
            assert!(
                policy.check_url(&url::Url::parse(url).unwrap()).is_err(),
                "{url}"
            );
        }
        let allowed = FetchPolicy {
            allowed_addresses: vec!["127.0.0.2".parse().unwrap()],
            ..FetchPolicy::default()
        };
        assert!(
            allowed
                .check_url(&url::Url::parse("http://127.0.0.2:9/").unwrap())
                .is_ok()
        );
    }
}
