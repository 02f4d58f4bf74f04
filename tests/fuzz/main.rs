//! Fuzz targets, run by proptest under stable Rust (issue 12): arbitrary and mutated input
//! to every decoder a stranger or a peer can reach — the peer handshake, the raft frame
//! stream, the command decoder — and to the HTTP API of a node running in-process.
//!
//! Properties: no panic (a panic hook counts them, including in the node's tasks); no
//! allocation larger than the limits (a counting global allocator records the largest one
//! made on the fuzzing thread — a 1 GiB length prefix must not reserve 1 GiB); well-formed
//! input still decodes to what was sent; and the node keeps serving.
//!
//! `scripts/test.sh` runs each target with proptest's default of 256 cases; for a longer
//! run: `PROPTEST_CASES=100000 cargo nextest run --release --test fuzz` (or
//! `cargo test --release --test fuzz`).

// raft's protobuf messages are built field by field, as raft-rs does.
#![allow(clippy::field_reassign_with_default)]

mod alloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use protobuf::ProtobufEnum as _;
use raft::eraftpb::{Entry, Message, MessageType, Snapshot};
use raftbench::kv::KvCommand;
use raftbench::transport::frames::{self, Limits};
use raftbench::transport::handshake::{self, Identity, MAX_HANDSHAKE_FRAME};
use raftbench::transport::peer_may_send;
use raftbench::wire::ClusterSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use alloc::largest_allocation;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Count panics anywhere in the process (a panic in a spawned task is otherwise only a
/// closed connection).
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A length-prefixed frame, with the true length or one the fuzzer chose.
fn framed(payload: &[u8], lie: Option<u32>) -> Vec<u8> {
    let mut v = lie.unwrap_or(payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        0i32..20,
        0u64..5,
        0u64..5,
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..6000)),
    )
        .prop_map(|(t, from, to, term, index, entries, snap)| {
            let mut m = Message::default();
            m.set_msg_type(MessageType::from_i32(t).unwrap_or(MessageType::MsgAppend));
            m.from = from;
            m.to = to;
            m.term = term;
            m.index = index;
            m.entries = entries
                .into_iter()
                .map(|d| {
                    let mut e = Entry::default();
                    e.data = d.into();
                    e
                })
                .collect::<Vec<_>>()
                .into();
            if let Some(data) = snap {
                let mut s = Snapshot::default();
                s.data = data.into();
                m.set_snapshot(s);
            }
            m
        })
}

/// One frame of a raft frame stream: a real message (whole or chunked), or junk.
#[derive(Debug, Clone)]
enum Piece {
    Message(Message),
    Junk {
        tag: u8,
        body: Vec<u8>,
        lie: Option<u32>,
    },
}

fn arb_piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => arb_message().prop_map(Piece::Message),
        1 => (0u8..4, prop::collection::vec(any::<u8>(), 0..512), prop::option::of(any::<u32>()))
            .prop_map(|(tag, body, lie)| Piece::Junk { tag, body, lie }),
    ]
}

/// Small limits, so that the fuzzer reaches them: messages of up to ~6.3 KB are chunked
/// at 1 KiB frames, and those over 4 KiB are refused as they are reassembled.
const FUZZ_LIMITS: Limits = Limits {
    max_frame: 1024,
    max_message: 4096,
    max_connections: 1,
    max_handshakes: 1,
    max_handshakes_per_ip: 1,
    max_per_peer: 1,
};

proptest! {
    /// Whatever a stranger sends instead of a hello is refused (nobody can forge the MAC),
    /// without a panic and without reserving more than a handshake frame: raw bytes,
    /// hello-shaped JSON with made-up nonces and MACs, and real answers to the challenge
    /// under a wrong secret. The real answer under the right secret is accepted (so the
    /// target can tell a refusal from a broken handshake).
    #[test]
    fn handshake_refuses_any_forgery(
        raw in prop::collection::vec(any::<u8>(), 0..2048),
        id in any::<u64>(),
        mac in prop::option::of("[0-9a-f]{0,80}"),
        nonce in "[0-9a-f]{0,80}",
        lie in prop::option::of(any::<u32>()),
        mode in 0u8..4,
        wrong in "[!-~]{32,80}",
    ) {
        count_panics();
        let secret = ClusterSecret::parse(&"s".repeat(40), std::path::Path::new("s")).unwrap();
        let structured = mode == 1;
        let input = if structured {
            let mut hello = serde_json::json!({
                "id": id, "peer_addr": "127.0.0.1:1", "client_addr": "127.0.0.1:2", "nonce": nonce,
            });
            if let Some(m) = &mac {
                hello["mac"] = m.clone().into();
            }
            framed(hello.to_string().as_bytes(), lie)
        } else {
            raw
        };
        let me = Identity { id: 1, peer_addr: "a".into(), client_addr: "b".into() };
        let rt = runtime();
        let answer_with = match mode {
            2 => Some(ClusterSecret::parse(&wrong, std::path::Path::new("w")).unwrap()),
            3 => Some(secret.clone()),
            _ => None,
        };
        let dialler = Identity { id: 2, peer_addr: "c".into(), client_addr: "d".into() };
        let (result, largest) = largest_allocation(|| rt.block_on(async {
            let (server, mut client) = tokio::io::duplex(256 * 1024);
            let writer = async move {
                if let Some(key) = &answer_with {
                    let _ = handshake::dial(client, &dialler, 1, Some(key)).await;
                    return;
                }
                let _ = client.write_all(&input).await;
                let _ = client.shutdown().await;
                let mut sink = Vec::new();
                let _ = client.read_to_end(&mut sink).await;
            };
            let (r, ()) = tokio::join!(
                handshake::accept(server, &me, 1 << 20, Some(&secret), |_| true),
                writer
            );
            r.map(|(_, h)| h.id)
        }));
        if mode == 3 {
            prop_assert!(matches!(result, Ok(2)), "the right secret is refused: {result:?}");
        } else if mode == 2 && wrong == "s".repeat(40) {
            // The fuzzer found the secret itself.
        } else {
            prop_assert!(result.is_err(), "a forged hello was accepted: {result:?}");
        }
        prop_assert!(largest <= 4 * MAX_HANDSHAKE_FRAME, "allocated {largest} bytes");
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    }

    /// The raft frame stream of an authenticated peer: real messages (whole or in chunks)
    /// come out as sent until the first junk frame; junk ends the stream with an error,
    /// never a panic; nothing allocates past the limits; and what comes out passes or
    /// fails the allow-list without a panic.
    #[test]
    fn raft_frame_stream(
        pieces in prop::collection::vec(arb_piece(), 0..12),
        sender_frame in 64usize..=1024,
    ) {
        count_panics();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut clean = true;
        let mut too_large = false;
        for p in &pieces {
            match p {
                Piece::Message(m) => {
                    let mut m = m.clone();
                    m.from = 2;
                    // A sender whose frame limit is at most the reader's (as negotiated).
                    let frames = frames::encode(&m, sender_frame);
                    let size = frames.iter().map(|f| f.len() - 1).sum::<usize>();
                    for f in &frames {
                        bytes.extend(framed(f, None));
                    }
                    if clean && frames.len() > 1 && size > FUZZ_LIMITS.max_message {
                        // Refused as it is reassembled; nothing after it is read.
                        too_large = true;
                        clean = false;
                    } else if clean {
                        expected.push(m);
                    }
                }
                Piece::Junk { tag, body, lie } => {
                    let mut f = vec![*tag];
                    f.extend(body);
                    bytes.extend(framed(&f, *lie));
                    clean = false;
                }
            }
        }
        let rt = runtime();
        let (got, largest) = largest_allocation(|| rt.block_on(async {
            let codec = LengthDelimitedCodec::builder().max_frame_length(FUZZ_LIMITS.max_frame).new_codec();
            let mut stream = FramedRead::new(&bytes[..], codec);
            let mut got = Vec::new();
            let r = frames::read_messages(&mut stream, &FUZZ_LIMITS, 2, |m, _bytes| {
                let _ = peer_may_send(&m, 1);
                got.push(m);
            }).await;
            (got, r)
        }));
        let (got, result) = got;
        // A junk frame may happen to be a valid message; up to the first junk, exactly
        // what was sent.
        prop_assert!(got.len() >= expected.len(), "lost messages: {result:?}");
        prop_assert_eq!(&got[..expected.len()], &expected[..]);
        if clean {
            prop_assert!(result.is_ok(), "{result:?}");
        }
        if too_large && got.len() == expected.len() {
            prop_assert!(
                result.as_ref().is_err_and(|e| e.contains("chunked message over")),
                "an oversized chunked message was not refused: {result:?}"
            );
        }
        prop_assert!(
            // Reassembly (doubling to 2× the message limit), the decoded copy, and the
            // codec's 8 KiB read buffer.
            largest <= 4 * FUZZ_LIMITS.max_message + 16 * 1024,
            "allocated {largest} bytes"
        );
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0);
    }

    /// The command decoder: valid commands round-trip, mutated and arbitrary bytes decode
    /// or are refused, and a length field never allocates past the input.
    #[test]
    fn command_decoder(
        key in prop::collection::vec(any::<u8>(), 0..64),
        value in prop::collection::vec(any::<u8>(), 0..256),
        put in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        count_panics();
        let cmd = if put {
            KvCommand::Put { key: key.clone(), value: value.clone() }
        } else {
            KvCommand::Delete { key: key.clone() }
        };
        let good = cmd.encode();
        prop_assert_eq!(KvCommand::decode(&good).unwrap(), cmd);
        let mut bad = good.clone();
        for (i, b) in &flips {
            let i = i.index(bad.len());
            bad[i] ^= b;
        }
        if let Some(c) = cut {
            bad.truncate(c.index(bad.len() + 1));
        }
        let (decoded, largest) = largest_allocation(|| KvCommand::decode(&bad));
        if let Ok(d) = decoded {
            prop_assert_eq!(d.encode(), bad.clone(), "decoding is exact");
        }
        prop_assert!(largest <= bad.len(), "allocated {largest} for {} bytes", bad.len());
    }
}

/// Arbitrary HTTP requests against a node's API, sent raw over TCP: every one gets an
/// HTTP answer (or a closed connection), none panics, and the node serves afterwards.
#[test]
fn http_api_survives_arbitrary_requests() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, node) = rt.block_on(start_node(dir.path()));
    let methods = [
        "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "G\0T", "",
    ];
    let paths = prop_oneof![
        Just("/kv/".to_string()),
        Just("/status".to_string()),
        Just("/members/".to_string()),
        Just("/admin/snapshot".to_string()),
        Just("/admin/transfer-leader/".to_string()),
        Just("/admin/partition".to_string()),
        Just("/admin/heal".to_string()),
        Just("/".to_string()),
    ];
    let request = (
        prop::sample::select(methods.to_vec()),
        paths,
        // Mostly paths a handler parses; now and then control characters (hyper's 400).
        prop_oneof![
            9 => "[a-zA-Z0-9%/?=&._~-]{0,80}",
            1 => "[a-zA-Z0-9%/?=&\\x00-\\x1f._~-]{0,80}",
        ],
        prop::collection::vec(("[A-Za-z-]{1,20}", "[ -~]{0,60}"), 0..4),
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::option::of(0u64..100_000_000),
    );
    let cases = AtomicUsize::new(0);
    let handled = AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::default());
    runner
        .run(&request, |(method, path, tail, headers, body, length)| {
            let mut req = format!("{method} {path}{tail} HTTP/1.1\r\nHost: x\r\n");
            for (k, v) in &headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                length.unwrap_or(body.len() as u64)
            ));
            let mut bytes = req.into_bytes();
            bytes.extend(&body);
            let answer = rt.block_on(async {
                let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
                let _ = conn.write_all(&bytes).await;
                let _ = conn.shutdown().await;
                let mut out = Vec::new();
                tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut out))
                    .await
                    .map(|_| out)
            });
            let answer = answer.map_err(|_| TestCaseError::fail("no answer within 15 s"))?;
            prop_assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
            prop_assert!(
                !answer.starts_with(b"HTTP/1.1 500"),
                "a 500: {:?}",
                String::from_utf8_lossy(&answer)
            );
            prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0);
            cases.fetch_add(1, Ordering::Relaxed);
            // A handler answered: a JSON error body, or a success.
            let text = String::from_utf8_lossy(&answer);
            if text.contains("{\"code\"") || text.starts_with("HTTP/1.1 2") {
                handled.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    let (cases, handled) = (cases.into_inner(), handled.into_inner());
    assert!(
        handled * 4 >= cases,
        "only {handled} of {cases} requests reached a handler: the target tests hyper's parser"
    );
    // The node still serves.
    rt.block_on(async {
        let http = raftbench::client::http_client();
        let r = http
            .put(format!("http://{addr}/kv/after-fuzz"))
            .body("ok")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = http
            .get(format!("http://{addr}/kv/after-fuzz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap(), Bytes::from_static(b"ok"));
        let _ = stop.send(());
        node.await.unwrap().unwrap();
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

type NodeTask = tokio::task::JoinHandle<Result<(), raftbench::node::NodeStartError>>;

/// A one-node cluster in-process on port-0 listeners.
async fn start_node(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    NodeTask,
) {
    use raftbench::server::{self, Listeners};
    use raftbench::wire::{BackendConfig, BackendKind, MemberAddrs, RaftSettings};
    let listeners = Listeners {
        peer: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        client: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let client = listeners.client.local_addr().unwrap();
    let advertise = MemberAddrs {
        peer_addr: listeners.peer.local_addr().unwrap().to_string(),
        client_addr: client.to_string(),
    };
    let cfg = raftbench::node::NodeConfig {
        id: 1,
        peer_listen: listeners.peer.local_addr().unwrap(),
        client_listen: client,
        advertise: advertise.clone(),
        peers: vec![(1, advertise)],
        join: false,
        data_dir: dir.to_path_buf(),
        backend: BackendConfig::new(BackendKind::Memwal, ""),
        raft: RaftSettings {
            tick_ms: 10,
            ..RaftSettings::default()
        },
        secret: None,
        admin_auth: Default::default(),
        peer_limits: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(server::run(cfg, listeners, async {
        let _ = stopped.await;
    }));
    let http = raftbench::client::http_client();
    for _ in 0..500 {
        if let Ok(r) = http.get(format!("http://{client}/status")).send().await
            && let Ok(s) = r.json::<raftbench::wire::StatusReport>().await
            && s.raft.role == raftbench::wire::Role::Leader
        {
            return (client, stop, node);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node did not become leader");
}
