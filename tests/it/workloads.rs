//! Workload files: every shipped file validates; bad files get errors naming the file,
//! line, column and field — never a panic.

use std::path::Path;

use raftbench::workload::{SpecError, Workload};

use crate::common::{command, manifest};

#[test]
fn every_shipped_workload_validates() {
    let dir = manifest("workloads");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            Workload::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 12, "expected the shipped workloads, found {n}");
}

const BASE: &str = r#"
name = "t"
[data]
keys = 100
[[phase]]
name = "p"
duration = "10s"
mix = { put = 0.5, get = 0.5 }
"#;

fn err(text: &str) -> (String, usize, String) {
    match Workload::parse(Path::new("bad.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(SpecError::Invalid {
            line,
            field,
            message,
            ..
        }) => {
            let shown = Workload::parse(Path::new("bad.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(shown.starts_with(&format!("bad.toml:{line}:")), "{shown}");
            (field, line, message)
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn base_is_valid() {
    Workload::parse(Path::new("ok.toml"), BASE).unwrap();
}

#[test]
fn rejected_cases_name_the_field_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (what, text, field contains, message contains)
        (
            "mix sum",
            &BASE.replace("put = 0.5, get = 0.5", "put = 0.5, get = 0.4"),
            "mix",
            "sum to 1",
        ),
        (
            "zero rate",
            &format!("{BASE}rate = 0\n"),
            "rate",
            "positive",
        ),
        (
            "negative rate",
            &format!("{BASE}rate = -5.0\n"),
            "rate",
            "positive",
        ),
        (
            "event after phase end",
            &format!("{BASE}[[phase.event]]\nat = \"12s\"\naction = \"kill\"\n"),
            "event.at",
            "not within the phase",
        ),
        (
            "unknown action",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"explode\"\n"),
            "syntax",
            "kill",
        ),
        (
            "unknown target",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"kill\"\ntarget = \"boss\"\n"),
            "syntax",
            "node:N",
        ),
        (
            "restart with nothing killed",
            &format!(
                "{BASE}[[phase.event]]\nat = \"1s\"\naction = \"restart\"\ntarget = \"killed\"\n"
            ),
            "event.action",
            "nothing killed",
        ),
        (
            "cold cache on a kill",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"kill\"\ncache = \"cold\"\n"),
            "event.cache",
            "restart",
        ),
        (
            "unknown cache state",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"kill\"\ncache = \"frozen\"\n"),
            "syntax",
            "cold",
        ),
        (
            "verify with no writes",
            &format!(
                "{}[[phase]]\nname = \"v\"\nverify = true\n",
                BASE.replace("put = 0.5, get = 0.5", "get = 1.0")
            ),
            "verify",
            "no earlier phase writes",
        ),
        (
            "unknown field",
            &format!("{BASE}concurency = 3\n"),
            "syntax",
            "concurency",
        ),
        (
            "no bound",
            &BASE.replace("duration = \"10s\"\n", ""),
            "ops",
            "exactly one",
        ),
        (
            "bad duration",
            &BASE.replace("\"10s\"", "\"ten seconds\""),
            "syntax",
            "30s",
        ),
        (
            "bad distribution",
            &format!("{BASE}key_distribution = {{ dist = \"gaussian\" }}\n"),
            "syntax",
            "zipfian",
        ),
        (
            "warmup too long",
            &format!("{BASE}warmup = \"10s\"\n"),
            "warmup",
            "shorter",
        ),
        (
            "disk-slow without a latency",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"disk-slow\"\n"),
            "event.latency",
            "needs a latency",
        ),
        (
            "disk-fail without an error",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"disk-fail\"\n"),
            "event.error",
            "eio",
        ),
        (
            "latency on a kill",
            &format!("{BASE}[[phase.event]]\nat = \"1s\"\naction = \"kill\"\nlatency = \"5ms\"\n"),
            "event.latency",
            "disk-slow",
        ),
        (
            "restart of a node that was never powered off",
            &format!(
                "{BASE}[[phase.event]]\nat = \"1s\"\naction = \"power-loss\"\ntarget = \"node:1\"\n[[phase.event]]\nat = \"2s\"\naction = \"restart\"\ntarget = \"node:2\"\n"
            ),
            "event.action",
            "nothing killed",
        ),
        (
            "a cold restart on a fault disk",
            &format!(
                "{BASE}[[phase.event]]\nat = \"1s\"\naction = \"power-loss\"\ntarget = \"node:1\"\n[[phase.event]]\nat = \"2s\"\naction = \"restart\"\ntarget = \"node:1\"\ncache = \"cold\"\n"
            ),
            "event.cache",
            "fault file system",
        ),
        (
            "expect_loss with nothing that cuts the power",
            &format!("expect_loss = true\n{BASE}"),
            "expect_loss",
            "power-loss",
        ),
        (
            "duplicate phase",
            &format!("{BASE}[[phase]]\nname = \"p\"\nops = 5\nmix = {{ put = 1.0 }}\n"),
            "name",
            "unique",
        ),
        (
            "link delay below a millisecond",
            &format!(
                "{BASE}  [[phase.event]]\n  at = \"1s\"\n  action = \"link-slow\"\n  delay = \"500us\"\n"
            ),
            "delay",
            "at least 1ms",
        ),
        (
            "direction on a kill",
            &format!(
                "{BASE}  [[phase.event]]\n  at = \"1s\"\n  action = \"kill\"\n  direction = \"in\"\n"
            ),
            "direction",
            "belongs to `partition`",
        ),
        (
            "etcd election timeout shorter than 5 heartbeats",
            &BASE.replace(
                "[data]",
                "[cluster]\nbackend = \"etcd\"\nelection_ticks = 4\n[data]",
            ),
            "cluster.election_ticks",
            "5 heartbeats",
        ),
    ];
    for (what, text, field, msg) in cases {
        let (f, line, m) = err(text);
        assert!(
            f.contains(field),
            "{what}: field {f:?} should name {field:?} ({m})"
        );
        assert!(
            m.contains(msg),
            "{what}: message {m:?} should mention {msg:?}"
        );
        assert!(line > 0, "{what}: no line number");
    }
    // A setting etcd refuses is reported at its own line.
    let text = BASE.replace(
        "[data]",
        "[cluster]\nbackend = \"etcd\"\nelection_ticks = 4\n[data]",
    );
    let at = 1 + text
        .lines()
        .position(|l| l.starts_with("election_ticks"))
        .unwrap();
    assert_eq!(err(&text).1, at);
}

#[test]
fn validate_cli_reports_every_bad_file() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good.toml");
    let bad = t.path().join("bad.toml");
    std::fs::write(&good, BASE).unwrap();
    std::fs::write(&bad, BASE.replace("put = 0.5", "put = 0.7")).unwrap();
    let out = command()
        .arg("validate")
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:5:1: phase \"p\": mix"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("good.toml: ok"));
}

/// Storage modes by name; unknown engines, impossible combinations and unknown engine
/// options are errors at their line that name the valid choices.
#[test]
fn storage_modes_and_their_options() {
    let rest = BASE.trim_start().strip_prefix("name = \"t\"\n").unwrap();
    let with = |cluster: &str| format!("name = \"t\"\n[cluster]\n{cluster}\n{rest}");
    let w = Workload::parse(
        Path::new("ok.toml"),
        &with("backend = \"raft-engine+redb\"\n[cluster.raft_engine]\ntarget_file_size = \"8 MiB\"\n[cluster.redb]\napply_durability = \"immediate\""),
    )
    .unwrap();
    let b = w.file.cluster.backend();
    assert_eq!(b.kind.to_string(), "raft-engine+redb");
    assert_eq!(b.raft_engine.target_file_size, bytesize::ByteSize::mib(8));
    assert_eq!(
        b.redb.apply_durability,
        raftbench::wire::RedbDurability::Immediate
    );

    let (field, line, message) = err(&with("backend = \"bolt+redb\""));
    assert_eq!((field.as_str(), line), ("syntax", 3), "{message}");
    assert!(
        message.contains("raft-engine") && message.contains("wal"),
        "{message}"
    );
    let (field, line, message) = err(&with("backend = \"wal+sqlite\""));
    assert_eq!((field.as_str(), line), ("syntax", 3), "{message}");
    assert!(
        message.contains("redb") && message.contains("memory"),
        "{message}"
    );

    let (field, line, message) = err(&with(
        "backend = \"wal+redb\"\n[cluster.rocksdb]\nstate_wal = false",
    ));
    assert_eq!(
        (field.as_str(), line),
        ("cluster.state_wal", 5),
        "{message}"
    );
    assert!(message.contains("raft-engine+rocksdb"), "{message}");

    let (field, line, message) = err(&with("[cluster.redb]\nsync = \"always\""));
    assert_eq!((field.as_str(), line), ("syntax", 4), "{message}");
    assert!(message.contains("apply_durability"), "{message}");
}
