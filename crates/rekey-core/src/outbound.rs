//! Outbound address policy: which IP addresses rekey may connect to when it
//! calls a URL or host that someone configured (probe URLs, webhook
//! receivers, integration endpoints, service-account `token_uri`, database
//! probe hosts).
//!
//! By default rekey refuses addresses inside the network it runs in: the
//! cloud metadata service and other link-local addresses, private and
//! unique-local ranges, CGNAT, unspecified, multicast, broadcast and
//! reserved addresses, also when written as IPv4-mapped (or NAT64, 6to4)
//! IPv6. Loopback stays allowed (a local relay, tests). An operator can
//! allow named CIDR ranges or exact host names (`--allow-outbound`).
//!
//! Pure: the caller resolves names and asks about each address.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `0.0.0.0/8`, `::` (on Linux, `0.0.0.0` reaches the host itself).
    Unspecified,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64/10` (RFC 6598, carrier-grade NAT).
    SharedAddressSpace,
    /// `169.254/16` (cloud metadata), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated site-local).
    SiteLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240/4`, IPv4-compatible IPv6 (`::a.b.c.d`), loopback behind NAT64/6to4.
    Reserved,
}

impl Refusal {
    /// Stable short name, for messages and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Unspecified => "an unspecified address",
            Refusal::Private => "a private address",
            Refusal::SharedAddressSpace => "a carrier-grade NAT address (100.64.0.0/10)",
            Refusal::LinkLocal => "a link-local address (cloud metadata service)",
            Refusal::UniqueLocal => "a unique-local IPv6 address",
            Refusal::SiteLocal => "a site-local IPv6 address",
            Refusal::Multicast => "a multicast address",
            Refusal::Broadcast => "the broadcast address",
            Refusal::Reserved => "a reserved address",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<Refusal> {
    let [o0, o1, ..] = a.octets();
    if a.is_loopback() {
        None
    } else if o0 == 0 {
        Some(Refusal::Unspecified)
    } else if a.is_private() {
        Some(Refusal::Private)
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        Some(Refusal::SharedAddressSpace)
    } else if a.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if a.is_multicast() {
        Some(Refusal::Multicast)
    } else if a.is_broadcast() {
        Some(Refusal::Broadcast)
    } else if o0 >= 240 {
        Some(Refusal::Reserved)
    } else {
        None
    }
}

/// An IPv4 address reached through a translation prefix: refused like the
/// IPv4 address itself, and loopback is not loopback there.
fn classify_embedded(a: Ipv4Addr) -> Option<Refusal> {
    if a.is_loopback() {
        Some(Refusal::Reserved)
    } else {
        classify_v4(a)
    }
}

fn classify_v6(a: Ipv6Addr) -> Option<Refusal> {
    let s = a.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if a.is_loopback() {
        None
    } else if a.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if let Some(m) = a.to_ipv4_mapped() {
        classify_v4(m)
    } else if s[..6].iter().all(|x| *x == 0) {
        // IPv4-compatible (::a.b.c.d), deprecated by RFC 4291.
        Some(Refusal::Reserved)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96.
        classify_embedded(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
        classify_embedded(v4(s[1], s[2]))
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some(Refusal::SiteLocal)
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some(Refusal::UniqueLocal)
    } else if a.is_multicast() {
        Some(Refusal::Multicast)
    } else {
        None
    }
}

/// Why rekey refuses `ip` by default, or `None` when it may connect there.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

/// The refused ranges plus the operator's explicit exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

/// A host name as compared: lower case, without a trailing dot.
fn normalize_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl OutboundPolicy {
    /// The default: refuse every range of [`classify`], allow nothing extra.
    pub fn new() -> OutboundPolicy {
        OutboundPolicy::default()
    }

    /// Parse a comma-separated list of CIDR ranges (`10.20.0.0/16`,
    /// `fd00::/8`), single addresses (`10.0.0.5`) and exact host names
    /// (`vault.internal`). Blank items are ignored; anything else that is
    /// not one of those is an error naming the item.
    pub fn parse(spec: &str) -> Result<OutboundPolicy, String> {
        OutboundPolicy::from_entries(spec.split(','))
    }

    /// As [`OutboundPolicy::parse`], one entry per item.
    pub fn from_entries<I, S>(entries: I) -> Result<OutboundPolicy, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut p = OutboundPolicy::default();
        for e in entries {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            let shown: String = e.chars().take(80).collect();
            if e.contains('/') {
                let net: IpNet = e
                    .parse()
                    .map_err(|_| format!("`{shown}` is not a valid CIDR range"))?;
                p.nets.push(net.trunc());
            } else if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
                p.nets.push(IpNet::from(ip));
            } else {
                let h = normalize_host(e);
                if !valid_host_name(&h) || h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return Err(format!(
                        "`{shown}` is neither a CIDR range, an IP address nor a host name"
                    ));
                }
                p.hosts.push(h);
            }
        }
        p.nets.sort();
        p.nets.dedup();
        p.hosts.sort();
        p.hosts.dedup();
        Ok(p)
    }

    /// True when nothing is allowed beyond the defaults.
    pub fn is_default(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }

    /// The explicit exceptions, for the start-up log.
    pub fn entries(&self) -> Vec<String> {
        self.nets
            .iter()
            .map(ToString::to_string)
            .chain(self.hosts.iter().cloned())
            .collect()
    }

    /// `host` is on the allow-list by name.
    pub fn allows_host(&self, host: &str) -> bool {
        let h = normalize_host(host.trim_matches(['[', ']']));
        self.hosts.contains(&h)
    }

    /// May rekey connect to `ip`? Allowed ranges win over refused ones.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let c = canonical(ip);
        match classify(c) {
            None => Ok(()),
            Some(_) if self.nets.iter().any(|n| n.contains(&c) || n.contains(&ip)) => Ok(()),
            Some(r) => Err(r),
        }
    }

    /// May rekey connect to `ip`, which `host` resolved to? A host name on
    /// the allow-list allows every address it resolves to.
    pub fn check(&self, host: Option<&str>, ip: IpAddr) -> Result<(), Refusal> {
        if host.is_some_and(|h| self.allows_host(h)) {
            return Ok(());
        }
        self.check_ip(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused(s: &str) -> Option<Refusal> {
        OutboundPolicy::new().check_ip(ip(s)).err()
    }

    #[test]
    fn public_and_loopback_addresses_are_allowed() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "127.0.0.1",
            "127.255.255.254",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "223.255.255.255",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2001:db8::1",
            "fbff:ffff::1",
            "fe00::1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(refused(a), None, "{a} should be allowed");
        }
    }

    #[test]
    fn every_refused_range_is_refused_at_both_ends() {
        use Refusal::*;
        for (a, r) in [
            ("0.0.0.0", Unspecified),
            ("0.255.255.255", Unspecified),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("192.168.0.0", Private),
            ("192.168.255.255", Private),
            ("100.64.0.0", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("169.254.0.0", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("169.254.255.255", LinkLocal),
            ("224.0.0.0", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.0", Reserved),
            ("254.255.255.255", Reserved),
            ("255.255.255.255", Broadcast),
            ("::", Unspecified),
            ("fe80::", LinkLocal),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
            ("fec0::1", SiteLocal),
            ("fc00::", UniqueLocal),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UniqueLocal),
            ("fd00:ec2::254", UniqueLocal),
            ("ff02::1", Multicast),
            ("ff00::", Multicast),
        ] {
            assert_eq!(refused(a), Some(r), "{a}");
        }
    }

    #[test]
    fn ipv4_written_as_ipv6_is_judged_as_ipv4() {
        use Refusal::*;
        for (a, r) in [
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:a9fe:a9fe", LinkLocal),
            ("::ffff:10.0.0.5", Private),
            ("::ffff:172.16.0.1", Private),
            ("::ffff:192.168.1.1", Private),
            ("::ffff:100.64.0.1", SharedAddressSpace),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:224.0.0.1", Multicast),
            ("::ffff:255.255.255.255", Broadcast),
            // IPv4-compatible (deprecated), NAT64 and 6to4 forms.
            ("::169.254.169.254", Reserved),
            ("::10.0.0.1", Reserved),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::10.1.2.3", Private),
            ("64:ff9b::127.0.0.1", Reserved),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2002:c0a8:0101::", Private),
            ("2002:7f00:1::", Reserved),
        ] {
            assert_eq!(refused(a), Some(r), "{a}");
        }
        assert_eq!(canonical(ip("::ffff:10.0.0.5")), ip("10.0.0.5"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
    }

    #[test]
    fn allow_list_ranges_let_named_addresses_through() {
        let p = OutboundPolicy::parse("10.20.0.0/16, 169.254.169.254 ,fd00::/8").unwrap();
        assert_eq!(p.check_ip(ip("10.20.0.0")), Ok(()));
        assert_eq!(p.check_ip(ip("10.20.255.255")), Ok(()));
        assert_eq!(p.check_ip(ip("::ffff:10.20.1.1")), Ok(()));
        assert_eq!(p.check_ip(ip("10.19.255.255")), Err(Refusal::Private));
        assert_eq!(p.check_ip(ip("10.21.0.0")), Err(Refusal::Private));
        assert_eq!(p.check_ip(ip("169.254.169.254")), Ok(()));
        assert_eq!(p.check_ip(ip("169.254.169.253")), Err(Refusal::LinkLocal));
        assert_eq!(p.check_ip(ip("fd12::1")), Ok(()));
        assert_eq!(p.check_ip(ip("fc00::1")), Err(Refusal::UniqueLocal));
        // A host name only allows itself.
        assert_eq!(
            p.check(Some("intranet.test"), ip("10.0.0.5")),
            Err(Refusal::Private)
        );
        assert_eq!(
            p.entries(),
            vec!["10.20.0.0/16", "169.254.169.254/32", "fd00::/8"]
        );
    }

    #[test]
    fn allow_list_host_names_match_exactly() {
        let p = OutboundPolicy::parse("Vault.Internal.,db").unwrap();
        assert!(!p.is_default());
        for h in ["vault.internal", "VAULT.internal.", "db"] {
            assert_eq!(p.check(Some(h), ip("10.0.0.5")), Ok(()), "{h}");
        }
        for h in ["x.vault.internal", "vault.internal.evil", "db2"] {
            assert_eq!(
                p.check(Some(h), ip("10.0.0.5")),
                Err(Refusal::Private),
                "{h}"
            );
        }
        assert_eq!(p.check(None, ip("10.0.0.5")), Err(Refusal::Private));
        assert_eq!(p.check(Some("anything"), ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn allow_list_values_are_validated() {
        assert!(OutboundPolicy::parse("").unwrap().is_default());
        assert!(OutboundPolicy::parse(" , ").unwrap().is_default());
        // A host part in a range is dropped: 10.1.2.3/8 means 10.0.0.0/8.
        assert_eq!(
            OutboundPolicy::parse("10.1.2.3/8").unwrap().entries(),
            vec!["10.0.0.0/8"]
        );
        assert_eq!(
            OutboundPolicy::parse("[fd00::1]").unwrap().entries(),
            vec!["fd00::1/128"]
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "fd00::/129",
            "not a host",
            "http://x",
            "*.internal",
            "a..b",
            "-x.internal",
            "10.0.0.256",
            "1.2.3",
        ] {
            let e = OutboundPolicy::parse(&format!("10.0.0.0/8,{bad}")).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
