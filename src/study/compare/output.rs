//! What a comparison writes: `comparison.csv`, `comparison.md`, the overlay charts and
//! `report.html`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Manifest;
use super::aggregate::{Row, Winner, aggregate};
use super::charts::overlay_charts;
use super::metrics::{Better, Metric};
use crate::report::data::RunData;
use crate::report::html::Page;
use crate::report::{ReportError, charts, plot};
use crate::study::{Fixed, display, display_opt};

/// `comparison.csv`, `comparison.md`, the overlay charts and `report.html`.
pub(super) fn write_comparison(
    dir: &Path,
    m: &Manifest,
    metrics: &[Vec<Vec<Metric>>],
    data: &[Vec<RunData>],
) -> Result<(Vec<Row>, PathBuf), ReportError> {
    let rows = aggregate(metrics);
    let names: Vec<String> = m.backends.iter().map(|b| b.to_string()).collect();
    write_csv(dir, &names, &rows)?;
    let md = dir.join("comparison.md");
    std::fs::write(&md, markdown(&names, &rows, &m.fairness, m.repeat))
        .map_err(ReportError::io(&md))?;
    let charts = overlay_charts(&dir.join("charts"), &names, data, &rows)?;
    let report = dir.join("report.html");
    let mut page = Page::new(&format!("raftbench compare: {}", m.workload));
    page.p(&m.fairness);
    page.h2("Comparison");
    let (headers, cells) = html_table(&names, &rows, m.repeat);
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    // The winner column is words.
    page.table_left(&headers, &cells, &[headers.len() - 1]);
    page.h2("Charts");
    for c in &charts {
        page.chart(c, dir)?;
    }
    page.h2("Runs");
    let links: Vec<(String, String)> = m
        .runs
        .iter()
        .map(|r| {
            (
                r.dir.join("report.html").to_string_lossy().into_owned(),
                format!("{} repetition {}", r.backend, r.repetition),
            )
        })
        .collect();
    page.links(&links);
    page.write(&report)?;
    Ok((rows, report))
}

/// One line of `comparison.csv`: a metric of one backend.
#[derive(Serialize)]
struct CsvRow<'a> {
    metric: &'a str,
    backend: &'a str,
    /// The median over the backend's repetitions.
    #[serde(serialize_with = "display")]
    value: f64,
    #[serde(serialize_with = "display")]
    min: f64,
    #[serde(serialize_with = "display")]
    max: f64,
    runs: usize,
    /// Empty when the first backend's median is 0.
    #[serde(serialize_with = "display_opt")]
    ratio_to_first: Option<Fixed>,
    better: Better,
}

fn write_csv(dir: &Path, names: &[String], rows: &[Row]) -> Result<(), ReportError> {
    let path = dir.join("comparison.csv");
    let mut w = csv::Writer::from_path(&path).map_err(ReportError::csv(&path))?;
    for r in rows {
        for (i, v) in r.values.iter().enumerate() {
            let Some(v) = v else { continue };
            w.serialize(CsvRow {
                metric: &r.metric,
                backend: &names[i],
                value: v.median,
                min: v.min,
                max: v.max,
                runs: v.runs,
                ratio_to_first: r.ratio(i).map(|x| Fixed(x, 4)),
                better: r.better,
            })
            .map_err(ReportError::csv(&path))?;
        }
    }
    w.flush().map_err(ReportError::io(&path))
}

/// A value with its unit, from the metric's name.
fn fmt_metric(metric: &str, v: f64) -> String {
    if metric.ends_with("_us") {
        plot::fmt_us(v)
    } else if metric.ends_with("_ms") {
        plot::fmt_us(v * 1e3)
    } else if metric.ends_with("_bytes") || metric.ends_with("bytes_per_key") {
        plot::fmt_bytes(v)
    } else if metric.ends_with("ops_per_sec") {
        format!("{v:.0}/s")
    } else {
        charts::fmt_num(v)
    }
}

fn cell(r: &Row, i: usize, repeat: usize) -> String {
    let Some(v) = &r.values[i] else {
        return "-".into();
    };
    let mut s = fmt_metric(&r.metric, v.median);
    if repeat > 1 {
        let _ = write!(
            s,
            " ({}–{})",
            fmt_metric(&r.metric, v.min),
            fmt_metric(&r.metric, v.max)
        );
    }
    if i > 0
        && let Some(x) = r.ratio(i)
    {
        let _ = write!(s, " ×{x:.2}");
    }
    s
}

fn winner_text(r: &Row, names: &[String]) -> String {
    match r.winner() {
        Winner::Tie => "tie (within 2 %)".into(),
        Winner::Incomparable => "n/a (not measured on every backend)".into(),
        Winner::Best {
            index,
            overlaps: false,
        } => names[index].clone(),
        Winner::Best {
            index,
            overlaps: true,
        } => format!("{} (ranges overlap)", names[index]),
    }
}

fn markdown(names: &[String], rows: &[Row], fair: &str, repeat: usize) -> String {
    let mut s = String::from("# raftbench comparison\n\n");
    let _ = writeln!(s, "{fair}\n");
    if repeat > 1 {
        let _ = writeln!(
            s,
            "Each cell: median of {repeat} interleaved runs (min–max), then the ratio to {}.\n",
            names[0]
        );
    } else {
        let _ = writeln!(s, "One run per backend; ×N is the ratio to {}.\n", names[0]);
    }
    let _ = write!(s, "| metric | better |");
    for n in names {
        let _ = write!(s, " {n} |");
    }
    s.push_str(" winner |\n|---|---|");
    for _ in names {
        s.push_str("---:|");
    }
    s.push_str("---|\n");
    for r in rows {
        let _ = write!(s, "| {} | {} |", r.metric, r.better.as_str());
        for i in 0..names.len() {
            let _ = write!(s, " {} |", cell(r, i, repeat));
        }
        let _ = writeln!(s, " {} |", winner_text(r, names));
    }
    s
}

/// The comparison as a table: headers and text cells (the page escapes them).
fn html_table(names: &[String], rows: &[Row], repeat: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut headers = vec!["metric".to_string(), "better".to_string()];
    headers.extend(names.iter().cloned());
    headers.push("winner".into());
    let cells = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.metric.clone(), r.better.as_str().to_string()];
            row.extend((0..names.len()).map(|i| cell(r, i, repeat)));
            row.push(winner_text(r, names));
            row
        })
        .collect();
    (headers, cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, better: Better, value: f64) -> Metric {
        Metric {
            name: name.into(),
            better,
            value,
        }
    }

    #[test]
    fn csv_spells_numbers_as_display_does() {
        let rows = aggregate(&[
            vec![vec![
                m("load.ops_per_sec", Better::Higher, 11121.373692326915),
                m("load.put.p50_us", Better::Lower, 2749.0),
                m("load.put.failed", Better::Lower, 0.0),
                m("disk_bytes", Better::Lower, 1e21),
            ]],
            vec![vec![
                m("load.ops_per_sec", Better::Higher, 12828.89571439167),
                m("load.put.p50_us", Better::Lower, 2397.0),
                m("load.put.failed", Better::Lower, 0.0),
            ]],
        ]);
        let t = tempfile::tempdir().unwrap();
        write_csv(t.path(), &["memwal".into(), "rocksdb".into()], &rows).unwrap();
        let csv = std::fs::read_to_string(t.path().join("comparison.csv")).unwrap();
        assert_eq!(
            csv,
            "metric,backend,value,min,max,runs,ratio_to_first,better\n\
             load.ops_per_sec,memwal,11121.373692326915,11121.373692326915,11121.373692326915,1,1.0000,higher\n\
             load.ops_per_sec,rocksdb,12828.89571439167,12828.89571439167,12828.89571439167,1,1.1535,higher\n\
             load.put.p50_us,memwal,2749,2749,2749,1,1.0000,lower\n\
             load.put.p50_us,rocksdb,2397,2397,2397,1,0.8720,lower\n\
             load.put.failed,memwal,0,0,0,1,,lower\n\
             load.put.failed,rocksdb,0,0,0,1,,lower\n\
             disk_bytes,memwal,1000000000000000000000,1000000000000000000000,1000000000000000000000,1,1.0000,lower\n"
        );
    }
}
