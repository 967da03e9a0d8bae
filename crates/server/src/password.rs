//! Passwords: Argon2id for everything we hash; bcrypt (`$2b$`) accepted for users imported from
//! Langflow and re-hashed with Argon2id on their first successful login.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

/// Hashes with Argon2id and the crate's defaults (19 MiB, t=2, p=1: OWASP's recommendation).
/// CPU-heavy (tens of ms): call from a blocking thread.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

/// The outcome of checking a password.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Wrong,
    Right,
    /// Right, but stored in a legacy format: store this Argon2id hash instead.
    RightRehash(String),
}

pub fn verify(password: &str, stored: &str) -> Verdict {
    if stored.starts_with("$2") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => match hash(password) {
                Ok(new_hash) => Verdict::RightRehash(new_hash),
                Err(_) => Verdict::Right,
            },
            _ => Verdict::Wrong,
        };
    }
    match PasswordHash::new(stored) {
        Ok(parsed)
            if Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok() =>
        {
            Verdict::Right
        }
        _ => Verdict::Wrong,
    }
}

/// A valid Argon2id hash of a random string, verified against when a username does not exist
/// so that a login's timing does not reveal which usernames exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("flowgate-dummy-password-for-timing").expect("argon2 works"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let h = hash("s3cret-pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(verify("s3cret-pass", &h), Verdict::Right);
        assert_eq!(verify("wrong", &h), Verdict::Wrong);
    }

    #[test]
    fn bcrypt_hashes_from_langflow_verify_and_ask_for_a_rehash() {
        let legacy = bcrypt::hash("imported-pw", 4).unwrap();
        assert!(legacy.starts_with("$2b$"));
        match verify("imported-pw", &legacy) {
            Verdict::RightRehash(new_hash) => assert!(new_hash.starts_with("$argon2id$")),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(verify("nope", &legacy), Verdict::Wrong);
    }

    #[test]
    fn garbage_hashes_never_verify() {
        assert_eq!(verify("x", "not-a-hash"), Verdict::Wrong);
        assert_eq!(verify("x", ""), Verdict::Wrong);
    }
}
