//! `capacity.json`: the study's results for programs, beside `capacity.csv` and
//! `report.html` (the same figures; this one carries `schema_version` and has a JSON
//! Schema under `results/schema/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::slo::SloTerm;
use super::{BackendCapacity, Probe};
use crate::report::ReportError;

/// The `schema_version` of `capacity.json`.
pub const CAPACITY_SCHEMA: u32 = 1;

/// `capacity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityReport {
    pub schema_version: u32,
    /// The workload's name.
    pub workload: String,
    /// The SLO, normalised (`put.p99<20ms,get.p99<5ms`).
    pub slo: String,
    /// The data-set size the projections are for, in keys.
    pub target_keys: u64,
    pub backends: Vec<CapacityBackend>,
}

/// One backend's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityBackend {
    pub backend: String,
    /// The highest offered rate (ops/s) whose probes mostly met the SLO; `null`: none did.
    pub max_rate: Option<f64>,
    /// Whether a higher rate was probed and missed (otherwise `max_rate` is only a lower
    /// bound: add `--steps`).
    pub max_rate_bounded: bool,
    pub probes: Vec<Probe>,
    pub growth: Vec<CapacityGrowth>,
    /// Per growth metric: its fitted model and the value it projects at `target_keys`.
    pub projections: BTreeMap<String, CapacityProjection>,
}

/// One growth run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityGrowth {
    pub keys: u64,
    pub dir: PathBuf,
    /// Metric → value (bytes, ms), as in `capacity.csv`.
    pub metrics: BTreeMap<String, f64>,
}

/// A growth metric's model and projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityProjection {
    /// The model, in words (`y = 812 + 341·x`).
    pub model: String,
    pub r2: f64,
    /// The model at `target_keys`, clamped at 0.
    pub value: f64,
    /// R² < 0.9: the points do not follow the model.
    pub weak: bool,
}

/// The report of `results`, with directories relative to `dir`.
pub fn report(
    dir: &Path,
    workload: &str,
    slo: &[SloTerm],
    results: &[BackendCapacity],
    target_keys: u64,
) -> CapacityReport {
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).to_path_buf();
    CapacityReport {
        schema_version: CAPACITY_SCHEMA,
        workload: workload.to_string(),
        slo: slo
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(","),
        target_keys,
        backends: results
            .iter()
            .map(|b| CapacityBackend {
                backend: b.backend.to_string(),
                max_rate: b.max_rate,
                max_rate_bounded: b
                    .max_rate
                    .is_some_and(|m| b.probes.iter().any(|p| p.offered > m)),
                probes: b
                    .probes
                    .iter()
                    .map(|p| Probe {
                        dir: rel(&p.dir),
                        ..p.clone()
                    })
                    .collect(),
                growth: b
                    .growth
                    .iter()
                    .map(|g| CapacityGrowth {
                        keys: g.keys,
                        dir: rel(&g.dir),
                        metrics: g.metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                    })
                    .collect(),
                projections: b
                    .fits
                    .iter()
                    .filter_map(|(m, f)| {
                        let (value, weak) = b.projection(m, target_keys)?;
                        Some((
                            m.to_string(),
                            CapacityProjection {
                                model: f.describe(),
                                r2: f.r2,
                                value,
                                weak,
                            },
                        ))
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Write `capacity.json` into `dir`.
pub fn write(dir: &Path, r: &CapacityReport) -> Result<(), ReportError> {
    let path = dir.join("capacity.json");
    let text = serde_json::to_string_pretty(r).map_err(ReportError::json(&path))?;
    std::fs::write(&path, text).map_err(ReportError::io(&path))
}
