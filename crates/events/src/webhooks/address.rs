//! No server-side request forgery: a webhook URL must be `https://` and must not reach the service's own
//! network. Checked when the endpoint is made (a 422 names the reason) and again at every delivery, where
//! the HTTP client resolves names only through [`GuardedResolver`]: a name that resolved to a public address
//! when it was registered and to `127.0.0.1` later (DNS rebinding) is refused at the connection. Redirects are
//! never followed. `WEBHOOK_ALLOW_INSECURE=on` lifts both rules, for local use and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("the URL must be https:// (WEBHOOK_ALLOW_INSECURE=on allows http:// for local use)")]
    NotHttps,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL must be at most {MAX_URL_CHARS} characters")]
    TooLong,
    #[error("{host} is a loopback, link-local, private or otherwise internal address ({ip})")]
    Internal { host: String, ip: IpAddr },
    #[error("{0} does not resolve")]
    Unresolvable(String),
}

/// Checks a URL's form, and its host when it is an address. Names are checked by [`check_resolved`].
pub fn check_url(text: &str, allow_insecure: bool) -> Result<Url, Refused> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(Refused::TooLong);
    }
    let url = Url::parse(text).map_err(|error| Refused::Malformed(error.to_string()))?;
    let scheme_ok = url.scheme() == "https" || (allow_insecure && url.scheme() == "http");
    if !scheme_ok {
        return Err(Refused::NotHttps);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    let ip = match url.host() {
        None => return Err(Refused::Malformed("the URL has no host".into())),
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = ip.filter(|ip| !allow_insecure && !is_public(*ip)) {
        return Err(Refused::Internal { host: url.host_str().unwrap_or_default().to_owned(), ip });
    }
    Ok(url)
}

/// Resolves the URL's host name and refuses it when any of its addresses is internal.
pub async fn check_resolved(url: &Url, allow_insecure: bool) -> Result<(), Refused> {
    let Some(Host::Domain(name)) = url.host() else { return Ok(()) };
    if allow_insecure {
        return Ok(());
    }
    public_addresses(name).await.map(|_| ())
}

/// The longest a name's lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

async fn public_addresses(name: &str) -> Result<Vec<SocketAddr>, Refused> {
    let unresolvable = || Refused::Unresolvable(name.to_owned());
    let addresses: Vec<SocketAddr> = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| unresolvable())?
        .map_err(|_| unresolvable())?
        .collect();
    if addresses.is_empty() {
        return Err(Refused::Unresolvable(name.to_owned()));
    }
    if let Some(inside) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(Refused::Internal { host: name.to_owned(), ip: inside.ip() });
    }
    Ok(addresses)
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique local), link-local,
/// shared (carrier-grade NAT), unspecified, broadcast, multicast, documentation or reserved; an IPv4 address
/// inside IPv6 (mapped or compatible) is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped().or_else(|| compatible_v4(v6)) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn compatible_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1))
        .then(|| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let internal = ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240; // reserved
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let internal = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b; // NAT64, which may reach IPv4 internals
    !internal
}

/// The delivery client's resolver: the system's, with every internal address refused (unless insecure).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_insecure: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_insecure = self.allow_insecure;
        Box::pin(async move {
            let name = name.as_str().to_owned();
            let addresses = if allow_insecure {
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect()
            } else {
                public_addresses(&name).await?
            };
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for internal in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::3",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = internal.parse().expect("an address");
            assert!(!is_public(ip), "{internal} must be refused");
        }
        for public in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(is_public(ip), "{public} must pass");
        }
    }

    #[test]
    fn urls_must_be_https_without_credentials_and_not_at_internal_addresses() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert_eq!(check_url("http://example.com/hook", false).err(), Some(Refused::NotHttps));
        assert_eq!(check_url("ftp://example.com/", true).err(), Some(Refused::NotHttps));
        assert_eq!(check_url("https://u:p@example.com/", false).err(), Some(Refused::Credentials));
        assert!(matches!(check_url("https://127.0.0.1/", false), Err(Refused::Internal { .. })));
        assert!(matches!(check_url("https://[::ffff:7f00:1]/", false), Err(Refused::Internal { .. })));
        assert!(
            matches!(check_url("https://0x7f000001/", false), Err(Refused::Internal { .. })),
            "hex IPv4 is an address"
        );
        assert!(matches!(check_url("https://2130706433/", false), Err(Refused::Internal { .. })), "decimal IPv4 too");
        assert!(matches!(check_url("not a url", false), Err(Refused::Malformed(_))));
        assert_eq!(
            check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS)), false).err(),
            Some(Refused::TooLong)
        );
        assert!(check_url("http://127.0.0.1:9000/hook", true).is_ok(), "allowed when insecure");
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_registration_and_at_connection() {
        let url = check_url("https://localhost/hook", false).expect("a well-formed https URL");
        assert!(matches!(check_resolved(&url, false).await, Err(Refused::Internal { .. })));
        let resolved = GuardedResolver { allow_insecure: false }.resolve("localhost".parse().expect("a name")).await;
        assert!(resolved.is_err(), "the delivery client cannot connect to it either");
        assert!(GuardedResolver { allow_insecure: true }.resolve("localhost".parse().expect("a name")).await.is_ok());
    }
}
