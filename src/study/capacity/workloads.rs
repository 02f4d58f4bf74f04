//! The workloads the study generates from the user's: rate-search probes and growth runs.

use toml::Spanned;

use super::CapacityOptions;
use super::slo::SloTerm;
use crate::workload::Workload;
use crate::workload::spec::{
    Action, CacheState, Event, HumanDuration, KeyDistribution, Mix, Phase, ReadConsistency, Target,
    ValueSize,
};

/// Whether the rate search measures `p`: phases bounded by time (an op-count phase has no
/// rate to hold) and not verifying.
pub(super) fn measured(p: &Phase) -> bool {
    !p.verify && p.duration.is_some()
}

/// The names of the phases the rate search measures.
pub(super) fn measured_names(w: &Workload) -> Vec<String> {
    w.file
        .phases
        .iter()
        .map(|p| p.get_ref())
        .filter(|p| measured(p))
        .map(|p| p.name.clone())
        .collect()
}

/// The first rate to probe: `--start-rate`, else the workload's highest phase rate, else
/// 1000 ops/s.
pub(super) fn start_rate(o: &CapacityOptions, w: &Workload) -> f64 {
    o.start_rate.unwrap_or_else(|| {
        w.file
            .phases
            .iter()
            .filter_map(|p| p.get_ref().rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
            .unwrap_or(1000.0)
    })
}

/// The workload replayed at `rate`: measured phases open loop at that rate, with enough
/// concurrency that the generator itself never caps the rate (twice the rate × the
/// loosest SLO bound), and without verify phases.
pub(super) fn probe_workload(w: &Workload, rate: f64, slo: &[SloTerm]) -> Workload {
    let mut w = w.clone();
    let loosest_s = slo.iter().map(|t| t.bound_us).fold(0.0, f64::max) / 1e6;
    let needed = (rate * loosest_s * 2.0).ceil().min(4096.0) as usize;
    w.file.phases.retain(|p| !p.get_ref().verify);
    for p in &mut w.file.phases {
        let p = p.get_mut();
        if measured(p) {
            p.rate = Some(rate);
            p.concurrency = p.concurrency.max(needed);
        }
    }
    w
}

/// A phase of a growth run: closed loop, concurrency 8, no events.
fn phase(name: &str, mix: Mix) -> Phase {
    Phase {
        name: name.into(),
        ops: None,
        duration: None,
        warmup: None,
        concurrency: 8,
        rate: None,
        mix,
        read_consistency: ReadConsistency::Linearizable,
        key_distribution: None,
        timeout: None,
        verify: false,
        events: Vec::new(),
    }
}

/// The page cache of growth runs' restarts: cold unless `--restart-cache` says otherwise.
/// Capacity planning wants the restart a machine sees after a reboot, not the memory-speed
/// replay of a process restarted over its warm cache.
pub(super) fn restart_cache(o: &CapacityOptions) -> CacheState {
    o.launch.replay.restart_cache.unwrap_or(CacheState::Cold)
}

/// The growth run for `keys` keys: load them, then under light traffic snapshot the
/// leader, kill a follower and restart it.
pub(super) fn growth_workload(
    w: &Workload,
    keys: u64,
    value_size: Option<u64>,
    cache: CacheState,
) -> Workload {
    let mut g = w.clone();
    let f = &mut g.file;
    f.name = format!("{}-growth-{keys}", w.file.name);
    f.description = format!(
        "capacity growth run: load {keys} keys, snapshot, restart a follower ({cache} page cache)"
    );
    f.data.keys = keys;
    f.data.key_size = f
        .data
        .key_size
        .max(keys.saturating_sub(1).to_string().len());
    if let Some(v) = value_size {
        f.data.value_size = ValueSize::Fixed(v as usize);
    }
    f.data.key_distribution = KeyDistribution::Uniform;
    let mut load = phase(
        "load",
        Mix {
            put: 1.0,
            ..Mix::default()
        },
    );
    load.ops = Some(keys);
    load.concurrency = 64;
    load.key_distribution = Some(KeyDistribution::Sequential);
    let mut after = phase(
        "restart",
        Mix {
            put: 0.5,
            get: 0.5,
            ..Mix::default()
        },
    );
    after.duration = Some(HumanDuration(std::time::Duration::from_secs(8)));
    after.rate = Some(100.0);
    let ev = |s: f64, action, target| {
        Spanned::new(
            0..0,
            Event {
                cache: if action == Action::Restart {
                    cache
                } else {
                    CacheState::Warm
                },
                ..Event::new(std::time::Duration::from_secs_f64(s), action, target)
            },
        )
    };
    after.events = vec![
        // Resources are sampled once a second: wait two before the snapshot so that a
        // sample after the load exists even when the load took less than a second.
        ev(2.0, Action::Snapshot, Target::Leader),
        ev(3.5, Action::Kill, Target::Follower),
        ev(4.5, Action::Restart, Target::Killed),
    ];
    f.phases = vec![Spanned::new(0..0, load), Spanned::new(0..0, after)];
    g
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn probe_workload_sets_rate_and_enough_concurrency() {
        let w = Workload::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/smoke.toml"
        )))
        .unwrap();
        let slo = super::super::slo::parse("put.p99<50ms").unwrap();
        let p = probe_workload(&w, 4000.0, &slo);
        let phases: Vec<&Phase> = p.file.phases.iter().map(|p| p.get_ref()).collect();
        assert!(phases.iter().all(|p| !p.verify));
        let mixed = phases.iter().find(|p| p.name == "mixed").unwrap();
        assert_eq!(mixed.rate, Some(4000.0));
        assert_eq!(mixed.concurrency, 400);
        let load = phases.iter().find(|p| p.name == "load").unwrap();
        assert_eq!(load.rate, None);
        let g = growth_workload(&w, 123_456, Some(1000), CacheState::Cold);
        assert_eq!(g.file.data.keys, 123_456);
        assert_eq!(g.file.data.value_size, ValueSize::Fixed(1000));
        g.revalidate().unwrap();
    }
}
