//! The rules of a workload file that its parser cannot check: mixes that sum to 1, positive
//! rates, events inside their phase, restarts with something to restart, verification after
//! writes, sizes within the API's limits. Each problem carries the byte offset of the phase
//! or event it is about (0 when it is about the file as a whole), so that the error names
//! its line.

use std::collections::BTreeSet;
use std::time::Duration;

use super::spec::{
    Action, CacheState, DiskError, Event, KeyDistribution, Target, ValueSize, ValueSizeDist,
    WorkloadFile,
};

/// Longest duration accepted anywhere in a workload.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// (byte offset, field, message)
pub(super) type Problem = (usize, String, String);

fn check_keys(d: &KeyDistribution, at: usize, field: &str) -> Result<(), Problem> {
    let bad = |m: String| Err((at, field.to_string(), m));
    match d {
        KeyDistribution::Zipfian { theta } | KeyDistribution::Latest { theta }
            if !(*theta > 0.0 && theta.is_finite()) =>
        {
            bad(format!("theta must be positive, got {theta}"))
        }
        KeyDistribution::Hotspot {
            hot_key_fraction,
            hot_op_share,
        } if !(*hot_key_fraction > 0.0
            && *hot_key_fraction < 1.0
            && (0.0..=1.0).contains(hot_op_share)) =>
        {
            bad("hot_key_fraction must be in (0, 1) and hot_op_share in [0, 1]".into())
        }
        _ => Ok(()),
    }
}

/// The options of network events: `direction` belongs to `partition`, `delay`, `jitter`
/// and `loss` to `link-slow`, which needs a delay or a loss. Returns (field, message).
fn check_link_options(ev: &Event) -> Result<(), (&'static str, String)> {
    if ev.action != Action::Partition && ev.direction.is_some() {
        return Err((
            "direction",
            "`direction` belongs to `partition` events".into(),
        ));
    }
    if ev.action != Action::LinkSlow {
        if ev.delay.is_some() || ev.jitter.is_some() || ev.loss.is_some() {
            return Err((
                "delay",
                "`delay`, `jitter` and `loss` belong to `link-slow` events".into(),
            ));
        }
        return Ok(());
    }
    let max = Duration::from_millis(crate::wire::api::MAX_LINK_DELAY_MS);
    let delay = ev.delay.map_or(Duration::ZERO, |d| d.0);
    let jitter = ev.jitter.map_or(Duration::ZERO, |d| d.0);
    let loss = ev.loss.unwrap_or(0.0);
    if delay > max {
        return Err(("delay", format!("must be at most {max:?}")));
    }
    // Links are delayed in whole milliseconds.
    for (name, d) in [("delay", delay), ("jitter", jitter)] {
        if !d.is_zero() && d < Duration::from_millis(1) {
            return Err((
                name,
                "must be at least 1ms (links are delayed in milliseconds)".into(),
            ));
        }
    }
    if jitter > delay {
        return Err(("jitter", "cannot exceed `delay`".into()));
    }
    if !(0.0..=1.0).contains(&loss) {
        return Err(("loss", format!("must be in [0, 1], got {loss}")));
    }
    if delay.is_zero() && loss == 0.0 {
        return Err((
            "delay",
            "link-slow needs a `delay` (for example \"50ms\") or a `loss` (for example 0.05)"
                .into(),
        ));
    }
    Ok(())
}

/// The options of disk events: each belongs to one action, and some are required.
/// Returns (field, message).
fn check_disk_options(ev: &Event) -> Result<(), (&'static str, String)> {
    let slow = ev.action == Action::DiskSlow;
    if !slow && (ev.latency.is_some() || ev.duration.is_some() || ev.writes || ev.files.is_some()) {
        return Err((
            "latency",
            "`latency`, `duration`, `writes` and `files` belong to `disk-slow` events".into(),
        ));
    }
    if ev.action != Action::DiskFail && (ev.error.is_some() || ev.count.is_some()) {
        return Err((
            "error",
            "`error` and `count` belong to `disk-fail` events".into(),
        ));
    }
    match ev.action {
        Action::DiskSlow => match ev.latency {
            None => Err((
                "latency",
                "disk-slow needs a latency added to each fsync, for example `latency = \"50ms\"`"
                    .into(),
            )),
            Some(l) if l.0 < Duration::from_millis(1) || l.0 > Duration::from_secs(60) => Err((
                "latency",
                "must be between 1ms and 60s".into(),
            )),
            _ if ev.duration.is_some_and(|d| d.0.is_zero() || d.0 > MAX_DURATION) => Err((
                "duration",
                "must be positive and at most 30 days (leave it out to slow the disk until a `disk-heal` event)".into(),
            )),
            _ if ev.files.as_ref().is_some_and(|p| p.starts_with('/') || p.contains("..")) => Err((
                "files",
                "a path prefix inside the data directory, such as \"wal/\"".into(),
            )),
            _ => Ok(()),
        },
        Action::DiskFail => match (ev.error, ev.count) {
            (None, _) => Err((
                "error",
                "disk-fail needs `error = \"eio\"` (fsyncs fail) or `error = \"enospc\"` (the disk is full)".into(),
            )),
            (Some(DiskError::Enospc), Some(_)) => Err((
                "count",
                "`count` is for `error = \"eio\"`; ENOSPC lasts until `disk-heal`".into(),
            )),
            (_, Some(0)) => Err(("count", "must be at least 1".into())),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

pub(super) fn validate(f: &WorkloadFile) -> Result<(), Problem> {
    let top = |field: &str, m: String| Err((0, field.to_string(), m));
    if f.phases.is_empty() {
        return top("phase", "a workload needs at least one [[phase]]".into());
    }
    let cuts_power = f
        .phases
        .iter()
        .flat_map(|p| &p.get_ref().events)
        .any(|e| matches!(e.get_ref().action, Action::PowerLoss | Action::TornWrite));
    if f.expect_loss && !cuts_power {
        return top(
            "expect_loss",
            "only a power-loss or torn-write event can lose acknowledged writes, and this workload has none".into(),
        );
    }
    if f.cluster.nodes == 0 {
        return top("cluster.nodes", "a cluster needs at least one node".into());
    }
    if f.cluster.backend.is_peer() {
        crate::target::etcd::launch::EtcdLaunch::check(&f.cluster.raft())
            .or_else(|(name, m)| top(&format!("cluster.{name}"), m))?;
    }
    if f.data.keys == 0 {
        return top("data.keys", "needs at least one key".into());
    }
    if !(0.0..=1.0).contains(&f.data.value_random_share) {
        return top(
            "data.value_random_share",
            format!("must be in [0, 1], got {}", f.data.value_random_share),
        );
    }
    let digits = f.data.keys.saturating_sub(1).to_string().len();
    if f.data.key_size < digits {
        return top(
            "data.key_size",
            format!(
                "{} bytes cannot hold {} distinct keys (need {digits})",
                f.data.key_size, f.data.keys
            ),
        );
    }
    if f.data.key_size > crate::wire::MAX_KEY_BYTES {
        return top(
            "data.key_size",
            format!("at most {} bytes", crate::wire::MAX_KEY_BYTES),
        );
    }
    match &f.data.value_size {
        ValueSize::Fixed(n) if *n > crate::wire::MAX_VALUE_BYTES => {
            return top(
                "data.value_size",
                format!("at most {} bytes", crate::wire::MAX_VALUE_BYTES),
            );
        }
        ValueSize::Dist(ValueSizeDist::Uniform { min, max })
            if min > max || *max > crate::wire::MAX_VALUE_BYTES =>
        {
            return top(
                "data.value_size",
                format!("need min <= max <= {}", crate::wire::MAX_VALUE_BYTES),
            );
        }
        ValueSize::Dist(ValueSizeDist::Weighted { sizes })
            if sizes.is_empty()
                || sizes
                    .iter()
                    .any(|(s, w)| *w < 0.0 || *s > crate::wire::MAX_VALUE_BYTES)
                || sizes.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 =>
        {
            return top(
                "data.value_size",
                "weighted sizes need at least one [size, weight] with positive weights".into(),
            );
        }
        _ => {}
    }
    check_keys(&f.data.key_distribution, 0, "data.key_distribution")?;

    let fault_disks = f.needs_fault_disk();
    let mut names = BTreeSet::new();
    let mut wrote = false;
    let mut killed: BTreeSet<String> = BTreeSet::new();
    let mut paused = 0usize;
    for p in &f.phases {
        let at = p.span().start;
        let ph = p.get_ref();
        let field = |name: &str| format!("phase {:?}: {name}", ph.name);
        let bad = |name: &str, m: String| Err((at, field(name), m));
        if !names.insert(ph.name.clone()) {
            return bad("name", "phase names must be unique".into());
        }
        if ph.verify {
            if ph.ops.is_some()
                || ph.duration.is_some()
                || ph.rate.is_some()
                || !ph.events.is_empty()
            {
                return bad("verify", "a verify phase reads every key once: it takes no ops, duration, rate or events".into());
            }
            if !wrote {
                return bad(
                    "verify",
                    "nothing to verify: no earlier phase writes (mix.put or mix.delete)".into(),
                );
            }
            continue;
        }
        if ph.ops.is_some() == ph.duration.is_some() {
            return bad(
                "ops",
                "bound the phase by exactly one of `ops` or `duration`".into(),
            );
        }
        if ph.ops == Some(0) {
            return bad("ops", "must be at least 1".into());
        }
        if ph.duration.is_some_and(|d| d.0.is_zero()) {
            return bad("duration", "must be positive".into());
        }
        if ph.concurrency == 0 {
            return bad("concurrency", "must be at least 1".into());
        }
        if let Some(r) = ph.rate
            && !(0.001..=10_000_000.0).contains(&r)
        {
            return bad(
                "rate",
                format!("must be a positive number of ops per second (0.001 to 1e7), got {r}"),
            );
        }
        for (name, d) in [
            ("duration", ph.duration),
            ("warmup", ph.warmup),
            ("timeout", ph.timeout),
        ] {
            if d.is_some_and(|d| d.0 > MAX_DURATION) {
                return bad(name, "longer than 30 days".into());
            }
        }
        let m = &ph.mix;
        if [m.put, m.get, m.delete]
            .iter()
            .any(|x| !(x.is_finite() && *x >= 0.0))
        {
            return bad("mix", "shares must be finite and not negative".into());
        }
        if (m.total() - 1.0).abs() > 1e-6 {
            return bad(
                "mix",
                format!("put + get + delete must sum to 1, got {}", m.total()),
            );
        }
        if let (Some(w), Some(d)) = (ph.warmup, ph.duration)
            && w >= d
        {
            return bad("warmup", "must be shorter than the duration".into());
        }
        if let Some(kd) = &ph.key_distribution {
            check_keys(kd, at, &field("key_distribution"))?;
        }
        if ph.timeout.is_some_and(|t| t.0.is_zero()) {
            return bad("timeout", "must be positive".into());
        }
        wrote |= m.writes();
        // In the order they run.
        let mut events: Vec<_> = ph.events.iter().collect();
        events.sort_by_key(|e| e.get_ref().at);
        for e in events {
            let eat = e.span().start;
            let ev = e.get_ref();
            let ebad = |name: &str, m: String| Err((eat, field(&format!("event.{name}")), m));
            let Some(d) = ph.duration else {
                return ebad("at", "events need a phase bounded by `duration`".into());
            };
            if ev.at >= d {
                return ebad(
                    "at",
                    format!(
                        "{} is not within the phase ({})",
                        humantime::format_duration(ev.at.0),
                        humantime::format_duration(d.0)
                    ),
                );
            }
            if let Target::Node(n) = ev.target
                && n > f.cluster.nodes
                && !matches!(ev.action, Action::AddNode)
            {
                return ebad(
                    "target",
                    format!(
                        "node:{n} does not exist (cluster.nodes = {})",
                        f.cluster.nodes
                    ),
                );
            }
            if ev.cache == CacheState::Cold && fault_disks {
                return ebad(
                    "cache",
                    "a cold restart evicts the data directory from this machine's page cache, \
                     which on the fault file system (this workload has power-loss or disk events) \
                     would sync its unsynced writes and evict nothing: restart warm"
                        .into(),
                );
            }
            if ev.cache == CacheState::Cold && ev.action != Action::Restart {
                return ebad(
                    "cache",
                    "`cache = \"cold\"` applies to `restart` events only (the node's data is \
                     evicted from the page cache before it starts)"
                        .into(),
                );
            }
            check_disk_options(ev)
                .and_then(|()| check_link_options(ev))
                .map_err(|(name, m)| (eat, field(&format!("event.{name}")), m))?;
            if let Some(why) = crate::target::refusal(f.cluster.backend, ev.action) {
                return ebad(
                    "action",
                    format!("cluster.backend = \"{}\" cannot: {why}", f.cluster.backend),
                );
            }
            match ev.action {
                a if a.takes_down() => {
                    if ev.target == Target::Killed {
                        return ebad(
                            "target",
                            format!("cannot {} the nodes that are already down", a.name()),
                        );
                    }
                    killed.insert(ev.target.to_string());
                }
                Action::DiskSlow | Action::DiskFail if ev.target == Target::Killed => {
                    return ebad(
                        "target",
                        "the nodes that are down have no disk to slow or fail".into(),
                    );
                }
                Action::Restart => {
                    // node:N after node:N went down, or after a target only known at run
                    // time (leader, follower, all) went down.
                    let runtime_target = |t: &String| !t.starts_with("node:");
                    let ok = match ev.target {
                        Target::Killed => !killed.is_empty(),
                        Target::Node(_) => {
                            killed.contains(&ev.target.to_string())
                                || killed.iter().any(runtime_target)
                        }
                        _ => false,
                    };
                    if !ok {
                        return ebad(
                            "action",
                            "restart with nothing killed: kill or stop a node earlier, and target `killed` or node:N".into(),
                        );
                    }
                    if ev.target == Target::Killed {
                        killed.clear();
                    } else {
                        killed.remove(&ev.target.to_string());
                    }
                }
                Action::Pause => paused += 1,
                Action::Resume => {
                    if matches!(ev.target, Target::Leader | Target::Follower) {
                        return ebad(
                            "target",
                            "a paused node is neither leader nor follower: resume `killed` (every paused node), `all` or node:N".into(),
                        );
                    }
                    if paused == 0 {
                        return ebad("action", "resume with nothing paused".into());
                    }
                    paused -= 1;
                }
                _ => {}
            }
        }
    }
    Ok(())
}
