//! Free ports for local nodes.

use std::collections::BTreeSet;

use super::{ClusterError, io};

/// A free TCP port on 127.0.0.1 for a node to listen on.
///
/// The port is checked by binding and released, so a node started right after gets it —
/// unless someone else takes it first. Ports are therefore drawn at random *below* the
/// kernel's ephemeral range: outgoing connections (every HTTP client, every peer link) take
/// ephemeral ports, and a port from `bind(:0)` could be handed to one of them before the
/// node binds it. Ports in `taken` (those already given to this cluster's nodes, which
/// may not have bound them yet) are never returned.
pub fn free_addr(taken: &BTreeSet<u16>) -> Result<String, ClusterError> {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 11_000 {
        let mut rng = rand::rng();
        for _ in 0..100 {
            let port = rng.random_range(10_000..low);
            if taken.contains(&port) {
                continue;
            }
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                drop(l);
                return Ok(format!("127.0.0.1:{port}"));
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let addr = l.local_addr().map_err(io("finding a free port"))?;
    Ok(addr.to_string())
}

/// The port of a `host:port` address.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.parse().ok()
}
