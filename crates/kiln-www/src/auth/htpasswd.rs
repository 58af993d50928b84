//! Apache's password files, as `htpasswd` writes them: `user:hash` lines whose hash is bcrypt
//! (`$2y$`), apr1-MD5 (`$apr1$`), SHA-1 (`{SHA}`) or the traditional DES `crypt`.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The hash of `user` in a password file's text; the first line for the user counts, as
/// Apache's does. Blank lines and `#` comments are skipped.
pub fn lookup<'a>(text: &'a str, user: &str) -> Option<&'a str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| *name == user)
        // A line may carry more fields after the hash, as some tools write them.
        .map(|(_, rest)| rest.split(':').next().unwrap_or(rest))
}

/// Whether `password` is the one `hash` was made from. A hash of a kind kiln does not know
/// matches no password.
pub fn verify(hash: &str, password: &str) -> bool {
    if hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else if hash.starts_with("$apr1$") {
        crypt3_rs::crypt::apr1::verify(password, hash)
    } else if let Some(digest) = hash.strip_prefix("{SHA}") {
        let given = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(password));
        kiln_api::credentials::same_secret(digest.as_bytes(), given.as_bytes())
    } else if hash.len() == 13 && !hash.starts_with('$') {
        crypt3_rs::crypt::unix::verify(password, hash)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Apache's `htpasswd -b{B,m,s,d} FILE USER secret` (bcrypt at cost 5).
    const FILE: &str = "\
# comment
bcrypt:$2y$05$QNbQ3WOj4ttvsrT4SW6mgeR/3xl2fcqlz6nIK99muDf80IRR4N1ey
apr1:$apr1$dStUApc1$J6Or/.sLvH8pk9J986eb.1
sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
des:Z3jBWi2RrhXKA

sha:{SHA}second-line-ignored
";

    #[test]
    fn each_kind_of_line_is_checked() {
        for user in ["bcrypt", "apr1", "sha", "des"] {
            let hash = lookup(FILE, user).unwrap();
            assert!(verify(hash, "secret"), "{user}");
            assert!(!verify(hash, "Secret"), "{user}");
            assert!(!verify(hash, ""), "{user}");
        }
        assert_eq!(lookup(FILE, "nobody"), None);
        assert!(!verify("plain", "plain"));
        assert!(!verify("$6$salt$notsupported", "x"));
    }
}
