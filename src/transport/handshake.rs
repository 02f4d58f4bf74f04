//! The peer handshake: who is on the other end of a connection, proven with the cluster
//! secret before any raft message is read.
//!
//! ```text
//! dialled node → dialler   Challenge { protocol, id, nonce_s, authenticated, max_frame }
//! dialler → dialled node   Hello { id, peer_addr, client_addr, nonce_c, mac }
//!                          mac = HMAC-SHA256(secret, "hello" ‖ nonce_s ‖ nonce_c ‖ both ids ‖
//!                                            frame limit ‖ authenticated ‖ addrs)
//! dialled node → dialler   Welcome::Accepted { mac' }   (mac' over "welcome" ‖ the same)
//!                          | Welcome::Refused { reason }
//! then dialler → dialled   raft frames (see `frames`)
//! ```
//!
//! Every handshake frame is JSON, read with a [`MAX_HANDSHAKE_FRAME`] limit, and the whole
//! exchange has a deadline ([`HANDSHAKE_TIMEOUT`]), so a stranger can neither make a node
//! reserve a large buffer nor hold a connection idle.
//!
//! **Why an HMAC challenge, not TLS.** What the issue asks of the peer port is that
//! strangers cannot speak raft to it; both ends already share a secret file, and the
//! benchmark must not measure a cipher: an HMAC over two fresh nonces proves knowledge of
//! the secret in both directions and cannot be replayed (each side picks a nonce the
//! other's MAC must cover), at the cost of one round trip per connection and nothing per
//! message. What it does not give: confidentiality, or integrity of the frames after the
//! handshake — an attacker who can already read and rewrite the TCP stream between two
//! nodes (on the path) can still tamper with it. TLS with a cluster CA would close that,
//! with certificate management and a per-byte cost; the README's security model says so.
//!
//! Without a secret (`--cluster-secret-file` not given) the MACs are left out and the
//! handshake only names the peers: the mode for quick local tries, warned about at
//! start-up and in `/status`. A node with a secret refuses peers without one, and the
//! other way round.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::frames::MIN_MAX_FRAME;
use crate::wire::ClusterSecret;

/// The protocol both ends must speak; bumped on any change to handshake or frames.
pub const PROTOCOL: &str = "raftbench-peer/3";

/// Largest handshake frame accepted (a hello is a few hundred bytes of JSON).
pub const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;

/// How long the whole handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type HmacSha256 = Hmac<Sha256>;

/// Who a node is, as its handshake tells its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
}

/// First frame, from the dialled node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    protocol: String,
    /// The dialled node's id (the dialler checks it reached whom it meant to).
    id: u64,
    /// 32 random bytes, hex.
    nonce: String,
    /// Whether the dialled node has a secret (and so expects a MAC).
    authenticated: bool,
    /// The largest frame the dialled node accepts (`--peer-max-frame`).
    max_frame: usize,
}

/// Second frame, from the dialler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub id: u64,
    pub peer_addr: String,
    pub client_addr: String,
    /// 32 random bytes, hex.
    nonce: String,
    /// HMAC over the exchange, hex; absent without a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

/// Third frame, from the dialled node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
enum Welcome {
    Accepted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    Refused {
        reason: String,
    },
}

/// Why a handshake failed. Every failure closes the connection before any raft message.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed during the handshake")]
    Closed,
    #[error("no handshake within {HANDSHAKE_TIMEOUT:?}")]
    TimedOut,
    #[error("malformed handshake frame: {0}")]
    Malformed(String),
    #[error("speaks {0:?}, not {PROTOCOL:?}")]
    Protocol(String),
    #[error("{0}")]
    Secret(String),
    #[error("node {0} was removed from this cluster")]
    Removed(u64),
    #[error("reached node {got}, not node {want}")]
    WrongPeer { want: u64, got: u64 },
    #[error("refused by the peer: {0}")]
    Refused(String),
    #[error("closed to make room: too many connections handshaking at once")]
    Evicted,
}

impl HandshakeError {
    /// Whether the other end failed to authenticate (as opposed to a dropped connection):
    /// what `/status` counts as an authentication failure.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            HandshakeError::Secret(_) | HandshakeError::Removed(_) | HandshakeError::Refused(_)
        )
    }
}

fn nonce() -> String {
    use rand::TryRngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random generator works");
    hex::encode(b)
}

/// The MAC of one side over everything both sides said: the protocol, the domain (`hello`
/// or `welcome`), both nonces, both ids, the dialled node's frame limit and whether it has
/// a secret, and the dialler's addresses, each length-prefixed so that no two exchanges
/// share an encoding.
fn mac(secret: &ClusterSecret, domain: &str, challenge: &Challenge, hello: &Hello) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    let numbers = [
        challenge.id.to_string(),
        hello.id.to_string(),
        challenge.max_frame.to_string(),
        challenge.authenticated.to_string(),
    ];
    for part in [
        PROTOCOL,
        domain,
        &challenge.nonce,
        &hello.nonce,
        &numbers[0],
        &numbers[1],
        &numbers[2],
        &numbers[3],
        &hello.peer_addr,
        &hello.client_addr,
    ] {
        m.update(&(part.len() as u64).to_le_bytes());
        m.update(part.as_bytes());
    }
    m
}

fn verify(
    secret: &ClusterSecret,
    domain: &str,
    challenge: &Challenge,
    hello: &Hello,
    given: Option<&str>,
) -> Result<(), String> {
    let Some(given) = given else {
        return Err("sent no proof of the cluster secret (is it running without one?)".into());
    };
    let given = hex::decode(given).map_err(|_| "sent a malformed proof".to_string())?;
    mac(secret, domain, challenge, hello)
        .verify_slice(&given)
        .map_err(|_| "does not know the cluster secret".to_string())
}

type Frames<S> = Framed<S, LengthDelimitedCodec>;

fn handshake_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_HANDSHAKE_FRAME)
        .new_codec()
}

async fn read<S, T>(frames: &mut Frames<S>) -> Result<T, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let frame = frames.next().await.ok_or(HandshakeError::Closed)??;
    serde_json::from_slice(&frame).map_err(|e| HandshakeError::Malformed(e.to_string()))
}

async fn write<S, T>(frames: &mut Frames<S>, v: &T) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = serde_json::to_vec(v).expect("handshake frames serialise");
    frames.send(bytes::Bytes::from(bytes)).await?;
    Ok(())
}

async fn deadline<T>(
    f: impl std::future::Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, f)
        .await
        .unwrap_or(Err(HandshakeError::TimedOut))
}

/// The dialled side: challenge the dialler, check its hello (its proof of the secret, then
/// `admits` — whether its id may join this node's raft traffic) and answer. Returns the
/// connection, its codec still at the handshake's frame limit, and the checked hello.
pub async fn accept<S>(
    stream: S,
    me: &Identity,
    max_frame: usize,
    secret: Option<&ClusterSecret>,
    admits: impl FnOnce(u64) -> bool,
) -> Result<(Frames<S>, Hello), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frames = Framed::new(stream, handshake_codec());
    let hello = deadline(async {
        let challenge = Challenge {
            protocol: PROTOCOL.into(),
            id: me.id,
            nonce: nonce(),
            authenticated: secret.is_some(),
            max_frame,
        };
        write(&mut frames, &challenge).await?;
        let hello: Hello = read(&mut frames).await?;
        let checked = match secret {
            Some(s) => verify(s, "hello", &challenge, &hello, hello.mac.as_deref())
                .map_err(|why| HandshakeError::Secret(format!("node {} {why}", hello.id))),
            None => Ok(()),
        }
        .and_then(|()| {
            if hello.id == 0 || hello.id == me.id {
                Err(HandshakeError::Malformed(format!(
                    "a hello from node {}",
                    hello.id
                )))
            } else if admits(hello.id) {
                Ok(())
            } else {
                Err(HandshakeError::Removed(hello.id))
            }
        });
        if let Err(e) = checked {
            // Tell the dialler why (it holds the secret or it does not; either way the
            // reason tells nothing it could not learn by trying).
            let _ = write(
                &mut frames,
                &Welcome::Refused {
                    reason: e.to_string(),
                },
            )
            .await;
            return Err(e);
        }
        let mac = secret.map(|s| {
            hex::encode(
                mac(s, "welcome", &challenge, &hello)
                    .finalize()
                    .into_bytes(),
            )
        });
        write(&mut frames, &Welcome::Accepted { mac }).await?;
        Ok(hello)
    })
    .await?;
    Ok((frames, hello))
}

/// The dialling side: answer node `want`'s challenge and check its welcome (that it is
/// `want`, and that it too knows the secret). Returns the connection, ready for raft
/// frames, and the largest frame `want` accepts.
pub async fn dial<S>(
    stream: S,
    me: &Identity,
    want: u64,
    secret: Option<&ClusterSecret>,
) -> Result<(Frames<S>, usize), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frames = Framed::new(stream, handshake_codec());
    let max_frame = deadline(async {
        let challenge: Challenge = read(&mut frames).await?;
        if challenge.protocol != PROTOCOL {
            return Err(HandshakeError::Protocol(challenge.protocol));
        }
        if challenge.max_frame < MIN_MAX_FRAME {
            return Err(HandshakeError::Protocol(format!(
                "{} with a frame limit of {} bytes (below {MIN_MAX_FRAME})",
                challenge.protocol, challenge.max_frame
            )));
        }
        if challenge.id != want {
            return Err(HandshakeError::WrongPeer {
                want,
                got: challenge.id,
            });
        }
        if secret.is_some() && !challenge.authenticated {
            return Err(HandshakeError::Secret(format!(
                "node {want} runs without a cluster secret; this node requires one"
            )));
        }
        let mut hello = Hello {
            id: me.id,
            peer_addr: me.peer_addr.clone(),
            client_addr: me.client_addr.clone(),
            nonce: nonce(),
            mac: None,
        };
        hello.mac = secret
            .map(|s| hex::encode(mac(s, "hello", &challenge, &hello).finalize().into_bytes()));
        write(&mut frames, &hello).await?;
        match read(&mut frames).await? {
            Welcome::Refused { reason } => Err(HandshakeError::Refused(reason)),
            Welcome::Accepted { mac } => match secret {
                Some(s) => verify(s, "welcome", &challenge, &hello, mac.as_deref())
                    .map_err(|why| HandshakeError::Secret(format!("node {want} {why}"))),
                None => Ok(()),
            },
        }?;
        Ok(challenge.max_frame)
    })
    .await?;
    Ok((frames, max_frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: u64) -> Identity {
        Identity {
            id,
            peer_addr: format!("127.0.0.1:{id}"),
            client_addr: format!("127.0.0.1:1{id}"),
        }
    }

    fn secret(c: char) -> ClusterSecret {
        ClusterSecret::parse(&c.to_string().repeat(40), std::path::Path::new("s")).unwrap()
    }

    async fn exchange(
        server: Option<ClusterSecret>,
        client: Option<ClusterSecret>,
        admitted: bool,
    ) -> (Result<u64, HandshakeError>, Result<(), HandshakeError>) {
        let (a, b) = tokio::io::duplex(4096);
        let s = tokio::spawn(async move {
            accept(a, &who(1), 1 << 20, server.as_ref(), |_| admitted)
                .await
                .map(|(_, h)| h.id)
        });
        let c = dial(b, &who(2), 1, client.as_ref()).await.map(|(_, max)| {
            assert_eq!(max, 1 << 20, "the dialled node's frame limit");
        });
        (s.await.unwrap(), c)
    }

    #[tokio::test]
    async fn peers_that_share_the_secret_are_admitted() {
        let (s, c) = exchange(Some(secret('a')), Some(secret('a')), true).await;
        assert_eq!(s.unwrap(), 2);
        c.unwrap();
        let (s, c) = exchange(None, None, true).await;
        assert_eq!(s.unwrap(), 2);
        c.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_or_missing_secret_is_refused_on_both_sides() {
        let (s, c) = exchange(Some(secret('a')), Some(secret('b')), true).await;
        let (s, c) = (s.unwrap_err(), c.unwrap_err());
        assert!(
            s.is_auth_failure() && s.to_string().contains("does not know"),
            "{s}"
        );
        assert!(
            c.is_auth_failure() && c.to_string().contains("refused"),
            "{c}"
        );
        let (s, c) = exchange(Some(secret('a')), None, true).await;
        assert!(s.unwrap_err().to_string().contains("no proof"));
        assert!(c.unwrap_err().is_auth_failure());
        let (_, c) = exchange(None, Some(secret('a')), true).await;
        assert!(
            c.unwrap_err()
                .to_string()
                .contains("without a cluster secret")
        );
    }

    #[tokio::test]
    async fn removed_members_are_refused() {
        let (s, c) = exchange(Some(secret('a')), Some(secret('a')), false).await;
        assert!(matches!(s.unwrap_err(), HandshakeError::Removed(2)));
        assert!(c.unwrap_err().to_string().contains("was removed"));
    }

    #[tokio::test]
    async fn a_replayed_hello_does_not_pass_a_new_challenge() {
        // Record a good hello, then replay it against a fresh challenge.
        let sec = secret('a');
        let (a, b) = tokio::io::duplex(4096);
        let s2 = sec.clone();
        let server =
            tokio::spawn(async move { accept(a, &who(1), 1 << 20, Some(&s2), |_| true).await });
        let mut client = Framed::new(b, handshake_codec());
        let challenge: Challenge = read(&mut client).await.unwrap();
        let mut hello = Hello {
            id: 2,
            peer_addr: "x".into(),
            client_addr: "y".into(),
            nonce: nonce(),
            mac: None,
        };
        hello.mac = Some(hex::encode(
            mac(&sec, "hello", &challenge, &hello)
                .finalize()
                .into_bytes(),
        ));
        write(&mut client, &hello).await.unwrap();
        server.await.unwrap().unwrap();
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(a, &who(1), 1 << 20, Some(&sec), |_| true).await });
        let mut client = Framed::new(b, handshake_codec());
        let _: Challenge = read(&mut client).await.unwrap();
        write(&mut client, &hello).await.unwrap();
        let e = server.await.unwrap().unwrap_err();
        assert!(
            e.to_string().contains("does not know the cluster secret"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn dialling_the_wrong_node_is_noticed() {
        let (a, b) = tokio::io::duplex(4096);
        tokio::spawn(async move { accept(a, &who(3), 1 << 20, None, |_| true).await });
        let e = dial(b, &who(2), 1, None).await.unwrap_err();
        assert!(
            matches!(e, HandshakeError::WrongPeer { want: 1, got: 3 }),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_dialler_times_out() {
        let (a, _b) = tokio::io::duplex(4096);
        let e = accept(a, &who(1), 1 << 20, None, |_| true)
            .await
            .unwrap_err();
        assert!(matches!(e, HandshakeError::TimedOut), "{e}");
    }
}
