//! Web passwords of users: stored as an iterated, salted SHA-256 (`sha256i$ROUNDS$SALT$HASH`),
//! checked in constant time.

use sha2::{Digest, Sha256};

const ROUNDS: u32 = 100_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(salt: &str, password: &str, rounds: u32) -> String {
    let mut h: [u8; 32] = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .finalize()
        .into();
    for _ in 1..rounds {
        h = Sha256::new()
            .chain_update(h)
            .chain_update(password.as_bytes())
            .finalize()
            .into();
    }
    hex(&h)
}

/// A new hash of `password`, with a fresh salt from the system's random source.
pub fn hash_password(password: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    let salt = hex(&salt);
    Ok(format!(
        "sha256i${ROUNDS}${salt}${}",
        digest(&salt, password, ROUNDS)
    ))
}

/// Whether `password` is the one `stored` was made from.
pub fn check_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("sha256i"), Some(rounds), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next().and_then(|r| r.parse::<u32>().ok()),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    if rounds == 0 || rounds > 10_000_000 {
        return false;
    }
    let got = digest(salt, password, rounds);
    got.len() == hash.len()
        && got
            .bytes()
            .zip(hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_check_against_their_salted_hash() {
        let a = hash_password("s3cret").unwrap();
        let b = hash_password("s3cret").unwrap();
        assert_ne!(a, b, "each hash has its own salt");
        assert!(check_password(&a, "s3cret"));
        assert!(!check_password(&a, "s3cret "));
        assert!(!check_password("plain", "plain"));
        assert!(!check_password("sha256i$0$aa$bb", "x"));
    }
}
