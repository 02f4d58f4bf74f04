//! Cluster behaviour with real `raftbench node` processes on 127.0.0.1, for both backends:
//! reads and writes with redirects, leader kill and restart, snapshot catch-up, membership
//! changes, partitions, bad input, and refused data directories.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftbench::client::{Client, Consistency};
use raftbench::cluster::{Cluster, ClusterSpec, DiskFault, Processes};
use raftbench::faultfs::MetadataMode;
use raftbench::storage::{BackendConfig, BackendKind, FsyncPolicy};
use raftbench::wire::RaftSettings;
use raftbench::wire::Role;
use serde_json::Value;

use crate::common::{RAFTBENCH, raftbench};

pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(30);

fn start(
    kind: BackendKind,
    nodes: u64,
    raft: RaftSettings,
) -> (tempfile::TempDir, Cluster<Processes>) {
    start_with(kind, nodes, raft, &[])
}

/// A cluster of `nodes` on 127.0.0.1 (fsync always, small RocksDB caches), each node
/// started with the extra flags `node_args`.
pub(crate) fn start_with(
    kind: BackendKind,
    nodes: u64,
    raft: RaftSettings,
    node_args: &[&str],
) -> (tempfile::TempDir, Cluster<Processes>) {
    start_spec(kind, nodes, raft, node_args, None)
}

/// As [`start`], with each node's data directory on its own fault file system.
fn start_on_fault_disks(
    kind: BackendKind,
    nodes: u64,
    raft: RaftSettings,
) -> (tempfile::TempDir, Cluster<Processes>) {
    start_spec(kind, nodes, raft, &[], Some(MetadataMode::Durable))
}

fn start_spec(
    kind: BackendKind,
    nodes: u64,
    raft: RaftSettings,
    node_args: &[&str],
    fault_disks: Option<MetadataMode>,
) -> (tempfile::TempDir, Cluster<Processes>) {
    let t = tempfile::tempdir().unwrap();
    let mut backend = BackendConfig::new(kind, "").with_fsync(FsyncPolicy::Always);
    backend.rocksdb.block_cache_size = bytesize::ByteSize::mib(16);
    backend.rocksdb.write_buffer_size = bytesize::ByteSize::mib(8);
    let spec = ClusterSpec {
        nodes,
        backend,
        raft,
        dir: t.path().join("cluster"),
        binary: RAFTBENCH.into(),
        fault_disks,
        node_args: node_args.iter().map(|s| s.to_string()).collect(),
    };
    let c = Cluster::start(spec).expect("cluster starts");
    (t, c)
}

pub(crate) fn client_for(c: &Cluster<Processes>, ids: &[u64]) -> Client {
    let eps: Vec<String> = ids
        .iter()
        .map(|id| c.node(*id).unwrap().client_addr.clone())
        .collect();
    Client::new(&eps, Duration::from_secs(20))
}

pub(crate) fn all_client(c: &Cluster<Processes>) -> Client {
    let ids: Vec<u64> = c.nodes().keys().copied().collect();
    client_for(c, &ids)
}

fn http() -> reqwest::Client {
    raftbench::client::http_client()
}

pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until node `id` has applied at least `index`.
pub(crate) async fn wait_applied(c: &Cluster<Processes>, id: u64, index: u64) {
    wait_until(
        &format!("node {id} to apply {index}"),
        LEADER_WAIT,
        || async {
            c.status(id)
                .await
                .is_ok_and(|s| s.raft.applied_index >= index)
        },
    )
    .await;
}

async fn put_get_and_redirects(kind: BackendKind) {
    let (_t, c) = start(kind, 3, RaftSettings::default());
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let follower = *c.nodes().keys().find(|id| **id != leader).unwrap();
    // `wait_for_leader` needs only a majority to know the leader; the redirect and the
    // reads below need every node to (a node that knows no leader rightly answers 503).
    for id in c.nodes().keys() {
        wait_until(
            &format!("node {id} to know leader {leader}"),
            LEADER_WAIT,
            || async {
                c.status(*id)
                    .await
                    .is_ok_and(|s| s.raft.leader_id == leader)
            },
        )
        .await;
    }

    // A write to a follower is refused with the leader's address.
    let resp = http()
        .put(format!("{}/kv/direct", c.url(follower).unwrap()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 421);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "not_leader");
    assert_eq!(body["leader_id"], leader);
    assert_eq!(
        body["leader_addr"],
        c.node(leader).unwrap().client_addr.as_str()
    );

    // A client that only knows the follower follows the redirect.
    let via_follower = client_for(&c, &[follower]);
    via_follower.put("k1", Bytes::from("v1")).await.unwrap();
    let via_leader = client_for(&c, &[leader]);
    via_leader.put("k 2/ü", Bytes::from("v2")).await.unwrap();
    assert_eq!(
        via_leader
            .get("k1", Consistency::Linearizable)
            .await
            .unwrap(),
        Some(Bytes::from("v1"))
    );
    // Linearizable reads on every node see the latest acknowledged write at once.
    for id in c.nodes().keys() {
        let r = client_for(&c, &[*id]);
        via_leader
            .put("latest", Bytes::from(format!("from-{id}")))
            .await
            .unwrap();
        for other in c.nodes().keys() {
            let resp = http()
                .get(format!("{}/kv/latest", c.url(*other).unwrap()))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "linearizable read on node {other}");
            assert_eq!(resp.text().await.unwrap(), format!("from-{id}"));
        }
        assert_eq!(
            r.get("k 2/ü", Consistency::Linearizable).await.unwrap(),
            Some(Bytes::from("v2"))
        );
    }
    via_leader.delete("k1").await.unwrap();
    assert_eq!(
        via_follower
            .get("k1", Consistency::Linearizable)
            .await
            .unwrap(),
        None
    );
    let s = c.status(follower).await.unwrap();
    assert_eq!(
        s.raft.leader_id,
        c.wait_for_leader(LEADER_WAIT).await.unwrap()
    );
    assert_eq!(s.backend.kind, kind);
}

/// Acknowledged writes: key -> value.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writers record every acknowledged put; returns the shared record.
fn spawn_writers(
    client: Arc<Client>,
    n: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for w in 0..n {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                let value = format!("value-{w}-{i}");
                if client.put(&key, Bytes::from(value.clone())).await.is_ok() {
                    acked.lock().unwrap().insert(key, value);
                }
                i += 1;
            }
        }));
    }
    (acked, tasks)
}

async fn kill_leader_under_writes(kind: BackendKind) {
    let (_t, mut c) = start(kind, 3, RaftSettings::default());
    let old = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let client = Arc::new(all_client(&c));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acked, tasks) = spawn_writers(client.clone(), 4, stop.clone());
    wait_until(
        "writes acknowledged before the kill",
        LEADER_WAIT,
        || async { acked.lock().unwrap().len() >= 20 },
    )
    .await;
    c.kill(old).unwrap();
    let new = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    assert_ne!(new, old);
    // Writes resume under the new leader.
    let resumed = acked.lock().unwrap().len();
    wait_until("writes to resume", LEADER_WAIT, || async {
        acked.lock().unwrap().len() > resumed + 20
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for (k, v) in &acked {
        assert_eq!(
            client.get(k, Consistency::Linearizable).await.unwrap(),
            Some(Bytes::from(v.clone())),
            "acknowledged write {k} lost after killing the leader"
        );
    }
    // The killed node restarts, replays, and catches up (to the commit index of whoever
    // leads now: leadership may have moved again on a loaded machine).
    let current = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let commit = c.status(current).await.unwrap().raft.commit_index;
    c.spawn(old).unwrap();
    wait_applied(&c, old, commit).await;
    let s = c.status(old).await.unwrap();
    assert!(!s.startup.fresh, "restart reopened the existing data");
    let local = client_for(&c, &[old]);
    let (k, v) = acked.iter().next_back().unwrap();
    assert_eq!(
        local.get(k, Consistency::Local).await.unwrap(),
        Some(Bytes::from(v.clone()))
    );
}

async fn snapshot_catch_up(kind: BackendKind) {
    let raft = RaftSettings {
        snapshot_interval: 100,
        compact_lag: 10,
        ..RaftSettings::default()
    };
    let (_t, mut c) = start(kind, 3, raft);
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let lagging = *c.nodes().keys().find(|id| **id != leader).unwrap();
    let client = all_client(&c);
    client.put("before", Bytes::from("1")).await.unwrap();
    c.stop(lagging).unwrap();
    for i in 0..400 {
        client
            .put(&format!("k{i}"), Bytes::from(vec![b'x'; 200]))
            .await
            .unwrap();
    }
    let ls = c.status(leader).await.unwrap();
    let stopped_at = ls.raft.commit_index;
    assert!(
        ls.raft.first_index > 50,
        "leader compacted its log (first index {})",
        ls.raft.first_index
    );
    c.spawn(lagging).unwrap();
    wait_applied(&c, lagging, stopped_at).await;
    let s = c.status(lagging).await.unwrap();
    assert!(
        s.raft.snapshot_index > 1,
        "the lagging follower caught up through a snapshot (snapshot index {})",
        s.raft.snapshot_index
    );
    let local = client_for(&c, &[lagging]);
    assert_eq!(
        local.get("k399", Consistency::Local).await.unwrap(),
        Some(Bytes::from(vec![b'x'; 200]))
    );
    assert_eq!(
        local.get("before", Consistency::Local).await.unwrap(),
        Some(Bytes::from("1"))
    );
    // A forced snapshot reports what it did.
    let resp = http()
        .post(format!("{}/admin/snapshot", c.url(leader).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.unwrap();
    assert!(r["bytes"].as_u64().unwrap() > 400 * 200, "{r}");
    assert!(r["duration_ms"].as_f64().unwrap() >= 0.0);
    // Snapshots are built off the raft thread: /status counts them, none is in progress
    // once the forced one has answered, and the raft loop's own time is accounted.
    let s = c.status(leader).await.unwrap().raft;
    assert!(s.snapshots_built >= 2, "periodic and forced builds: {s:?}");
    assert_eq!(s.snapshot_building, None, "{s:?}");
    assert_eq!(s.snapshot_failures, 0, "{s:?}");
    assert!(
        s.busy_us >= s.longest_turn_us && s.turns >= s.readies,
        "{s:?}"
    );
    assert!(
        s.persist_us > 0 && s.apply_us > 0 && s.persist_us + s.apply_us <= s.busy_us,
        "{s:?}"
    );
}

/// ~1 MiB of state written through `client`, every write to `leader`'s snapshot files
/// delayed by `per_write` (a snapshot file takes several writes), and a snapshot of it forced on
/// `leader`: the request, answered once the build is done.
async fn slow_forced_snapshot(
    c: &mut Cluster<Processes>,
    client: &Client,
    leader: u64,
    per_write: Duration,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    for i in 0..1000 {
        client
            .put(&format!("big{i}"), Bytes::from(vec![b'v'; 1024]))
            .await
            .unwrap();
    }
    c.disk_fault(
        leader,
        &DiskFault::Slow {
            latency: per_write,
            duration: None,
            writes: true,
            files: Some("storage/snap/".into()),
        },
    )
    .unwrap();
    let url = format!("{}/admin/snapshot", c.url(leader).unwrap());
    tokio::spawn(async move { http().post(url).send().await })
}

/// The snapshot build `/status` shows on node `id`, polled for up to 20 s (`None`: none
/// showed).
async fn build_in_progress(
    c: &Cluster<Processes>,
    id: u64,
) -> Option<raftbench::wire::SnapshotBuilding> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(b) = c.status(id).await.unwrap().raft.snapshot_building {
            return Some(b);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A snapshot is built off the raft thread: while one is being written (made slow here by
/// delaying every write to the leader's snapshot files), writes keep being acknowledged,
/// and `/status` shows the build in progress. Asserted on behaviour, not on timings.
async fn writes_continue_during_a_snapshot(kind: BackendKind) {
    let raft = RaftSettings {
        snapshot_interval: 0,
        ..RaftSettings::default()
    };
    let (_t, mut c) = start_on_fault_disks(kind, 3, raft);
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let client = client_for(&c, &[leader]);
    let forced = slow_forced_snapshot(&mut c, &client, leader, Duration::from_millis(50)).await;
    let building = |s: &raftbench::wire::StatusReport| s.raft.snapshot_building.clone();
    let Some(first) = build_in_progress(&c, leader).await else {
        let r = forced.await.unwrap().unwrap();
        let status = r.status();
        panic!(
            "/status never showed the snapshot being built; it answered {status}: {} / {:?}",
            r.text().await.unwrap(),
            c.status(leader).await.unwrap().raft
        );
    };
    // Writes acknowledged while /status shows the same build before and after them.
    let mut acked_during = 0;
    for i in 0..200 {
        let before = building(&c.status(leader).await.unwrap());
        client
            .put(&format!("during{i}"), Bytes::from("x"))
            .await
            .unwrap();
        let after = building(&c.status(leader).await.unwrap());
        match (before, after) {
            (Some(b), Some(a))
                if b.from_index == first.from_index && a.from_index == first.from_index =>
            {
                assert!(
                    a.elapsed_ms >= b.elapsed_ms,
                    "progress moves on: {b:?} then {a:?}"
                );
                acked_during += 1;
            }
            (b, a) => {
                eprintln!("after {acked_during} writes: before {b:?}, after {a:?}");
                break;
            }
        }
    }
    let resp = forced.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let report = resp.text().await.unwrap();
    assert!(
        acked_during >= 3,
        "writes were acknowledged while the snapshot was built ({acked_during}; {report})"
    );
    c.disk_fault(leader, &DiskFault::Heal).unwrap();
    let s = c.status(leader).await.unwrap().raft;
    assert_eq!(s.snapshot_building, None, "{s:?}");
    assert!(
        s.snapshots_built >= 1 && s.snapshot_index >= first.from_index,
        "{s:?}"
    );
    assert_eq!(
        client
            .get("during0", Consistency::Linearizable)
            .await
            .unwrap(),
        Some(Bytes::from("x"))
    );
}

/// Kill -9 of the leader while its background snapshot is being written (made slow, as
/// above): nothing acknowledged is lost, the half-written snapshot is never adopted (the
/// node restarts from its log, and no temporary snapshot file is left behind), and the
/// node catches up.
async fn kill_during_a_background_snapshot(kind: BackendKind) {
    let raft = RaftSettings {
        snapshot_interval: 0,
        ..RaftSettings::default()
    };
    let (_t, mut c) = start_on_fault_disks(kind, 3, raft);
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let client = all_client(&c);
    let before = c.status(leader).await.unwrap().raft.snapshot_index;
    let forced = slow_forced_snapshot(&mut c, &client, leader, Duration::from_secs(2)).await;
    let building = build_in_progress(&c, leader)
        .await
        .expect("/status never showed the snapshot being built");
    // Acknowledged during the build, then the kill while it is still in progress.
    for i in 0..5 {
        client
            .put(&format!("during{i}"), Bytes::from("x"))
            .await
            .unwrap();
    }
    let still = c.status(leader).await.unwrap().raft.snapshot_building;
    assert!(
        still.is_some(),
        "the build ended before the kill: {still:?}"
    );
    c.kill(leader).unwrap();
    let _ = forced.await;
    c.disk_fault(leader, &DiskFault::Heal).unwrap();
    let current = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    for (k, v) in [("big999", vec![b'v'; 1024]), ("during4", b"x".to_vec())] {
        assert_eq!(
            client.get(k, Consistency::Linearizable).await.unwrap(),
            Some(Bytes::from(v)),
            "acknowledged write {k} lost"
        );
    }
    let commit = c.status(current).await.unwrap().raft.commit_index;
    c.spawn(leader).unwrap();
    wait_applied(&c, leader, commit).await;
    let s = c.status(leader).await.unwrap().raft;
    assert!(
        s.snapshot_index < building.from_index && s.snapshot_index == before,
        "the interrupted snapshot (from index {}) was adopted: {s:?}",
        building.from_index
    );
    let snap_dir = c.node(leader).unwrap().data_dir.join("storage/snap");
    let leftovers: Vec<_> = std::fs::read_dir(&snap_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", snap_dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".tmp")),
        "half-written snapshot left in {}: {leftovers:?}",
        snap_dir.display()
    );
    let local = client_for(&c, &[leader]);
    assert_eq!(
        local.get("during4", Consistency::Local).await.unwrap(),
        Some(Bytes::from("x"))
    );
}

async fn membership_changes(kind: BackendKind) {
    let (_t, mut c) = start(kind, 3, RaftSettings::default());
    c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let client = all_client(&c);
    for i in 0..20 {
        client
            .put(&format!("m{i}"), Bytes::from("x"))
            .await
            .unwrap();
    }
    let new = c.add_node().await.unwrap();
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    client.put("after-add", Bytes::from("y")).await.unwrap();
    let commit = c.status(leader).await.unwrap().raft.commit_index;
    wait_applied(&c, new, commit).await;
    let s = c.status(new).await.unwrap();
    assert_eq!(s.raft.voters, vec![1, 2, 3, 4]);
    let local = client_for(&c, &[new]);
    assert_eq!(
        local.get("m0", Consistency::Local).await.unwrap(),
        Some(Bytes::from("x"))
    );

    // Remove a follower that is not the new node (asking who leads now: the leader may
    // have changed while the new node caught up, and the leader cannot be removed).
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let removed = *c
        .nodes()
        .keys()
        .find(|id| **id != leader && **id != new)
        .unwrap();
    c.remove_member(removed).await.unwrap();
    let client = all_client(&c);
    for i in 0..20 {
        client
            .put(&format!("r{i}"), Bytes::from("z"))
            .await
            .unwrap();
    }
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let voters = c.status(leader).await.unwrap().raft.voters;
    assert!(!voters.contains(&removed), "{voters:?}");
    // The removed node stops receiving traffic: nothing written after its removal reaches
    // its log. (Compared with the leader's log, not the removed node's own last index,
    // which may still be catching up on appends sent before the removal.)
    let before = c.status(leader).await.unwrap().raft.last_index;
    for i in 0..20 {
        client
            .put(&format!("s{i}"), Bytes::from("z"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = c.status(removed).await.unwrap();
    assert!(
        after.raft.last_index <= before,
        "removed node still receives entries: its last index {} > {before}, the leader's \
         before the writes",
        after.raft.last_index
    );
    // (Whether the removed node itself ever learns of its removal is up to timing: the
    // leader may stop replicating before it sends the commit.)
}

async fn partitioned_leader(kind: BackendKind) {
    let (_t, c) = start(kind, 3, RaftSettings::default());
    let old = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let others: Vec<u64> = c.nodes().keys().copied().filter(|id| *id != old).collect();
    let client = all_client(&c);
    client.put("pre", Bytes::from("1")).await.unwrap();
    let resp = http()
        .post(format!("{}/admin/partition", c.url(old).unwrap()))
        .json(&serde_json::json!({ "isolate_from": others }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The majority elects a new leader.
    wait_until("a new leader in the majority", LEADER_WAIT, || async {
        let mut ok = false;
        for id in &others {
            if let Ok(s) = c.status(*id).await {
                ok |= s.raft.role == Role::Leader;
            }
        }
        ok
    })
    .await;
    let majority = client_for(&c, &others);
    majority.put("during", Bytes::from("2")).await.unwrap();
    // The old leader never acknowledges a write it cannot replicate.
    let resp = http()
        .put(format!("{}/kv/lost", c.url(old).unwrap()))
        .body("3")
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    let acknowledged = resp.as_ref().is_ok_and(|r| r.status().is_success());
    assert!(
        !acknowledged,
        "the isolated old leader acknowledged a write"
    );
    // Heal: everyone converges on the majority's history.
    http()
        .post(format!("{}/admin/heal", c.url(old).unwrap()))
        .send()
        .await
        .unwrap();
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let commit = c.status(leader).await.unwrap().raft.commit_index;
    for id in c.nodes().keys() {
        wait_applied(&c, *id, commit).await;
        let local = client_for(&c, &[*id]);
        assert_eq!(
            local.get("during", Consistency::Local).await.unwrap(),
            Some(Bytes::from("2")),
            "node {id} did not converge"
        );
        assert_eq!(local.get("lost", Consistency::Local).await.unwrap(), None);
    }
}

async fn bad_input_is_a_json_4xx(kind: BackendKind) {
    let (_t, c) = start(kind, 1, RaftSettings::default());
    let leader = c.wait_for_leader(LEADER_WAIT).await.unwrap();
    let url = c.url(leader).unwrap();
    let h = http();
    let long_key = "k".repeat(raftbench::wire::MAX_KEY_BYTES + 1);
    let big = vec![0u8; raftbench::wire::MAX_VALUE_BYTES + 1];
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "long key",
            h.put(format!("{url}/kv/{long_key}")).body("v"),
            413,
            "key_too_large",
        ),
        (
            "big body",
            h.put(format!("{url}/kv/k")).body(big),
            413,
            "bad_body",
        ),
        (
            "bad member json",
            h.post(format!("{url}/members/5"))
                .body("{nope")
                .header("content-type", "application/json"),
            400,
            "bad_request",
        ),
        (
            "member json missing fields",
            h.post(format!("{url}/members/5"))
                .json(&serde_json::json!({"peer_addr": "127.0.0.1:1"})),
            400,
            "bad_request",
        ),
        (
            "unknown member",
            h.delete(format!("{url}/members/42")),
            404,
            "unknown_member",
        ),
        (
            "member id 0",
            h.post(format!("{url}/members/0")).json(
                &serde_json::json!({"peer_addr": "127.0.0.1:1", "client_addr": "127.0.0.1:2"}),
            ),
            400,
            "bad_request",
        ),
        (
            "member id not a number",
            h.delete(format!("{url}/members/abc")),
            400,
            "bad_request",
        ),
        (
            "reserved key",
            h.put(format!("{url}/kv/%00raftbench%2Fmember%2F1"))
                .body("x"),
            400,
            "bad_request",
        ),
        (
            "bad consistency",
            h.get(format!("{url}/kv/k?consistency=eventual")),
            400,
            "bad_request",
        ),
        (
            "bad partition body",
            h.post(format!("{url}/admin/partition"))
                .json(&serde_json::json!({"isolate": [2]})),
            400,
            "bad_request",
        ),
        (
            "bad partition direction",
            h.post(format!("{url}/admin/partition"))
                .json(&serde_json::json!({"isolate_from": [2], "direction": "sideways"})),
            400,
            "bad_request",
        ),
        (
            "link loss above 1",
            h.post(format!("{url}/admin/link"))
                .json(&serde_json::json!({"peers": [2], "delay_ms": 5, "loss": 1.5})),
            400,
            "bad_request",
        ),
        (
            "link jitter above its delay",
            h.post(format!("{url}/admin/link"))
                .json(&serde_json::json!({"peers": [2], "delay_ms": 5, "jitter_ms": 9})),
            400,
            "bad_request",
        ),
        (
            "unknown endpoint",
            h.get(format!("{url}/nope")),
            404,
            "not_found",
        ),
        (
            "adding an existing member",
            h.post(format!("{url}/members/1")).json(
                &serde_json::json!({"peer_addr": "127.0.0.1:1", "client_addr": "127.0.0.1:2"}),
            ),
            409,
            "rejected",
        ),
    ];
    for (what, req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON: {e}"));
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // The node is still healthy.
    let client = client_for(&c, &[leader]);
    client.put("k", Bytes::from("fine")).await.unwrap();
}

async fn refuses_foreign_data_dirs(kind: BackendKind) {
    let (_t, mut c) = start(kind, 1, RaftSettings::default());
    c.wait_for_leader(LEADER_WAIT).await.unwrap();
    c.stop(1).unwrap();
    let node1 = c.node(1).unwrap().data_dir.clone();
    let peers = "2=127.0.0.1:1/127.0.0.1:2";
    let dir = node1.to_str().unwrap();
    let out = raftbench(&[
        "node",
        "--id",
        "2",
        "--peers",
        peers,
        "--peer-addr",
        "127.0.0.1:0",
        "--client-addr",
        "127.0.0.1:0",
        "--data-dir",
        dir,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to node 1"), "{err}");
    let other = match kind {
        BackendKind::Memwal => "rocksdb",
        _ => "memwal",
    };
    let peers1 = "1=127.0.0.1:1/127.0.0.1:2";
    let out = raftbench(&[
        "node",
        "--id",
        "1",
        "--peers",
        peers1,
        "--peer-addr",
        "127.0.0.1:0",
        "--client-addr",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--backend",
        other,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("created by the {kind} backend")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// One peer frame: a 4-byte big-endian length, then the bytes.
macro_rules! cluster_tests {
    ($($name:ident),*) => {
        mod memwal {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(BackendKind::Memwal).await;
                }
            )*
        }
        mod rocksdb {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(BackendKind::Rocksdb).await;
                }
            )*
        }
    };
}

cluster_tests!(
    put_get_and_redirects,
    kill_leader_under_writes,
    snapshot_catch_up,
    writes_continue_during_a_snapshot,
    kill_during_a_background_snapshot,
    membership_changes,
    partitioned_leader,
    bad_input_is_a_json_4xx,
    refuses_foreign_data_dirs
);
