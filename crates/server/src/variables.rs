//! Global variables: per-user named values. Credential values are encrypted at rest with
//! ChaCha20-Poly1305 under a key derived (HKDF-SHA256, its own label) from the server secret; a
//! fresh random nonce per value, and the owner and variable id as associated data, so a
//! ciphertext copied onto another row does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use flowgate_store::VariableRow;

use crate::state::AppState;

pub const CREDENTIAL: &str = "Credential";
pub const GENERIC: &str = "Generic";

/// Stored form of an encrypted value: this prefix, then hex of nonce ‖ ciphertext ‖ tag.
const CIPHER_PREFIX: &str = "fgv1:";
const HKDF_INFO: &[u8] = b"flowgate variables encryption v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of the stored form of an empty value.
pub const EMPTY_SEALED_LEN: usize = CIPHER_PREFIX.len() + 2 * (NONCE_LEN + TAG_LEN);

/// Encrypts and decrypts Credential values. Holds only the derived key, never the secret.
#[derive(Clone)]
pub struct VariableCipher {
    key: Key,
}

impl std::fmt::Debug for VariableCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VariableCipher(..)")
    }
}

impl VariableCipher {
    /// Derives the encryption key from the server secret (the JWT secret bytes).
    pub fn from_secret(secret: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"flowgate"), secret);
        let mut key = [0u8; 32];
        hk.expand(HKDF_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            key: Key::from(key),
        }
    }

    fn aad(user_id: &str, id: &str) -> Vec<u8> {
        format!("variable\0{user_id}\0{id}").into_bytes()
    }

    /// The stored form of `plaintext` for the variable `id` of `user_id`.
    pub fn encrypt(&self, user_id: &str, id: &str, plaintext: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let aad = Self::aad(user_id, id);
        let sealed = ChaCha20Poly1305::new(&self.key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{CIPHER_PREFIX}{}", hex::encode(out)))
    }

    /// The plaintext of a stored value; `None` when it was not made by this key for this row.
    pub fn decrypt(&self, user_id: &str, id: &str, stored: &str) -> Option<String> {
        let bytes = hex::decode(stored.strip_prefix(CIPHER_PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = Self::aad(user_id, id);
        let plain = ChaCha20Poly1305::new(&self.key)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// The usable value of a stored variable: decrypted for Credential, as stored for Generic.
    pub fn reveal(&self, row: &VariableRow) -> Option<String> {
        if row.var_type == CREDENTIAL {
            self.decrypt(&row.user_id, &row.id, &row.value)
        } else {
            Some(row.value.clone())
        }
    }
}

/// The owner's variable value, decrypted; `None` when absent (or undecryptable, e.g. after
/// the server secret changed).
pub async fn lookup(state: &AppState, user_id: &str, name: &str) -> Option<String> {
    let row = match state.store.variable_by_name(user_id, name).await {
        Ok(Some(row)) => row,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "could not read a variable");
            return None;
        }
    };
    let value = state.variable_cipher.reveal(&row);
    if value.is_none() {
        tracing::warn!(
            variable = %row.name,
            "a Credential variable could not be decrypted (was the secret key changed?)"
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = VariableCipher::from_secret(b"0123456789abcdef0123456789abcdef");
        let a = c.encrypt("u1", "v1", "sk-secret").unwrap();
        let b = c.encrypt("u1", "v1", "sk-secret").unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.contains("sk-secret"));
        assert_eq!(c.encrypt("u", "v", "").unwrap().len(), EMPTY_SEALED_LEN);
        assert_eq!(a.len(), EMPTY_SEALED_LEN + 2 * "sk-secret".len());
        assert_eq!(c.decrypt("u1", "v1", &a).as_deref(), Some("sk-secret"));
        assert_eq!(c.decrypt("u2", "v1", &a), None, "bound to the owner");
        assert_eq!(c.decrypt("u1", "v2", &a), None, "bound to the row");
        let other = VariableCipher::from_secret(b"another secret, 32 characters!!");
        assert_eq!(other.decrypt("u1", "v1", &a), None);
        assert_eq!(c.decrypt("u1", "v1", "plain"), None);
        assert_eq!(c.decrypt("u1", "v1", "fgv1:zz"), None);
    }
}
