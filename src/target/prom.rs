//! Reading Prometheus and OpenMetrics text (`GET /metrics` of etcd and of raftbench
//! nodes), parsed with `prometheus-parse`.

use super::server::{Cumulative, ServerCounters};

/// A member's [`ServerCounters`] from its `/metrics` text: the WAL fsync histogram named
/// `wal_fsync` (required), the backend commit histogram `backend_commit` when named and
/// there, and `process_start_time_seconds`.
pub fn server_counters(
    text: &str,
    source: &'static str,
    wal_fsync: &str,
    backend_commit: Option<&str>,
) -> Result<ServerCounters, String> {
    let scrape = parse(text)?;
    Ok(ServerCounters {
        source,
        wal_fsync: histogram(&scrape, wal_fsync)
            .ok_or_else(|| format!("/metrics has no {wal_fsync} histogram"))?,
        backend_commit: backend_commit.and_then(|name| histogram(&scrape, name)),
        started: scrape
            .samples
            .iter()
            .find(|s| s.metric == "process_start_time_seconds")
            .map(|s| scalar(&s.value)),
    })
}

/// Parse a `/metrics` text.
pub fn parse(text: &str) -> Result<prometheus_parse::Scrape, String> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("parsing /metrics: {e}"))
}

/// The sum over label sets of the samples named `name` (a counter's full name, with its
/// `_total`): 0 for a metric described (`# HELP`) without samples yet (a family such as
/// per-peer drops before the first drop), `None` for one the text does not have.
pub fn sum(scrape: &prometheus_parse::Scrape, name: &str) -> Option<f64> {
    let mut found = None;
    for s in scrape.samples.iter().filter(|s| s.metric == name) {
        *found.get_or_insert(0.0) += scalar(&s.value);
    }
    let family = name.strip_suffix("_total").unwrap_or(name);
    found.or_else(|| {
        (scrape.docs.contains_key(name) || scrape.docs.contains_key(family)).then_some(0.0)
    })
}

/// The cumulative histogram `name` in `scrape`, summed over its label sets; `None` when
/// the scrape has no such histogram.
pub fn histogram(scrape: &prometheus_parse::Scrape, name: &str) -> Option<Cumulative> {
    let mut out: Option<Cumulative> = None;
    let (sum_name, count_name) = (format!("{name}_sum"), format!("{name}_count"));
    let mut sum = 0.0;
    let mut count = 0.0;
    for s in &scrape.samples {
        match &s.value {
            prometheus_parse::Value::Histogram(buckets) if s.metric == name => {
                let mut b: Vec<(f64, f64)> =
                    buckets.iter().map(|h| (h.less_than, h.count)).collect();
                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                out.get_or_insert_with(Cumulative::default)
                    .add(&Cumulative {
                        count: b.last().map_or(0.0, |x| x.1),
                        buckets: b,
                        sum: 0.0,
                    });
            }
            v if s.metric == sum_name => sum += scalar(v),
            v if s.metric == count_name => count += scalar(v),
            _ => {}
        }
    }
    let mut h = out?;
    h.sum = sum;
    if count > 0.0 {
        h.count = count;
    }
    Some(h)
}

/// A sample's value, whatever its declared type (0 for a histogram or summary).
pub fn scalar(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        _ => 0.0,
    }
}
