//! The cluster secret: what peers prove to each other, and what admin calls carry.
//!
//! A cluster's secret is a line of text in a file of its own (`cluster.secret`, mode 0600,
//! beside the cluster file that names it with `secret_file`). Both wings read the same
//! file: nodes use it to authenticate peer connections (an HMAC challenge, see
//! `transport::handshake`) and to check the bearer token of admin requests; the harness
//! sends it as that token (`Authorization: Bearer <secret>`).
//!
//! The secret is the file's text with surrounding whitespace trimmed: printable ASCII, no
//! spaces, at least [`MIN_SECRET_CHARS`] characters, so that it fits an HTTP header as is.
//! [`ClusterSecret::generate`] makes 32 random bytes from the OS, in hex.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

/// Name of the secret file `raftbench cluster up` writes beside its cluster file.
pub const SECRET_FILE_NAME: &str = "cluster.secret";

/// Shortest secret accepted: 128 bits of hex.
pub const MIN_SECRET_CHARS: usize = 32;

/// Why a secret file could not be read, checked or written.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("cluster secret file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster secret file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// A cluster's shared secret. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Arc<str>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterSecret(<{} chars>)", self.0.len())
    }
}

impl ClusterSecret {
    /// A new random secret: 32 bytes from the operating system's generator, in hex.
    pub fn generate() -> ClusterSecret {
        use rand::TryRngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random generator works");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ClusterSecret(hex.into())
    }

    /// A secret from its text (checked as a file's would be; `what` names it in errors).
    pub fn parse(text: &str, what: &Path) -> Result<ClusterSecret, SecretError> {
        let invalid = |message: String| SecretError::Invalid {
            path: what.to_path_buf(),
            message,
        };
        let s = text.trim();
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(invalid(format!(
                "holds {c:?}; a secret is one line of printable ASCII without spaces"
            )));
        }
        if s.len() < MIN_SECRET_CHARS {
            return Err(invalid(format!(
                "the secret is {} characters; at least {MIN_SECRET_CHARS} are needed \
                 (`raftbench cluster up` generates 64)",
                s.len()
            )));
        }
        Ok(ClusterSecret(s.into()))
    }

    /// Read the secret file at `path`.
    pub fn load(path: &Path) -> Result<ClusterSecret, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ClusterSecret::parse(&text, path)
    }

    /// Write this secret to a new file at `path`, readable by its owner only, and make it
    /// durable. Refuses to replace an existing file.
    pub fn save_new(&self, path: &Path) -> Result<(), SecretError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        writeln!(f, "{}", self.0).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// The secret's bytes (the HMAC key).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The `Authorization` header value that admin requests carry.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header value carries this secret. Compared in constant
    /// time, so the time of a refusal does not tell how much of a guess was right.
    pub fn matches_bearer(&self, header: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some((scheme, token)) = header.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        token.len() == self.0.len() && bool::from(token.ct_eq(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_round_trip_through_their_file() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(SECRET_FILE_NAME);
        let s = ClusterSecret::generate();
        assert_eq!(s.as_bytes().len(), 64);
        assert_ne!(s, ClusterSecret::generate());
        s.save_new(&path).unwrap();
        assert_eq!(ClusterSecret::load(&path).unwrap(), s);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner may read the secret");
        assert!(s.save_new(&path).is_err(), "never replaces a secret");
        assert!(!format!("{s:?}").contains(std::str::from_utf8(s.as_bytes()).unwrap()));
    }

    #[test]
    fn bad_secrets_are_refused_with_the_file_named() {
        let p = Path::new("/x/cluster.secret");
        let e = ClusterSecret::parse("short", p).unwrap_err().to_string();
        assert!(
            e.contains("/x/cluster.secret") && e.contains("at least"),
            "{e}"
        );
        let e = ClusterSecret::parse(&format!("{} {}", "a".repeat(20), "b".repeat(20)), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without spaces"), "{e}");
        assert!(ClusterSecret::parse(&format!("  {}\n", "a".repeat(32)), p).is_ok());
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let s = ClusterSecret::parse(&"k".repeat(40), Path::new("s")).unwrap();
        assert!(s.matches_bearer(s.bearer().as_bytes()));
        assert!(s.matches_bearer(format!("bearer {}", "k".repeat(40)).as_bytes()));
        assert!(!s.matches_bearer(format!("Bearer {}", "k".repeat(39)).as_bytes()));
        assert!(!s.matches_bearer(format!("Bearer {}x", "k".repeat(40)).as_bytes()));
        assert!(!s.matches_bearer("k".repeat(40).as_bytes()));
        assert!(!s.matches_bearer(b""));
    }
}
