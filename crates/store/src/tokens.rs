//! Refresh tokens are JWTs whose `jti` is recorded here, so logout can revoke one server-side
//! and a refresh can rotate it (the old one stops working).

use crate::{Result, Store, now_micros};

impl Store {
    pub async fn record_refresh_token(
        &self,
        jti: &str,
        user_id: &str,
        expires_at: i64,
    ) -> Result<()> {
        // Opportunistic clean-up keeps the table from growing without bound.
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now_micros())
            .execute(self.pool())
            .await?;
        sqlx::query("INSERT INTO refresh_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(jti)
            .bind(user_id)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Marks a refresh token used or logged out. Returns true when it was live until now, so a
    /// token can be redeemed once.
    pub async fn revoke_refresh_token(&self, jti: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE jti = $1 AND revoked = 0")
                .bind(jti)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes every refresh token of a user (password change, deactivation, token reuse).
    pub async fn revoke_user_refresh_tokens(&self, user_id: &str) -> Result<()> {
        sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE user_id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
