//! Client sockets that have not authenticated yet (TLS handshake and HTTP upgrade request in
//! progress): capped in total and per client address group, so silent sockets from one place
//! can neither exhaust the process's descriptors nor lock other clients out. A socket over a
//! cap is closed at once, before any byte is read.

use crate::policy::canonical;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The group a client address counts in: an IPv4 address alone, an IPv6 address by its
/// `/v6_prefix` network (one customer usually holds a whole /64, RFC 6177).
pub fn client_group(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match canonical(ip) {
        IpAddr::V4(a) => IpNet::from(IpAddr::V4(a)),
        IpAddr::V6(a) => IpNet::new(IpAddr::V6(a), v6_prefix.min(128))
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(IpAddr::V6(a))),
    }
}

/// The name a group goes by in logs and as a `--no-auth` identity: the bare address for
/// IPv4, `network/prefix` for IPv6.
pub fn group_name(group: &IpNet) -> String {
    match group {
        IpNet::V4(n) => n.addr().to_string(),
        IpNet::V6(n) => n.to_string(),
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_group: HashMap<IpNet, usize>,
}

/// The pre-authentication caps.
#[derive(Debug)]
pub struct Preauth {
    max_total: usize,
    max_per_group: usize,
    v6_prefix: u8,
    counts: Mutex<Counts>,
}

/// One unauthenticated socket's place; freed when dropped (authenticated, refused, or gone).
#[derive(Debug)]
pub struct PreauthSlot {
    owner: Arc<Preauth>,
    group: IpNet,
}

impl Preauth {
    pub fn new(max_total: usize, max_per_group: usize, v6_prefix: u8) -> Arc<Self> {
        Arc::new(Preauth {
            max_total,
            max_per_group,
            v6_prefix,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a socket from `ip`, or says which cap is full. `per_group: false`
    /// (a trusted load balancer, which carries many clients) counts in the total only.
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr, per_group: bool) -> Result<PreauthSlot, &'static str> {
        let group = client_group(ip, self.v6_prefix);
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err("pre-authentication cap (--max-preauth) reached");
        }
        let n = c.per_group.entry(group).or_insert(0);
        if per_group && *n >= self.max_per_group {
            return Err("pre-authentication cap per client address (--max-preauth-per-ip) reached");
        }
        *n += 1;
        c.total += 1;
        Ok(PreauthSlot {
            owner: self.clone(),
            group,
        })
    }

    /// Unauthenticated sockets now in the group of `ip`.
    #[cfg(test)]
    pub fn in_group(&self, ip: IpAddr) -> usize {
        let group = client_group(ip, self.v6_prefix);
        self.counts().per_group.get(&group).copied().unwrap_or(0)
    }

    /// Unauthenticated sockets now (total).
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.counts().total
    }
}

impl PreauthSlot {
    /// Moves this place to the group of `ip`, the real client a trusted balancer named
    /// (PROXY header or `X-Forwarded-For`), checking that group's `--max-preauth-per-ip`
    /// cap; the socket was admitted under the balancer's address, which is not capped.
    pub fn rebind(&mut self, ip: IpAddr) -> Result<(), &'static str> {
        let group = client_group(ip, self.owner.v6_prefix);
        if group == self.group {
            return Ok(());
        }
        let mut c = self.owner.counts();
        if c.per_group.get(&group).copied().unwrap_or(0) >= self.owner.max_per_group {
            return Err("pre-authentication cap per client address (--max-preauth-per-ip) reached");
        }
        *c.per_group.entry(group).or_insert(0) += 1;
        if let Some(n) = c.per_group.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                c.per_group.remove(&self.group);
            }
        }
        self.group = group;
        Ok(())
    }
}

impl Drop for PreauthSlot {
    fn drop(&mut self) {
        let mut c = self.owner.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_group.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                c.per_group.remove(&self.group);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        let g = |s: &str, p| group_name(&client_group(s.parse().unwrap(), p));
        assert_eq!(g("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(g("::ffff:192.0.2.7", 64), "192.0.2.7");
        assert_eq!(g("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::/64");
        assert_eq!(g("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
        assert_eq!(g("2001:db8:1:2:3:4:5:6", 128), "2001:db8:1:2:3:4:5:6/128");
    }

    #[test]
    fn caps_total_and_per_group_and_release() {
        let p = Preauth::new(3, 2, 64);
        let a1 = p.try_enter("10.0.0.1".parse().unwrap(), true).unwrap();
        let _a2 = p.try_enter("10.0.0.1".parse().unwrap(), true).unwrap();
        assert!(p
            .try_enter("10.0.0.1".parse().unwrap(), true)
            .unwrap_err()
            .contains("per client"));
        let _v6 = p.try_enter("2001:db8::1".parse().unwrap(), true).unwrap();
        assert!(p
            .try_enter("10.0.0.2".parse().unwrap(), true)
            .unwrap_err()
            .contains("--max-preauth)"));
        drop(a1);
        assert_eq!(p.total(), 2);
        // Same /64: the second address counts in the first one's group.
        let _v6b = p.try_enter("2001:db8::2".parse().unwrap(), true).unwrap();
        assert!(p.try_enter("2001:db8::3".parse().unwrap(), true).is_err());
        // Total still applies to a trusted balancer; the per-address cap does not.
        assert!(p
            .try_enter("10.0.0.1".parse().unwrap(), false)
            .unwrap_err()
            .contains("--max-preauth)"));
    }

    #[test]
    fn rebind_to_the_real_client_applies_its_cap() {
        let p = Preauth::new(100, 2, 64);
        let lb: IpAddr = "10.9.9.9".parse().unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let mut slots: Vec<_> = (0..4).map(|_| p.try_enter(lb, false).unwrap()).collect();
        slots[0].rebind(client).unwrap();
        slots[1].rebind(client).unwrap();
        assert!(slots[2]
            .rebind(client)
            .unwrap_err()
            .contains("--max-preauth-per-ip"));
        assert_eq!((p.in_group(client), p.in_group(lb)), (2, 2));
        // Another client behind the same balancer is not affected; freeing one frees its place.
        slots[3].rebind("192.0.2.8".parse().unwrap()).unwrap();
        drop(slots.remove(0));
        assert_eq!(p.in_group(client), 1);
        slots[1].rebind(client).unwrap();
        assert_eq!((p.in_group(client), p.in_group(lb), p.total()), (2, 0, 3));
    }
}
