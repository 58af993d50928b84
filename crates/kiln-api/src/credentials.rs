//! Secrets compared and passwords stored, in one place for every door of the master (the worker
//! port, the change hooks, `/try`, logins).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `given` is the secret `expected`, in a time that shows neither where they differ nor
/// how long `expected` is: both are compared as SHA-256 digests.
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    Sha256::digest(expected)
        .ct_eq(&Sha256::digest(given))
        .into()
}

/// The prefix of API tokens, so that a token is recognised where it leaks (in a log, a
/// repository) and cannot be taken for a password.
pub const TOKEN_PREFIX: &str = "kiln_";

/// A new API token's text: the prefix and 32 random bytes in hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TOKEN_PREFIX}{hex}"))
}

/// What is stored of a token: the SHA-256 digest of its text, in hex. A token is random and
/// long, so a fast digest is enough to keep it from whoever reads the database.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// bcrypt's cost for new web passwords: about a quarter of a second on a current core.
const BCRYPT_COST: u32 = 12;

/// A new hash of a web password: bcrypt, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, BCRYPT_COST)
}

/// What checking a password against its stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is wrong, or the hash is not one kiln knows.
    Wrong,
    /// The password is right; `rehash` says the hash is of an older kind and should be replaced
    /// by [`hash_password`]'s, which only the right password allows.
    Right { rehash: bool },
}

/// Checks `password` against `stored`: a bcrypt hash; the iterated, salted SHA-256
/// (`sha256i$ROUNDS$SALT$HEX`) that earlier versions of kiln stored; or such a hash wrapped in
/// bcrypt by [`wrap_legacy`]. Both older kinds ask to be rehashed.
pub fn check_password(stored: &str, password: &str) -> PasswordCheck {
    let right = if stored.starts_with(LEGACY) {
        legacy_sha256i(stored, password).then_some(true)
    } else if stored.starts_with(WRAPPED) {
        wrapped_sha256i(stored, password).then_some(true)
    } else {
        bcrypt::verify(password, stored)
            .unwrap_or(false)
            .then_some(false)
    };
    match right {
        Some(rehash) => PasswordCheck::Right { rehash },
        None => PasswordCheck::Wrong,
    }
}

/// The prefix of the hashes earlier versions stored.
const LEGACY: &str = "sha256i$";

/// The prefix of an earlier version's hash wrapped in bcrypt.
const WRAPPED: &str = "sha256i+bcrypt$";

/// An earlier version's hash made as strong as a new one without knowing the password: its hex
/// digest is hashed with bcrypt, and a login checks the digest of the password it is given
/// against that. `None` when `stored` is not such a hash.
pub fn wrap_legacy(stored: &str) -> Option<Result<String, bcrypt::BcryptError>> {
    let (rounds, salt, hex) = legacy_parts(stored.strip_prefix(LEGACY)?)?;
    Some(bcrypt::hash(hex, BCRYPT_COST).map(|inner| format!("{WRAPPED}{rounds}${salt}${inner}")))
}

/// `ROUNDS$SALT$REST` split, with a round count in bounds; the salt cannot hold a `$`.
fn legacy_parts(s: &str) -> Option<(u32, &str, &str)> {
    let mut parts = s.splitn(3, '$');
    let rounds = parts.next()?.parse::<u32>().ok()?;
    let salt = parts.next()?;
    let rest = parts.next()?;
    (rounds > 0 && rounds <= 10_000_000).then_some((rounds, salt, rest))
}

/// The hex digest earlier versions stored: SHA-256 of salt and password, then `rounds - 1` times
/// of the digest and password.
fn sha256i(rounds: u32, salt: &str, password: &str) -> String {
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
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn wrapped_sha256i(stored: &str, password: &str) -> bool {
    let Some((rounds, salt, inner)) = stored.strip_prefix(WRAPPED).and_then(legacy_parts) else {
        return false;
    };
    bcrypt::verify(sha256i(rounds, salt, password), inner).unwrap_or(false)
}

fn legacy_sha256i(stored: &str, password: &str) -> bool {
    match stored.strip_prefix(LEGACY).and_then(legacy_parts) {
        Some((rounds, salt, hex)) if !hex.contains('$') => {
            same_secret(hex.as_bytes(), sha256i(rounds, salt, password).as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn new_passwords_are_bcrypt_and_old_ones_still_work_but_ask_to_be_rehashed() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$2b$12$"), "{hash}");
        assert_eq!(
            check_password(&hash, "s3cret"),
            PasswordCheck::Right { rehash: false }
        );
        assert_eq!(check_password(&hash, "wrong"), PasswordCheck::Wrong);
        // A hash as earlier versions wrote it: 3 rounds of salt "ab" for "pw".
        let mut h: [u8; 32] = Sha256::new()
            .chain_update("ab")
            .chain_update("pw")
            .finalize()
            .into();
        for _ in 1..3 {
            h = Sha256::new()
                .chain_update(h)
                .chain_update("pw")
                .finalize()
                .into();
        }
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let legacy = format!("sha256i$3$ab${hex}");
        assert_eq!(
            check_password(&legacy, "pw"),
            PasswordCheck::Right { rehash: true }
        );
        assert_eq!(check_password(&legacy, "px"), PasswordCheck::Wrong);
        // Wrapped in bcrypt, it still takes the same password, and only that one.
        let wrapped = wrap_legacy(&legacy).unwrap().unwrap();
        assert!(
            wrapped.starts_with("sha256i+bcrypt$3$ab$$2b$12$"),
            "{wrapped}"
        );
        assert!(!wrapped.contains(&hex), "{wrapped}");
        assert_eq!(
            check_password(&wrapped, "pw"),
            PasswordCheck::Right { rehash: true }
        );
        assert_eq!(check_password(&wrapped, "px"), PasswordCheck::Wrong);
        assert!(wrap_legacy(&hash).is_none());
        assert!(wrap_legacy(&wrapped).is_none());
        assert_eq!(check_password("garbage", "pw"), PasswordCheck::Wrong);
        assert_eq!(
            check_password("sha256i$0$ab$00", "pw"),
            PasswordCheck::Wrong
        );
    }
}
