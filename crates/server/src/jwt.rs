//! Login tokens: HS256 JWTs with `sub` (user id), `type` (access|refresh), `exp`, `iat`, `jti`.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

impl TokenError {
    /// Langflow's texts.
    pub fn detail(&self) -> &'static str {
        match self {
            TokenError::Expired => "Token has expired",
            TokenError::Invalid => "Invalid token",
        }
    }
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Issues a token; returns it with its `jti` and expiry (unix seconds).
    pub fn issue(&self, user_id: &str, kind: &str, ttl: Duration) -> (String, String, i64) {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            kind: kind.to_string(),
            exp: now + ttl.as_secs() as i64,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail");
        (token, claims.jti, claims.exp)
    }

    /// Checks signature, expiry and kind.
    pub fn verify(&self, token: &str, kind: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.kind != kind {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let (token, jti, _) = keys.issue("user-1", "access", Duration::from_secs(60));
        let claims = keys.verify(&token, "access").unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.jti, jti);
        assert_eq!(
            keys.verify(&token, "refresh").unwrap_err(),
            TokenError::Invalid
        );
        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        assert_eq!(
            other.verify(&token, "access").unwrap_err(),
            TokenError::Invalid
        );
        assert_eq!(
            keys.verify("not-a-jwt", "access").unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn expired_tokens_say_so() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let (token, _, _) = keys.issue("u", "access", Duration::from_secs(0));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            keys.verify(&token, "access").unwrap_err(),
            TokenError::Expired
        );
    }
}
