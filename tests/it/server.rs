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
