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

/// Whether `ip` is a globally routable unicast address. IPv6 forms that carry an IPv4
/// address (mapped, compatible, SIIT-translated, NAT64, 6to4, Teredo) are judged by that
/// IPv4 address, so `[::127.0.0.1]`, `[64:ff9b::7f00:1]` or `[2002:7f00:1::1]` are the
/// loopback they embed; the rest of IANA's special-purpose IPv6 ranges that are not
/// globally reachable are refused as such.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// The IPv4 addresses an IPv6 address stands for, by the form it has.
fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => vec![v4(hi, lo)],
        // ::ffff:0:a.b.c.d (SIIT, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => vec![v4(hi, lo)],
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix, RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => vec![v4(hi, lo)],
        // 2002:AABB:CCDD::/48 (6to4, RFC 3056).
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        // 2001:0::/32 (Teredo, RFC 4380): the server, and the client obfuscated by XOR.
        [0x2001, 0, server_hi, server_lo, _, _, client_hi, client_lo] => {
            vec![v4(server_hi, server_lo), v4(!client_hi, !client_lo)]
        }
        _ => Vec::new(),
    }
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    if v6.is_loopback() || v6.is_unspecified() {
        return false;
    }
    let embedded = embedded_ipv4(v6);
    if !embedded.is_empty() {
        return embedded.into_iter().all(is_public_v4);
    }
    let in_prefix = |prefix: [u16; 8], bits: u32| {
        u128::from(v6) >> (128 - bits) == u128::from(Ipv6Addr::from(prefix)) >> (128 - bits)
    };
    // Global unicast is 2000::/3; everything else (multicast, unique- and link-local,
    // site-local, 100::/64 discard, local-use NAT64 64:ff9b:1::/48, SRv6 5f00::/16, reserved)
    // is not globally reachable.
    in_prefix([0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
        && !in_prefix([0x2001, 0, 0, 0, 0, 0, 0, 0], 23) // IETF protocol assignments
        && !in_prefix([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32) // documentation
        && !in_prefix([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20) // documentation (RFC 9637)
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
            // IPv6 forms of private IPv4 addresses.
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::1:7f00:1",
            "64:ff9b:1::808:808",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001:0:808:808::80ff:fefe",
            "2001:0:7f00:1::f7f7:f7f7",
            // Other special-purpose IPv6 ranges.
            "fec0::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "ff02::1",
            "4000::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:808:808::f7f7:f7f7",
        ] {
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
