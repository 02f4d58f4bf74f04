//! The command line's edits to a workload: `--backend`, `--nodes`, `--seed`, `--fsync`,
//! `--expect-loss`, `--restart-cache` and `--scale`.

use super::{RunError, RunOptions};
use crate::workload::Workload;
use crate::workload::spec::HumanDuration;

/// Apply the CLI overrides and `--scale` to a workload, and check it again.
pub(super) fn apply_overrides(mut w: Workload, o: &RunOptions) -> Result<Workload, RunError> {
    if !(o.replay.scale > 0.0 && o.replay.scale <= 1000.0) {
        return Err(RunError::Invalid(format!(
            "--scale must be positive, got {}",
            o.replay.scale
        )));
    }
    let f = &mut w.file;
    if let Some(b) = o.backend {
        f.cluster.backend = b;
    }
    if let Some(n) = o.nodes {
        if n == 0 {
            return Err(RunError::Invalid("--nodes must be at least 1".into()));
        }
        f.cluster.nodes = n;
    }
    if let Some(s) = o.replay.seed {
        f.seed = s;
    }
    if let Some(p) = o.replay.fsync {
        f.cluster.fsync = p;
    }
    f.expect_loss |= o.replay.expect_loss;
    if let Some(c) = o.replay.restart_cache {
        w.set_restart_cache(c);
    }
    let f = &mut w.file;
    let scale_d = |d: &mut HumanDuration| d.0 = d.0.mul_f64(o.replay.scale);
    for p in &mut f.phases {
        let p = p.get_mut();
        if let Some(ops) = &mut p.ops {
            *ops = ((*ops as f64 * o.replay.scale).round() as u64).max(1);
        }
        for d in [&mut p.duration, &mut p.warmup].into_iter().flatten() {
            scale_d(d);
        }
        for e in &mut p.events {
            let e = e.get_mut();
            scale_d(&mut e.at);
            // A disk-slow's length scales with the phase it is in.
            if let Some(d) = &mut e.duration {
                scale_d(d);
            }
        }
    }
    w.revalidate()?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{Action, CacheState};

    /// `--restart-cache` changes every restart and nothing else; the file's own `cache`
    /// stands without it.
    #[test]
    fn restart_cache_override_applies_to_restarts_only() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/restart-recovery.toml"
        ));
        let opts = |c: Option<CacheState>| RunOptions {
            workload: path.to_path_buf(),
            loaded: None,
            backend: None,
            nodes: None,
            out: None,
            replay: super::super::Replay {
                seed: None,
                restart_cache: c,
                fsync: None,
                expect_loss: false,
                scale: 1.0,
                quiet: true,
                binary: "raftbench".into(),
                cli: Vec::new(),
            },
            cluster: None,
            generator: None,
            coordinated: false,
        };
        let events = |w: &Workload| -> Vec<(Action, CacheState)> {
            w.file
                .phases
                .iter()
                .flat_map(|p| p.get_ref().events.iter())
                .map(|e| (e.get_ref().action, e.get_ref().cache))
                .collect()
        };
        let w = Workload::load(path).unwrap();
        let cold = apply_overrides(w.clone(), &opts(Some(CacheState::Cold))).unwrap();
        let ev = events(&cold);
        assert_eq!(ev.len(), 4);
        for (action, cache) in ev {
            let want = if action == Action::Restart {
                CacheState::Cold
            } else {
                CacheState::Warm
            };
            assert_eq!(cache, want, "{action:?}");
        }
        let mut file_cold = w.clone();
        file_cold.set_restart_cache(CacheState::Cold);
        let kept = apply_overrides(file_cold.clone(), &opts(None)).unwrap();
        assert_eq!(events(&kept), events(&cold));
        let warm = apply_overrides(file_cold, &opts(Some(CacheState::Warm))).unwrap();
        assert!(events(&warm).iter().all(|(_, c)| *c == CacheState::Warm));
    }
}
