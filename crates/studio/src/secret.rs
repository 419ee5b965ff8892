//! Secrets: HIT tokens and the keyed, non-reversible worker-id hash.
//!
//! Annotators reach a HIT through a link that carries a random 128-bit
//! token; the database keeps only the token's SHA-256, so a copy of the
//! database does not give access to the HITs. Worker ids are stored only as
//! HMAC-SHA256 under a key that lives in a separate file (created with
//! mode 0600 next to the database), so the ids cannot be recovered from the
//! database by hashing candidate ids.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The key of the worker-id hash.
#[derive(Clone)]
pub struct WorkerKey([u8; 32]);

impl std::fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerKey(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Invalid(format!("no system randomness: {e}")))?;
    Ok(b)
}

impl WorkerKey {
    /// A key from 32 bytes (tests).
    pub fn from_bytes(b: [u8; 32]) -> WorkerKey {
        WorkerKey(b)
    }

    /// Reads the key file (64 hex digits), creating it with a fresh random
    /// key (mode 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<WorkerKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = unhex(&text).filter(|b| b.len() == 32).ok_or_else(|| {
                    Error::format(path, "line 1", "expected 64 hexadecimal digits (the worker-id key)")
                })?;
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes);
                Ok(WorkerKey(k))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random::<32>()?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(|e| Error::io(path, e))?;
                f.write_all(format!("{}\n", hex(&key)).as_bytes()).map_err(|e| Error::io(path, e))?;
                f.sync_all().map_err(|e| Error::io(path, e))?;
                Ok(WorkerKey(key))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The stored form of a worker id: `HMAC-SHA256(key, id)` in hex, cut to
    /// 32 digits (128 bits).
    pub fn hash_worker(&self, worker: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(worker.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }
}

/// A new random HIT token (32 hex digits).
pub fn new_token() -> Result<String> {
    Ok(hex(&random::<16>()?))
}

/// The stored form of a HIT token: its SHA-256 in hex.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `s` looks like a token (32 lower-case hex digits), checked before
/// any database lookup.
pub fn is_token(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_published_test_vector() {
        // FIPS 180-2, "abc".
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn worker_hash_is_keyed_and_stable() {
        let a = WorkerKey::from_bytes([1; 32]);
        let b = WorkerKey::from_bytes([2; 32]);
        assert_eq!(a.hash_worker("A1B2"), a.hash_worker("A1B2"));
        assert_ne!(a.hash_worker("A1B2"), b.hash_worker("A1B2"));
        assert_ne!(a.hash_worker("A1B2"), a.hash_worker("A1B3"));
        assert_eq!(a.hash_worker("A1B2").len(), 32);
        assert!(!a.hash_worker("A1B2").contains("A1B2"));
    }

    #[test]
    fn key_file_is_created_once_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.secret");
        let k1 = WorkerKey::load_or_create(&p).unwrap();
        let k2 = WorkerKey::load_or_create(&p).unwrap();
        assert_eq!(k1.hash_worker("w"), k2.hash_worker("w"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&p, "zz\n").unwrap();
        let e = WorkerKey::load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("k.secret") && e.contains("64 hexadecimal digits"), "{e}");
    }

    #[test]
    fn tokens_are_random_and_well_formed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(is_token(&a) && is_token(&b));
        assert_ne!(a, b);
        assert!(!is_token("../../etc/passwd"));
        assert!(!is_token(&a.to_uppercase()));
    }
}
