//! Charts, reports, `compare` and `capacity`, end to end through the binary.

use std::path::Path;

use crate::common::{copy_files, csv_named_rows as csv_rows, manifest, ok, raftbench, read_json};

/// The PNG decodes, has the expected size class and is not blank.
fn check_png(path: &Path) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(f))
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert!(
        info.width >= 600 && info.height >= 200,
        "{}: {}x{}",
        path.display(),
        info.width,
        info.height
    );
    let px = &buf[..info.buffer_size()];
    let dark = px.chunks(3).filter(|p| p.iter().all(|c| *c < 100)).count();
    // Axes, lines and (embedded-font) text: thousands of dark pixels.
    assert!(dark > 2000, "{}: only {dark} dark pixels", path.display());
}

/// The SVG parses as XML, is an <svg>, and carries text and drawing.
fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
    assert!(count("text") > 5, "{}: no labels", path.display());
    assert!(
        count("polyline") + count("rect") + count("path") > 3,
        "{}: nothing drawn",
        path.display()
    );
}

/// Every chart under `dir/charts` is a valid PNG+SVG pair referenced by `dir/report.html`;
/// returns the chart names.
fn check_charts_and_report(dir: &Path) -> Vec<String> {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir.join("charts")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png") {
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            check_png(&p);
            let svg = p.with_extension("svg");
            check_svg(&svg);
            assert!(
                html.contains(&format!("charts/{stem}.png")),
                "report misses {stem}.png"
            );
            assert!(
                html.contains(&format!("charts/{stem}.svg")),
                "report misses {stem}.svg"
            );
            assert!(
                html.contains(&format!("id=\"{stem}\"")),
                "report does not embed {stem}"
            );
            names.push(stem);
        }
    }
    // Self-contained: charts inline, nothing fetched from elsewhere.
    assert_eq!(
        html.matches("src=\"data:image/svg+xml;base64,").count(),
        names.len()
    );
    assert!(!html.contains("http://") && !html.contains("https://"));
    names.sort();
    names
}

#[test]
fn plot_regenerates_charts_and_report_from_results_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run");
    copy_files(&manifest("tests/fixtures/quickstart-run"), &dir);
    let o = raftbench(&["plot", dir.to_str().unwrap()]);
    ok(&o);
    let names = check_charts_and_report(&dir);
    assert_eq!(names, ["recovery", "resources", "spectrum", "timeline"]);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for needle in [
        "quickstart",
        "memwal",
        "fsync",
        "Latency summary",
        "leader_elected_ms",
        "OK: every acknowledged write",
    ] {
        assert!(html.contains(needle), "report lacks {needle:?}");
    }
    // The SVG titles name the workload, backend and fsync policy; axes carry units.
    let spectrum = std::fs::read_to_string(dir.join("charts/spectrum.svg")).unwrap();
    for needle in [
        "quickstart",
        "memwal",
        "fsync=always",
        "latency (ms)",
        "99.9%",
        "run put (corrected",
        "run put (service",
    ] {
        assert!(spectrum.contains(needle), "spectrum.svg lacks {needle:?}");
    }
    // Running it again replaces the files.
    ok(&raftbench(&["plot", dir.to_str().unwrap()]));
}

#[test]
fn plot_names_the_bad_file() {
    let t = tempfile::tempdir().unwrap();
    let o = raftbench(&["plot", t.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no run.json"), "{e}");

    let dir = t.path().join("run");
    copy_files(&manifest("tests/fixtures/quickstart-run"), &dir);
    let mut summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    summary.push_str("run,put,ok,not-a-number,1,1,1,1,1,1,1,1,corrected\n");
    std::fs::write(dir.join("summary.csv"), summary).unwrap();
    let o = raftbench(&["plot", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("summary.csv") && e.contains("line"), "{e}");
}

#[test]
fn compare_runs_every_backend_and_ratios_match_the_runs() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("cmp");
    let o = raftbench(&[
        "compare",
        manifest("workloads/smoke.toml").to_str().unwrap(),
        "--backends",
        "memwal,rocksdb",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let stderr = ok(&o);
    assert!(
        stderr.contains("fairness:")
            && stderr.contains("seed 1")
            && stderr.contains("fsync=always"),
        "{stderr}"
    );
    for f in ["comparison.csv", "comparison.md", "report.html"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    crate::common::assert_valid("compare.schema.json", &out.join("compare.json"));
    for b in ["memwal", "rocksdb"] {
        let run = out.join("runs").join(format!("{b}-1"));
        for f in [
            "run.json",
            "summary.csv",
            "latency.hlog",
            "report.html",
            "charts/spectrum.png",
        ] {
            assert!(run.join(f).is_file(), "{b}: {f} missing");
        }
        crate::common::assert_valid("run.schema.json", &run.join("run.json"));
        let j = read_json(&run.join("run.json"));
        assert_eq!(j["seed"], 1, "{b}: same seed");
        assert_eq!(j["fsync"], "always", "{b}: same fsync");
        assert_eq!(j["backend"]["kind"], b);
    }
    let names = check_charts_and_report(&out);
    for c in [
        "spectrum-put",
        "spectrum-get",
        "throughput",
        "bytes-per-key",
    ] {
        assert!(names.contains(&c.to_string()), "{c} missing from {names:?}");
    }

    let rows = csv_rows(&out.join("comparison.csv"));
    let value = |metric: &str, backend: &str| -> f64 {
        rows.iter()
            .find(|r| r["metric"] == metric && r["backend"] == backend)
            .unwrap_or_else(|| panic!("{metric}/{backend} missing"))["value"]
            .parse()
            .unwrap()
    };
    let mut checked = 0;
    for b in ["memwal", "rocksdb"] {
        let summary = csv_rows(&out.join("runs").join(format!("{b}-1")).join("summary.csv"));
        for r in summary.iter().filter(|r| {
            r["outcome"] == "ok" && r["latency_kind"] == "corrected" && !r["phase"].contains(':')
        }) {
            for q in ["p50_us", "p99_us", "p999_us", "max_us"] {
                let metric = format!("{}.{}.{q}", r["phase"], r["op"]);
                assert_eq!(
                    value(&metric, b),
                    r[q].parse::<f64>().unwrap(),
                    "{metric} {b}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} metrics checked");
    for r in &rows {
        let v: f64 = r["value"].parse().unwrap();
        let first = value(&r["metric"], "memwal");
        if first != 0.0 {
            let ratio: f64 = r["ratio_to_first"].parse().unwrap();
            assert!((ratio - v / first).abs() < 1e-3, "{r:?}");
        }
    }
    let md = std::fs::read_to_string(out.join("comparison.md")).unwrap();
    assert!(
        md.contains("| metric | better | memwal | rocksdb | winner |"),
        "{md}"
    );
    // The winner column follows the values: lower latency wins unless within 2 %.
    let (m, r) = (
        value("mixed.put.p99_us", "memwal"),
        value("mixed.put.p99_us", "rocksdb"),
    );
    let line = md
        .lines()
        .find(|l| l.starts_with("| mixed.put.p99_us |"))
        .unwrap();
    let winner = line
        .trim_end_matches('|')
        .rsplit('|')
        .next()
        .unwrap()
        .trim();
    let expected = if (m - r).abs() <= 0.02 * m.max(r) {
        "tie (within 2 %)"
    } else if m < r {
        "memwal"
    } else {
        "rocksdb"
    };
    assert_eq!(winner, expected, "{line}");
    assert!(rows.iter().any(|r| r["metric"] == "disk_bytes_per_key"));

    // `plot` redraws a comparison from its runs' files alone.
    let csv_before = std::fs::read_to_string(out.join("comparison.csv")).unwrap();
    std::fs::remove_dir_all(out.join("charts")).unwrap();
    std::fs::remove_file(out.join("comparison.md")).unwrap();
    std::fs::remove_file(out.join("comparison.csv")).unwrap();
    std::fs::remove_file(out.join("report.html")).unwrap();
    ok(&raftbench(&["plot", out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(out.join("comparison.csv")).unwrap(),
        csv_before
    );
    assert_eq!(
        std::fs::read_to_string(out.join("comparison.md")).unwrap(),
        md
    );
    check_charts_and_report(&out);
}

#[test]
fn capacity_searches_the_rate_and_fits_growth() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("cap");
    let o = raftbench(&[
        "capacity",
        manifest("workloads/smoke.toml").to_str().unwrap(),
        "--backends",
        "memwal",
        "--slo",
        "put.p99<2s,get.p99<2s",
        "--sizes",
        "100,200",
        "--steps",
        "2",
        "--target-keys",
        "1000",
        "--scale",
        "0.5",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("projection to 1000 keys"), "{stdout}");
    crate::common::assert_valid("capacity.schema.json", &out.join("capacity.json"));
    let rows = csv_rows(&out.join("capacity.csv"));
    let count = |section: &str, metric: &str| {
        rows.iter()
            .filter(|r| r["section"] == section && r["metric"] == metric)
            .count()
    };
    assert_eq!(count("rate_search", "slo_met"), 2, "two probes");
    assert_eq!(count("max_rate_at_slo", "ops_per_sec"), 1);
    for m in [
        "disk_bytes_per_node",
        "rss_bytes_per_node",
        "snapshot_bytes",
        "replay_ms",
        "caught_up_ms",
    ] {
        assert_eq!(count("growth", m), 2, "{m} at both sizes");
        assert_eq!(count("projection", m), 1, "{m} projected");
    }
    // The projection is the fit evaluated at the target: between the two sizes' values
    // extended linearly.
    let growth = |m: &str, x: &str| -> f64 {
        rows.iter()
            .find(|r| r["section"] == "growth" && r["metric"] == m && r["x"] == x)
            .unwrap()["value"]
            .parse()
            .unwrap()
    };
    let (a, b) = (
        growth("snapshot_bytes", "100"),
        growth("snapshot_bytes", "200"),
    );
    assert!(b > a, "snapshot grows with data: {a} -> {b}");
    let proj: f64 = rows
        .iter()
        .find(|r| r["section"] == "projection" && r["metric"] == "snapshot_bytes")
        .unwrap()["value"]
        .parse()
        .unwrap();
    let expected = a + (b - a) / 100.0 * 900.0;
    assert!(
        (proj - expected).abs() / expected < 1e-3,
        "{proj} vs {expected}"
    );
    // Growth runs are never scaled: the 200-key run wrote exactly 200 keys, and per-key
    // figures divide by them.
    let size_dir = out.join("memwal/size-200");
    let summary = csv_rows(&size_dir.join("summary.csv"));
    let load = summary
        .iter()
        .find(|r| {
            r["phase"] == "load"
                && r["op"] == "put"
                && r["outcome"] == "ok"
                && r["latency_kind"] == "corrected"
        })
        .unwrap();
    assert_eq!(load["count"], "200");
    let run = read_json(&size_dir.join("run.json"));
    assert_eq!(run["keys_written"], 200);
    let per_key = growth("disk_bytes_per_key", "200");
    let per_node = growth("disk_bytes_per_node", "200");
    assert!(
        (per_key - per_node / 200.0).abs() < 0.01,
        "{per_key} vs {per_node}/200"
    );
    assert!(
        per_node > 200.0 * 128.0,
        "each node holds at least the values: {per_node}"
    );
    let names = check_charts_and_report(&out);
    assert!(names.contains(&"latency-vs-throughput".to_string()));
    assert!(
        names.iter().filter(|n| n.starts_with("growth-")).count() == 6,
        "{names:?}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Recommendation") && html.contains("Assumptions"));
}

#[test]
fn bad_slo_is_rejected_before_any_run() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("cap");
    for (slo, problem) in [
        ("put.p99<<20ms", "bad duration"),
        ("put.p99>20ms", "no '<'"),
        ("scan.p99<1ms", "unknown operation"),
        ("put.p100<1ms", "unknown percentile"),
    ] {
        let o = raftbench(&[
            "capacity",
            manifest("workloads/smoke.toml").to_str().unwrap(),
            "--slo",
            slo,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{slo} accepted");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains(problem) && e.contains("expected OP.PERCENTILE<DURATION"),
            "{slo}: {e}"
        );
        assert!(!out.exists(), "{slo}: nothing may run");
    }
    // An SLO on an operation the workload never runs.
    let o = raftbench(&[
        "capacity",
        manifest("workloads/smoke.toml").to_str().unwrap(),
        "--slo",
        "delete.p99<1ms",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("delete") && e.contains("no duration-bound phase"),
        "{e}"
    );
}
