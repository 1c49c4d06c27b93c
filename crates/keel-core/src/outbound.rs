//! Which addresses Keel's outbound calls (webhooks) may reach.
//!
//! A tenant chooses a webhook URL, so without a rule a tenant could make Keel call
//! its own admin port, a cloud metadata service or anything else on the private
//! network, and read the answers' status and timing from the attempt log. The rule:
//! only public unicast addresses, unless the operator allows a CIDR or a host name.
//! The check is applied to the address actually connected to (after DNS), so a
//! name that resolves to an internal address — or is rebound to one — is refused
//! too; the HTTP client that enforces it is in `keel-server::outbound`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `ADDRESS/PREFIX`, or a bare address (a single host).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (address, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            // An IPv4 rule also covers the IPv4-mapped IPv6 form of its addresses.
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn prefix_matches(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Whether `ip` is anything but a public unicast address: loopback, private
/// (RFC 1918), link-local (cloud metadata lives there), carrier-grade NAT,
/// unique-local, unspecified, multicast, broadcast, reserved and documentation
/// ranges — and the IPv6 forms that embed an IPv4 address, judged by that address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", including 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF protocol, TEST-NET-1
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast, reserved, broadcast
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_internal_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 6to4 (2002::/16) embeds an IPv4 address in bits 16–48.
    if s[0] == 0x2002 {
        return is_internal_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    s[0..6] == [0, 0, 0, 0, 0, 0] // ::, ::1 and the deprecated IPv4-compatible ::/96
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: the real peer is hidden
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
}

/// The operator's exceptions to "public addresses only".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    networks: Vec<Cidr>,
    /// Lower-case, without a trailing dot.
    hosts: Vec<String>,
}

impl AddressPolicy {
    /// Each entry is a CIDR, an IP address, or a host name.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry.contains('/') || entry.parse::<IpAddr>().is_ok() {
                policy
                    .networks
                    .push(Cidr::parse(entry).map_err(|e| format!("webhook_allow: {e}"))?);
            } else if is_host_name(entry.trim_end_matches('.')) {
                policy.hosts.push(normalise_host(entry));
            } else {
                return Err(format!(
                    "webhook_allow: {entry:?} is neither a CIDR nor a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// May an outbound call connect to `ip`?
    pub fn permits_address(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.networks.iter().any(|n| n.contains(ip))
    }

    /// May a URL name this host? `localhost` and its subdomains only when the
    /// operator allowed them; any other name is judged by what it resolves to.
    pub fn permits_name(&self, host: &str) -> bool {
        let host = normalise_host(host);
        let local = host == "localhost" || host.ends_with(".localhost");
        !local || self.hosts.contains(&host)
    }

    /// May a URL with this host be called, as far as can be known without
    /// resolving it: an IP literal by [`Self::permits_address`], a name by
    /// [`Self::permits_name`].
    pub fn permits_url_host(&self, host: Option<url::Host<&str>>) -> bool {
        match host {
            Some(url::Host::Ipv4(ip)) => self.permits_address(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.permits_address(ip.into()),
            Some(url::Host::Domain(name)) => self.permits_name(name),
            None => false,
        }
    }

    /// Did the operator allow this host name, whatever it resolves to?
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.hosts.contains(&host)
    }
}

fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(is_internal(ip(internal)), "{internal} is internal");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_internal(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn cidrs_and_hosts_make_exceptions() {
        let policy =
            AddressPolicy::parse(&["10.0.0.0/8".into(), "::1".into(), "Hooks.Internal.".into()])
                .unwrap();
        assert!(policy.permits_address(ip("10.200.0.1")));
        assert!(policy.permits_address(ip("::ffff:10.0.0.1")));
        assert!(policy.permits_address(ip("::1")));
        assert!(!policy.permits_address(ip("127.0.0.1")));
        assert!(!policy.permits_address(ip("192.168.0.1")));
        assert!(policy.permits_address(ip("8.8.8.8")));
        assert!(policy.allows_host("hooks.internal"));
        assert!(!AddressPolicy::default().permits_name("LocalHost."));
        assert!(!AddressPolicy::default().permits_name("a.localhost"));
        assert!(AddressPolicy::default().permits_name("hooks.example.com"));
        assert!(!policy.allows_host("other.internal"));
        for bad in ["10.0.0.0/33", "300.1.1.1/8", "a b", "::1/129"] {
            assert!(AddressPolicy::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(!AddressPolicy::default().permits_address(ip("127.0.0.1")));
    }

    #[test]
    fn prefixes_match_bit_by_bit() {
        let net = Cidr::parse("192.168.4.0/22").unwrap();
        assert!(net.contains(ip("192.168.7.255")));
        assert!(!net.contains(ip("192.168.8.0")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }
}
