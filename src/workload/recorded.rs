//! A workload read back from `run.json` (the `workload` of [`crate::wire::RunManifest`]).
//!
//! The workload file's model keeps TOML source positions (`toml::Spanned`) on its phases and
//! events so that validation can name lines, and `toml::Spanned` deserializes only from
//! TOML. A recorded workload is JSON in exactly the shape [`Workload`] serializes to; this
//! reads its phases and events as plain values and gives them an empty span. It is not
//! validated again: it was when it ran, and a rule added since must not make old results
//! unreadable.

use std::path::PathBuf;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use toml::Spanned;

use super::Workload;
use super::spec::{Event, Phase, WorkloadFile};

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn take<T: DeserializeOwned, E: serde::de::Error>(
            m: &mut Map<String, Value>,
            key: &'static str,
        ) -> Result<T, E> {
            let v = m.remove(key).ok_or_else(|| E::missing_field(key))?;
            serde_json::from_value(v).map_err(|e| E::custom(format!("{key}: {e}")))
        }
        let mut m = Map::<String, Value>::deserialize(d)?;
        let path: PathBuf = take(&mut m, "path")?;
        let phases: Vec<Map<String, Value>> = take(&mut m, "phase")?;
        m.insert("phase".into(), Value::Array(Vec::new()));
        let mut file: WorkloadFile =
            serde_json::from_value(Value::Object(m)).map_err(D::Error::custom)?;
        for (i, mut p) in phases.into_iter().enumerate() {
            let in_phase = |e: serde_json::Error| D::Error::custom(format!("phase {i}: {e}"));
            let events: Vec<Event> = match p.remove("event") {
                Some(e) => serde_json::from_value(e).map_err(in_phase)?,
                None => Vec::new(),
            };
            let mut phase: Phase = serde_json::from_value(Value::Object(p)).map_err(in_phase)?;
            phase.events = events.into_iter().map(|e| Spanned::new(0..0, e)).collect();
            file.phases.push(Spanned::new(0..0, phase));
        }
        Ok(Workload { path, file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every workload shipped round-trips through its recorded form.
    #[test]
    fn every_shipped_workload_reads_back_as_it_was_written() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/workloads"));
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let w = Workload::load(&path).unwrap();
            let json = serde_json::to_string(&w).unwrap();
            let back: Workload = serde_json::from_str(&json).unwrap();
            assert_eq!(back, w, "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 3, "found {seen} workloads");
    }

    #[test]
    fn a_bad_event_names_its_phase() {
        let w = Workload::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workloads/quickstart.toml"
        )))
        .unwrap();
        let mut v = serde_json::to_value(&w).unwrap();
        v["phase"][1]["event"][0]["action"] = "explode".into();
        let e = serde_json::from_value::<Workload>(v).unwrap_err();
        assert!(e.to_string().starts_with("phase 1: "), "{e}");
    }
}
