//! The outbound policy at connection time: names are resolved here, every
//! address is checked with [`OutboundPolicy`], and only the addresses that
//! pass are handed to the connector (reqwest's, or the database probe's),
//! so a DNS answer cannot swap in an address that was never checked.

use rekey_core::outbound::{OutboundPolicy, Refusal};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

/// A connection the policy refused. The message names the host, the
/// address and the range, never a path or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub reason: Refusal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outbound connection refused: ")?;
        if host_is_ip(&self.host, &self.ip) {
            write!(f, "{} is ", self.ip)?;
        } else {
            write!(f, "{} resolves to {}, ", self.host, self.ip)?;
        }
        write!(
            f,
            "{}; an operator can allow it with --allow-outbound",
            self.reason
        )
    }
}

impl std::error::Error for Refused {}

fn host_is_ip(host: &str, ip: &IpAddr) -> bool {
    host.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .is_ok_and(|h| h == *ip)
}

/// Resolving a name failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
}

/// The policy shared by every outbound client of one service, plus (in
/// test builds only) fixed answers for chosen names.
#[derive(Debug, Default)]
pub struct Outbound {
    policy: RwLock<Arc<OutboundPolicy>>,
    static_hosts: RwLock<HashMap<String, Vec<IpAddr>>>,
}

impl Outbound {
    pub fn new(policy: OutboundPolicy) -> Arc<Outbound> {
        Arc::new(Outbound {
            policy: RwLock::new(Arc::new(policy)),
            static_hosts: RwLock::new(HashMap::new()),
        })
    }

    pub fn set_policy(&self, p: OutboundPolicy) {
        if let Ok(mut w) = self.policy.write() {
            *w = Arc::new(p);
        }
    }

    pub fn policy(&self) -> Arc<OutboundPolicy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|_| Arc::new(OutboundPolicy::default()))
    }

    /// May we connect to `ip`, which `host` named or resolved to?
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        self.policy()
            .check(Some(host), ip)
            .map_err(|reason| Refused {
                host: host.to_string(),
                ip,
                reason,
            })
    }

    /// Answer `host` with `ips` instead of asking DNS (tests only: names
    /// like `metadata.test` that resolve to refused addresses without
    /// touching the network).
    #[cfg(any(test, feature = "test-hosts"))]
    pub fn set_static_host(&self, host: &str, ips: &[IpAddr]) {
        if let Ok(mut m) = self.static_hosts.write() {
            m.insert(
                host.trim_end_matches('.').to_ascii_lowercase(),
                ips.to_vec(),
            );
        }
    }

    /// Resolve `host` and keep the addresses the policy allows. When every
    /// address is refused, the first refusal is the error.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host.trim_matches(['[', ']']);
        let fixed = self.static_hosts.read().ok().and_then(|m| {
            m.get(&bare.trim_end_matches('.').to_ascii_lowercase())
                .cloned()
        });
        let all: Vec<SocketAddr> = match fixed {
            Some(ips) => ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            None => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|source| ResolveError::Lookup {
                    host: bare.to_string(),
                    source,
                })?
                .collect(),
        };
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(all.len());
        for a in all {
            match self.check(bare, a.ip()) {
                Ok(()) => allowed.push(a),
                Err(r) => {
                    first_refusal.get_or_insert(r);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some(r)) => Err(r.into()),
            (true, None) => Err(ResolveError::Lookup {
                host: bare.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
            }),
            (false, _) => Ok(allowed),
        }
    }
}

/// reqwest's resolver: every name the HTTP client connects to goes
/// through [`Outbound::resolve`].
pub(crate) struct PolicyResolver(pub(crate) Arc<Outbound>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let outbound = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = outbound.resolve(&host, 0).await.map_err(
                |e| -> Box<dyn std::error::Error + Send + Sync> {
                    match e {
                        ResolveError::Refused(r) => Box::new(r),
                        other => Box::new(other),
                    }
                },
            )?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolve_checks_every_address() {
        let o = Outbound::new(OutboundPolicy::default());
        // Literal addresses go through the same check.
        let e = o.resolve("169.254.169.254", 80).await.unwrap_err();
        assert!(
            matches!(&e, ResolveError::Refused(r) if r.reason == Refusal::LinkLocal),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "outbound connection refused: 169.254.169.254 is a link-local address \
             (cloud metadata service); an operator can allow it with --allow-outbound"
        );
        let e = o.resolve("[::ffff:10.0.0.1]", 80).await.unwrap_err();
        assert!(matches!(e, ResolveError::Refused(_)), "{e}");
        let ok = o.resolve("127.0.0.1", 8080).await.unwrap();
        assert_eq!(ok, vec!["127.0.0.1:8080".parse().unwrap()]);
        o.set_policy(OutboundPolicy::parse("169.254.169.254").unwrap());
        assert!(o.resolve("169.254.169.254", 80).await.is_ok());
    }

    #[test]
    fn refusal_names_host_and_address() {
        let r = Refused {
            host: "metadata.test".into(),
            ip: "169.254.169.254".parse().unwrap(),
            reason: Refusal::LinkLocal,
        };
        assert!(r.to_string().starts_with(
            "outbound connection refused: metadata.test resolves to 169.254.169.254, a link-local"
        ));
    }
}
