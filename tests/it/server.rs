//! A node in-process, through the composition root (`server::run`) on port-0 listeners:
//! the API serves writes and reads, `/status` reports the node, and the shutdown future
//! stops it cleanly with its storage reopenable.

use std::time::Duration;

use bytes::Bytes;
use raftbench::client::{Client, Consistency};
use raftbench::node::NodeConfig;
use raftbench::server::{self, Listeners};
use raftbench::wire::{BackendConfig, BackendKind, MemberAddrs, RaftSettings, Role, StatusReport};

fn config(dir: &std::path::Path, listeners: &Listeners) -> NodeConfig {
    config_with(dir, listeners, BackendKind::Memwal)
}

fn config_with(dir: &std::path::Path, listeners: &Listeners, kind: BackendKind) -> NodeConfig {
    let peer = listeners.peer.local_addr().unwrap();
    let client = listeners.client.local_addr().unwrap();
    let advertise = MemberAddrs {
        peer_addr: peer.to_string(),
        client_addr: client.to_string(),
    };
    NodeConfig {
        id: 1,
        peer_listen: peer,
        client_listen: client,
        advertise: advertise.clone(),
        peers: vec![(1, advertise)],
        join: false,
        data_dir: dir.to_path_buf(),
        backend: BackendConfig::new(kind, ""),
        raft: RaftSettings {
            tick_ms: 10,
            ..RaftSettings::default()
        },
        secret: None,
        admin_auth: Default::default(),
        peer_limits: Default::default(),
    }
}

async fn bind() -> Listeners {
    Listeners {
        peer: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        client: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    }
}

/// Two rounds on one directory: the second reopens what the first wrote, which RocksDB
/// allows only once the first node has let go of every handle on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_in_process_until_shutdown() {
    let kinds: &[BackendKind] = if cfg!(feature = "rocksdb") {
        &[BackendKind::Memwal, BackendKind::Rocksdb]
    } else {
        &[BackendKind::Memwal]
    };
    for kind in kinds {
        runs_until_shutdown(*kind).await;
    }
}

async fn runs_until_shutdown(kind: BackendKind) {
    let t = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let listeners = bind().await;
        let cfg = config_with(t.path(), &listeners, kind);
        let url = format!("http://{}", cfg.advertise.client_addr);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = tokio::spawn(server::run(cfg, listeners, async {
            let _ = stopped.await;
        }));
        let client = Client::new(std::slice::from_ref(&url), Duration::from_secs(10));
        if round == 0 {
            client.put("k", Bytes::from_static(b"v")).await.unwrap();
        }
        // The second round reopened the same directory: the write is still there.
        let got = client.get("k", Consistency::Linearizable).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"v"[..]), "{kind} round {round}");
        let status: StatusReport = raftbench::client::http_client()
            .get(format!("{url}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status.id, 1);
        assert_eq!(status.raft.role, Role::Leader);
        assert!(status.raft.applied_index >= 2, "{:?}", status.raft);
        stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), node)
            .await
            .expect("the node stops within 10 s of its shutdown future")
            .unwrap();
        assert!(result.is_ok(), "{kind} round {round}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let first = bind().await;
    let cfg = config(t.path(), &first);
    let url = format!("http://{}", cfg.advertise.client_addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(server::run(cfg, first, async {
        let _ = stopped.await;
    }));
    // Once the API answers, the first node holds the directory's lock.
    let http = raftbench::client::http_client();
    let mut up = false;
    for _ in 0..500 {
        if http.get(format!("{url}/status")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up, "the first node never answered");
    let second = bind().await;
    let cfg2 = config(t.path(), &second);
    let e = server::run(cfg2, second, async {}).await.unwrap_err();
    assert!(
        e.to_string().contains("in use by another raftbench node"),
        "{e}"
    );
    stop.send(()).unwrap();
    node.await.unwrap().unwrap();
}

/// The value of the sample `name` with `labels` in a `/metrics` scrape (a counter's
/// `_total`, a histogram's `_count`), summed over the rest of its labels.
fn sample(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(b) => b.iter().map(|b| b.count).fold(0.0, f64::max),
            _ => 0.0,
        })
        .sum()
}

pub async fn scrape(url: &str) -> (String, prometheus_parse::Scrape, String) {
    let r = raftbench::client::http_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let s = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    (ct, s, text)
}

/// Every metric name `scripts/grafana/raftbench-dashboard.json` queries is a series a node
/// serves, exactly as Prometheus stores it: from each `# TYPE` line of `text`, a counter's
/// `_total`, a histogram's `_bucket`, `_sum` and `_count`, a gauge's own name. `text`
/// must come from a node with peers (a family without series has no `# TYPE` line).
pub fn check_dashboard_against(text: &str) {
    let mut series = std::collections::HashSet::new();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut w = l.split_whitespace();
        let (Some(name), Some(kind)) = (w.next(), w.next()) else {
            panic!("a # TYPE line without a name and type: {l}");
        };
        match kind {
            "counter" => {
                series.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suf in ["_bucket", "_sum", "_count"] {
                    series.insert(format!("{name}{suf}"));
                }
            }
            "gauge" => {
                series.insert(name.to_string());
            }
            other => panic!("{name}: unexpected metric type {other}"),
        }
    }
    let path = crate::common::manifest("scripts/grafana/raftbench-dashboard.json");
    let dash = crate::common::read_json(&path);
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 15, "{}: {exprs:?}", path.display());
    let mut names = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find(|c: char| c.is_ascii_lowercase()) {
            rest = &rest[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if word.starts_with("raftbench_") || word.starts_with("process_") {
                names.insert(word.to_string());
            }
            rest = &rest[end..];
        }
    }
    assert!(names.len() >= 20, "{names:?}");
    for n in &names {
        assert!(
            series.contains(n),
            "the dashboard queries {n}, which /metrics does not serve (it serves {series:?})"
        );
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// `GET /metrics` is OpenMetrics text a Prometheus parser reads, labelled with the node,
/// backend and fsync policy, and its counters and histograms move under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_under_load() {
    let t = tempfile::tempdir().unwrap();
    let listeners = bind().await;
    let cfg = config(t.path(), &listeners);
    let url = format!("http://{}", cfg.advertise.client_addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(server::run(cfg, listeners, async {
        let _ = stopped.await;
    }));
    let client = Client::new(std::slice::from_ref(&url), Duration::from_secs(10));
    client.put("warm", Bytes::from_static(b"v")).await.unwrap();
    let (ct, before, _) = scrape(&url).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    for i in 0..50 {
        client
            .put(&format!("k{i}"), Bytes::from(vec![7u8; 100]))
            .await
            .unwrap();
    }
    let (_, after, _) = scrape(&url).await;
    let grew = |name: &str, by: f64| {
        let (b, a) = (sample(&before, name), sample(&after, name));
        assert!(a - b >= by, "{name}: {b} -> {a}, expected at least +{by}");
    };
    // Every acknowledged put was persisted (synced: fsync = always) and applied.
    grew("raftbench_persist_seconds", 50.0);
    grew("raftbench_persist_entries", 50.0);
    grew("raftbench_applied_entries_total", 50.0);
    grew("raftbench_ready_seconds", 50.0);
    grew("raftbench_commit_index", 50.0);
    grew("raftbench_persist_bytes_sum", 50.0 * 100.0);
    assert_eq!(sample(&after, "raftbench_is_leader"), 1.0);
    assert!(sample(&after, "raftbench_term") >= 1.0);
    assert!(sample(&after, "raftbench_leader_changes_total") >= 1.0);
    assert!(sample(&after, "process_resident_memory_bytes") > 0.0);
    let persist = after
        .samples
        .iter()
        .find(|s| s.metric == "raftbench_persist_seconds")
        .unwrap();
    for (k, v) in [("node", "1"), ("backend", "memwal"), ("fsync", "always")] {
        assert_eq!(persist.labels.get(k), Some(v), "{:?}", persist.labels);
    }
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), node).await;
}
