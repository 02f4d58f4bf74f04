//! The network surface under attack, with real node processes on 127.0.0.1 (issue 12):
//! strangers without the secret, a wrong-secret node, an insider's forged raft messages and
//! oversized frames, a committed entry that is not a command, floods of half-open peer
//! connections, a snapshot larger than a frame, and admin calls without the bearer token.
//! Every attack must leave every node running, serving and committing, and show in
//! `/status`.

// raft's protobuf messages are built field by field, as raft-rs does.
#![allow(clippy::field_reassign_with_default)]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use protobuf::Message as _;
use raft::eraftpb::{Entry, Message, MessageType};
use raftbench::client::Consistency;
use raftbench::cluster::{Cluster, NodeState, Processes};
use raftbench::storage::BackendKind;
use raftbench::transport::handshake::{HandshakeError, Identity, dial};
use raftbench::wire::{ClusterSecret, RaftSettings, StatusReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{LEADER_WAIT, all_client, client_for, start_with, wait_applied, wait_until};
use crate::common::RAFTBENCH;

const WAIT: Duration = LEADER_WAIT;

fn secret_of(c: &Cluster<Processes>) -> ClusterSecret {
    ClusterSecret::load(c.secret_path().expect("cluster up makes a secret")).unwrap()
}

async fn status(c: &Cluster<Processes>, id: u64) -> StatusReport {
    c.status(id).await.expect("the node serves /status")
}

/// Every node runs, and the cluster commits a new write and reads it back.
async fn still_serving(c: &Cluster<Processes>, key: &str) {
    for id in c.nodes().keys() {
        assert_eq!(c.state(*id), NodeState::Running, "node {id}");
        status(c, *id).await;
    }
    let cl = all_client(c);
    cl.put(key, Bytes::from_static(b"v"))
        .await
        .expect("the cluster still commits");
    let got = cl.get(key, Consistency::Linearizable).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"v"[..]));
}

fn log_of(c: &Cluster<Processes>, id: u64) -> String {
    std::fs::read_to_string(&c.node(id).unwrap().log_path).unwrap_or_default()
}

fn identity_of(c: &Cluster<Processes>, id: u64) -> Identity {
    let n = c.node(id).unwrap();
    Identity {
        id,
        peer_addr: n.peer_addr.clone(),
        client_addr: n.client_addr.clone(),
    }
}

/// Dial node `to`'s peer port as node `me` claims to be.
async fn dial_as(
    c: &Cluster<Processes>,
    me: Identity,
    to: u64,
    secret: Option<&ClusterSecret>,
) -> Result<
    tokio_util::codec::Framed<TcpStream, tokio_util::codec::LengthDelimitedCodec>,
    HandshakeError,
> {
    let conn = TcpStream::connect(&c.node(to).unwrap().peer_addr)
        .await
        .expect("peer port");
    dial(conn, &me, to, secret).await.map(|(frames, _)| frames)
}

/// A raft frame as the transport sends it: tag 0, then the protobuf message.
fn raft_frame(m: &Message) -> Bytes {
    let mut v = vec![0u8];
    v.extend(m.write_to_bytes().unwrap());
    v.into()
}

#[allow(clippy::field_reassign_with_default)]
fn message(t: MessageType, from: u64, to: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.from = from;
    m.to = to;
    m
}

/// Whether the other end closes `conn` within `within` (EOF or reset), reading and
/// discarding whatever it sends first.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_without_the_secret_reach_nothing() {
    let (_t, mut c) = start_with(BackendKind::Memwal, 3, RaftSettings::default(), &[]);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let follower = *c.nodes().keys().find(|id| **id != leader).unwrap();
    let secret = secret_of(&c);

    // The old attack: a self-declared hello, then an empty MsgPropose. Closed unanswered.
    let mut raw = TcpStream::connect(&c.node(leader).unwrap().peer_addr)
        .await
        .unwrap();
    let hello = serde_json::json!({"id": follower, "peer_addr": "x:1", "client_addr": "x:2"});
    let mut bytes = Vec::new();
    for payload in [
        hello.to_string().into_bytes(),
        raft_frame(&message(MessageType::MsgPropose, follower, leader)).to_vec(),
    ] {
        bytes.extend((payload.len() as u32).to_be_bytes());
        bytes.extend(payload);
    }
    raw.write_all(&bytes).await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(5)).await);

    // A wrong secret, no secret, and the right secret for a node that is no member.
    let wrong = ClusterSecret::generate();
    let e = dial_as(&c, identity_of(&c, follower), leader, Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("does not know the cluster secret"),
        "{e}"
    );
    let e = dial_as(&c, identity_of(&c, follower), leader, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no proof"), "{e}");
    let stranger = Identity {
        id: 99,
        peer_addr: "127.0.0.1:9".into(),
        client_addr: "127.0.0.1:10".into(),
    };
    // An id the leader does not know, with the secret, is admitted: the cluster may have
    // added it beyond what this node applied (as etcd's peer handler does).
    let admitted = dial_as(&c, stranger, leader, Some(&secret)).await;
    assert!(admitted.is_ok(), "{:?}", admitted.err());
    drop(admitted);
    // And a hello that claims the node itself.
    let e = dial_as(&c, identity_of(&c, leader), leader, Some(&secret))
        .await
        .unwrap_err();
    assert!(matches!(e, HandshakeError::Refused(_)), "{e}");

    still_serving(&c, "after-strangers").await;

    // Admin calls from a browser page (an Origin header) need the token even on loopback.
    let heal = |origin: bool| {
        let mut r =
            raftbench::client::http_client().post(format!("{}/admin/heal", c.url(leader).unwrap()));
        if origin {
            r = r.header("Origin", "http://evil.example");
        }
        r.send()
    };
    assert_eq!(heal(false).await.unwrap().status(), 200);
    assert_eq!(heal(true).await.unwrap().status(), 401);

    // A removed member, even with the secret, is refused (its tombstone is replicated).
    // Stopped first, so that its own redials do not add to the counts below.
    let before = status(&c, leader).await.security;
    c.stop(follower).unwrap();
    c.remove_member(follower).await.unwrap();
    wait_until("the removal applied on the leader", WAIT, || async {
        !status(&c, leader).await.raft.voters.contains(&follower)
    })
    .await;
    let e = dial_as(&c, identity_of(&c, follower), leader, Some(&secret))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("was removed"), "{e}");

    // The node counts after it answers: wait for the counters.
    wait_until("five refused handshakes", WAIT, || async {
        let s = status(&c, leader).await.security;
        s.handshakes_refused >= 5 && s.auth_failures >= 3 && s.auth_failures > before.auth_failures
    })
    .await;
    let s = status(&c, leader).await.security;
    assert!(s.authenticated && s.warning.is_none(), "{s:?}");
    assert_eq!(
        s.messages_refused, 0,
        "nothing reached the allow-list: {s:?}"
    );
    assert!(s.last_refusal.is_some(), "{s:?}");
    assert!(
        log_of(&c, leader).contains("refused a peer connection"),
        "the refusals are logged"
    );
}

/// A node started with a secret other than its cluster's: refused both ways, visible in
/// its log and `/status` and the leader's, and it never receives the cluster's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_is_refused() {
    let (t, mut c) = start_with(BackendKind::Memwal, 3, RaftSettings::default(), &[]);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let odd = *c.nodes().keys().rev().find(|id| **id != leader).unwrap();
    all_client(&c)
        .put("before", Bytes::from_static(b"1"))
        .await
        .unwrap();
    c.stop(odd).unwrap();
    let wrong = t.path().join("wrong.secret");
    ClusterSecret::generate().save_new(&wrong).unwrap();
    let n = c.node(odd).unwrap().clone();
    let log = t.path().join("odd.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(RAFTBENCH)
        .args(["node", "--id", &odd.to_string(), "--cluster-file"])
        .arg(c.cluster_file_path())
        .args(["--peer-addr", &n.peer_addr, "--client-addr", &n.client_addr])
        .arg("--data-dir")
        .arg(&n.data_dir)
        .arg("--cluster-secret-file")
        .arg(&wrong)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let http = raftbench::client::http_client();
    let url = format!("http://{}/status", n.client_addr);
    wait_until("the odd node's refusals", WAIT, || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let Ok(r) = http.get(&url).send().await else {
                return false;
            };
            let Ok(s) = r.json::<StatusReport>().await else {
                return false;
            };
            s.security.auth_failures > 0 && s.security.dial_auth_failures > 0
        }
    })
    .await;
    let s = status(&c, leader).await.security;
    assert!(s.auth_failures > 0 || s.dial_auth_failures > 0, "{s:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("does not know the cluster secret"),
        "the odd node logs why: {text}"
    );
    let live: Vec<u64> = c.nodes().keys().copied().filter(|id| *id != odd).collect();
    client_for(&c, &live)
        .put("during", Bytes::from_static(b"2"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let local = client_for(&c, &[odd])
        .get("during", Consistency::Local)
        .await;
    assert!(
        matches!(local, Ok(None)),
        "the odd node got nothing: {local:?}"
    );
}

/// An insider (the secret, a member's id) sends what no raft peer sends: each message is
/// dropped and counted, and a frame over the limit closes the connection.
async fn insider_messages_are_refused(kind: BackendKind) {
    let (_t, c) = start_with(kind, 3, RaftSettings::default(), &[]);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let follower = *c.nodes().keys().find(|id| **id != leader).unwrap();
    let secret = secret_of(&c);
    all_client(&c)
        .put("before", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let mut conn = dial_as(&c, identity_of(&c, follower), leader, Some(&secret))
        .await
        .expect("the secret and a member's id pass the handshake");
    conn.codec_mut().set_max_frame_length(u32::MAX as usize);
    let empty = message(MessageType::MsgPropose, follower, leader);
    let mut poison = empty.clone();
    let mut e = Entry::default();
    e.data = Bytes::from_static(b"\xffnot a raftbench command");
    poison.entries = vec![e].into();
    let bare_read_index = message(MessageType::MsgReadIndex, follower, leader);
    let elsewhere = message(MessageType::MsgAppend, follower, 77);
    let local = message(MessageType::MsgHup, follower, leader);
    for m in [&empty, &poison, &bare_read_index, &elsewhere, &local] {
        conn.send(raft_frame(m)).await.unwrap();
    }
    wait_until("five refused messages", WAIT, || async {
        status(&c, leader).await.security.messages_refused >= 5
    })
    .await;
    still_serving(&c, "after-insider").await;

    // A hello cannot rewrite a member's addresses: claiming to be the leader with other
    // addresses, toward a follower, leaves the follower's redirects pointing at the real
    // leader (the replicated address book wins).
    let mut forged = identity_of(&c, leader);
    forged.peer_addr = "127.0.0.1:9".into();
    forged.client_addr = "127.0.0.1:10".into();
    let _held = dial_as(&c, forged, follower, Some(&secret)).await.unwrap();
    let r = raftbench::client::http_client()
        .put(format!("{}/kv/redirected", c.url(follower).unwrap()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["leader_addr"].as_str(),
        Some(c.node(leader).unwrap().client_addr.as_str()),
        "{body}"
    );

    // A frame prefix of 1 GiB after the handshake: over the 32 MiB limit, closed at once.
    let mut conn = dial_as(&c, identity_of(&c, follower), leader, Some(&secret))
        .await
        .unwrap();
    let stream = conn.get_mut();
    stream.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    stream.write_all(&[0u8; 1024]).await.unwrap();
    assert!(closed_within(stream, Duration::from_secs(5)).await);
    wait_until("the oversized frame refused", WAIT, || async {
        status(&c, leader).await.security.frames_refused >= 1
    })
    .await;
    // Before the handshake, 1 GiB announced in place of a hello: closed too.
    let mut raw = TcpStream::connect(&c.node(leader).unwrap().peer_addr)
        .await
        .unwrap();
    raw.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(5)).await);
    assert_eq!(status(&c, leader).await.security.not_commands, 0);
    still_serving(&c, "after-frames").await;
}

/// A committed entry that is not a command. An insider plays a leader of a later term (as
/// the follower `fake`) to the two other nodes and appends one; they commit and apply it,
/// one of them wins the next election (their logs are ahead of `fake`'s) and replicates it
/// to `fake`. Every replica applies it as the same no-op, counts it, and the cluster goes
/// on.
async fn an_entry_that_is_not_a_command_is_a_no_op_everywhere(kind: BackendKind) {
    let (_t, c) = start_with(kind, 3, RaftSettings::default(), &[]);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let others: Vec<u64> = c
        .nodes()
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let (fake, victim) = (others[0], others[1]);
    all_client(&c)
        .put("before", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = status(&c, victim).await;
        let l = status(&c, leader).await;
        if s.raft.last_index == l.raft.last_index && s.raft.applied_index == l.raft.commit_index {
            break s;
        }
        assert!(Instant::now() < deadline, "the victim did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (term, last) = (s.raft.term, s.raft.last_index);
    let mut append = message(MessageType::MsgAppend, fake, victim);
    append.term = term + 5;
    append.log_term = term;
    append.index = last;
    append.commit = last + 1;
    let mut e = Entry::default();
    e.term = term + 5;
    e.index = last + 1;
    e.data = Bytes::from_static(b"\xffnot a raftbench command");
    append.entries = vec![e].into();
    // The leader first (its log is the victim's), then the victim.
    for to in [leader, victim] {
        let mut m = append.clone();
        m.to = to;
        let mut conn = dial_as(&c, identity_of(&c, fake), to, Some(&secret_of(&c)))
            .await
            .unwrap();
        conn.send(raft_frame(&m)).await.unwrap();
    }
    let deadline = Instant::now() + WAIT;
    for id in c.nodes().keys().copied() {
        loop {
            let s = status(&c, id).await;
            if s.raft.applied_index > last && s.security.not_commands == 1 {
                break;
            }
            if Instant::now() > deadline {
                for n in c.nodes().keys() {
                    let log = log_of(&c, *n);
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    let st = c.status(*n).await.map(|s| (s.raft, s.security));
                    eprintln!("node {n}: {st:?}\n{}", tail.join("\n"));
                }
                panic!(
                    "node {id} did not apply entry {} as a no-op: {s:?}",
                    last + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    still_serving(&c, "after-poison").await;
    assert!(
        log_of(&c, victim).contains("applied as a no-op"),
        "the no-op is logged"
    );
}

/// Connections that never say hello, kept coming at every node: the oldest handshaking
/// ones are closed to make room (so the flood cannot keep a member out), the members'
/// connections keep the cluster committing, and a follower restarted during the flood gets
/// its connections through and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_peer_connections_are_capped() {
    let (_t, mut c) = start_with(BackendKind::Memwal, 3, RaftSettings::default(), &[]);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let follower = *c.nodes().keys().find(|id| **id != leader).unwrap();
    let addrs: Vec<String> = c.nodes().values().map(|n| n.peer_addr.clone()).collect();
    // The flood: up to 120 idle connections per node (the handshake cap is 64), topped up
    // every 100 ms, until the test stops it (at most 120 s).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut idle: Vec<Vec<TcpStream>> = addrs.iter().map(|_| Vec::new()).collect();
            let mut opened = 0usize;
            let end = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                for (addr, conns) in addrs.iter().zip(idle.iter_mut()) {
                    // Connections the node closed are replaced.
                    let mut probe = [0u8; 256];
                    conns.retain(|s| match s.try_read(&mut probe) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    });
                    while conns.len() < 120 {
                        match TcpStream::connect(addr).await {
                            Ok(s) => {
                                conns.push(s);
                                opened += 1;
                            }
                            Err(_) => break,
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            opened
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cl = all_client(&c);
    for i in 0..20 {
        cl.put(&format!("flood{i}"), Bytes::from_static(b"x"))
            .await
            .expect("commits while the peer ports are flooded");
    }
    // A member restarted in the flood must get through: its dials, and the leader's to it.
    c.stop(follower).unwrap();
    cl.put("while-down", Bytes::from_static(b"y"))
        .await
        .unwrap();
    c.spawn(follower).unwrap();
    let target = status(&c, leader).await.raft.commit_index;
    wait_applied(&c, follower, target).await;
    assert!(!flood.is_finished(), "the flood was still on");
    let s = status(&c, leader).await.security;
    assert!(
        s.handshakes_evicted >= 100,
        "the flood's oldest handshakes made room: {s:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flood.await.unwrap();
    assert!(
        opened > 720,
        "the nodes closed the flood's connections and it opened {opened} to replace them"
    );
    still_serving(&c, "after-flood").await;
}

/// A lagging follower catches up through a snapshot several times larger than the frame
/// limit (lowered to 64 KiB here so the test stays small).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_frame_installs() {
    let raft = RaftSettings {
        snapshot_interval: 100,
        compact_lag: 10,
        ..RaftSettings::default()
    };
    let (_t, mut c) = start_with(BackendKind::Memwal, 3, raft, &["--peer-max-frame", "64KiB"]);
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let lagging = *c.nodes().keys().find(|id| **id != leader).unwrap();
    let cl = all_client(&c);
    c.stop(lagging).unwrap();
    let value = Bytes::from(vec![b'z'; 4096]);
    for i in 0..150 {
        cl.put(&format!("big{i}"), value.clone()).await.unwrap();
    }
    let report: serde_json::Value = c
        .http()
        .post(format!("{}/admin/snapshot", c.url(leader).unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = report["bytes"].as_u64().unwrap();
    assert!(bytes > 8 * 64 * 1024, "a snapshot of {bytes} bytes");
    let target = status(&c, leader).await.raft.commit_index;
    c.spawn(lagging).unwrap();
    wait_applied(&c, lagging, target).await;
    let s = status(&c, lagging).await;
    assert!(s.raft.snapshot_index > 1, "installed a snapshot: {s:?}");
    assert_eq!(
        client_for(&c, &[lagging])
            .get("big149", Consistency::Local)
            .await
            .unwrap(),
        Some(value)
    );
}

/// With `--admin-auth always`, admin calls need the secret: 401 JSON without it, and the
/// harness's own client (which sends it) works. Data calls need nothing; reads say how
/// they were served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_secret_when_required() {
    let (_t, c) = start_with(
        BackendKind::Memwal,
        3,
        RaftSettings::default(),
        &["--admin-auth", "always"],
    );
    let leader = c.wait_for_leader(WAIT).await.unwrap();
    let url = c.url(leader).unwrap();
    let bare = raftbench::client::http_client();
    for (req, what) in [
        (bare.post(format!("{url}/admin/snapshot")), "no token"),
        (
            bare.post(format!("{url}/admin/heal"))
                .bearer_auth("not-the-secret-not-the-secret-xx"),
            "a wrong token",
        ),
        (
            bare.post(format!("{url}/members/9")).json(
                &serde_json::json!({"peer_addr": "127.0.0.1:1", "client_addr": "127.0.0.1:2"}),
            ),
            "no token",
        ),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{what}: {body}");
    }
    let r = c
        .http()
        .post(format!("{url}/admin/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the harness sends the secret");
    let s = status(&c, leader).await.security;
    assert!(s.admin_token_required && s.admin_refused >= 3, "{s:?}");

    // Data calls need no token; reads are labelled.
    let r = bare
        .put(format!("{url}/kv/labelled"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (q, want) in [("?consistency=local", "local"), ("", "linearizable")] {
        let r = bare
            .get(format!("{url}/kv/labelled{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-raftbench-consistency"], want);
        let applied: u64 = r.headers()["x-raftbench-applied-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(applied >= 2, "applied index {applied}");
    }
    let missing = bare
        .get(format!("{url}/kv/nothing?consistency=local"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-raftbench-consistency"], "local");
    assert!(Path::new(c.secret_path().unwrap()).exists());
}

macro_rules! per_backend {
    ($($name:ident),*) => {
        mod memwal {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BackendKind::Memwal).await;
                }
            )*
        }
        mod rocksdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BackendKind::Rocksdb).await;
                }
            )*
        }
    };
}

per_backend!(
    insider_messages_are_refused,
    an_entry_that_is_not_a_command_is_a_no_op_everywhere
);
