//! Turning results into answers: charts (plotters, PNG + SVG) and a self-contained HTML
//! report per run. The studies that compare backends and plan capacity ([`crate::study`])
//! draw with the same pieces.
//!
//! - [`data`]: read a results directory back (`run.json`, CSVs, `latency.hlog`).
//! - [`charts`]: the drawing primitives (x/y panels with nines/log axes, grouped bars) and
//!   the embedded font.
//! - [`run_charts`]: the charts of one run (latency spectrum, timeline, resources, recovery).
//! - [`html`]: the HTML page builder (tables, links, inline charts).
//! - [`plot`]: `raftbench plot DIR` — regenerate a run's charts and `report.html`.
//! - [`fit`]: the growth models (least squares, linear or power law).

pub mod charts;
pub mod data;
pub mod fit;
pub mod html;
pub mod plot;
pub mod run_charts;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::metrics::MergeError;

/// Why a report could not be produced: each variant names the file and keeps the error
/// that stopped it.
#[derive(Debug, Error)]
pub enum ReportError {
    /// A file or directory that could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSV file that could not be opened or written.
    #[error("{}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// A CSV record that does not parse (line 1 is the header).
    #[error("{}: line {line}: {source}", path.display())]
    CsvRecord {
        path: PathBuf,
        line: u64,
        #[source]
        source: csv::Error,
    },
    /// A JSON file that does not parse or could not be encoded.
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A field of a JSON file that does not have the expected shape.
    #[error("{}: {field}: {source}", path.display())]
    JsonField {
        path: PathBuf,
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A histogram in an interval log whose encoding is broken.
    #[error("{}: tag {tag}: {source}", path.display())]
    HlogBase64 {
        path: PathBuf,
        tag: String,
        #[source]
        source: base64::DecodeError,
    },
    /// A histogram in an interval log that does not deserialize.
    #[error("{}: tag {tag}: {source}", path.display())]
    HlogHistogram {
        path: PathBuf,
        tag: String,
        #[source]
        source: hdrhistogram::serialization::DeserializeError,
    },
    /// A file whose content is not what raftbench writes (no underlying error to keep).
    #[error("{}: {problem}", path.display())]
    Malformed { path: PathBuf, problem: String },
    /// A chart that plotters could not draw or write.
    #[error("{}: drawing chart: {source}", path.display())]
    Chart {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Histograms that could not be added (what they were, and why).
    #[error("{what}: {source}")]
    Merge {
        what: String,
        #[source]
        source: MergeError,
    },
    /// A results directory's `run.json` that cannot be read.
    #[error(transparent)]
    Manifest(#[from] crate::wire::ManifestError),
}

impl ReportError {
    /// `map_err` adapter for I/O on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `map_err` adapter for CSV I/O on `path`.
    pub fn csv(path: &Path) -> impl FnOnce(csv::Error) -> ReportError + '_ {
        move |source| ReportError::Csv {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `map_err` adapter for encoding or decoding the whole JSON file `path`.
    pub fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> ReportError + '_ {
        move |source| ReportError::Json {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A file that is not what raftbench writes.
    pub fn malformed(path: &Path, problem: impl Into<String>) -> ReportError {
        ReportError::Malformed {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn errors_name_the_file_and_keep_their_source() {
        let t = tempfile::tempdir().unwrap();
        let e = data::RunData::load(t.path()).unwrap_err();
        assert!(matches!(e, ReportError::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("no run.json"), "{e}");
        let run_json = t.path().join("run.json");
        std::fs::write(&run_json, "{").unwrap();
        let e = data::RunData::load(t.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ReportError::Manifest(crate::wire::ManifestError::Parse { .. })
            ),
            "{e:?}"
        );
        assert!(e.source().is_some());
        assert!(
            e.to_string().starts_with(&run_json.display().to_string()),
            "{e}"
        );
        std::fs::write(&run_json, r#"{"schema_version": 7}"#).unwrap();
        let e = data::RunData::load(t.path()).unwrap_err();
        assert!(e.to_string().contains("schema_version 7"), "{e}");
    }
}
