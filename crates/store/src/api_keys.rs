use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, UserRow, now_micros};

/// An API key as stored: its SHA-256 hash and a display prefix, never the key.
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub key_hash: String,
    pub prefix: String,
    pub key_length: i64,
    /// `full` (acts as its owner everywhere) or `run` (run routes only).
    pub scope: String,
    /// Flow ids or endpoint names the key is limited to; `None` = all of the owner's flows.
    pub flows: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub total_uses: i64,
    pub is_active: bool,
}

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: Option<&'a str>,
    pub key_hash: &'a str,
    pub prefix: &'a str,
    pub key_length: i64,
    pub scope: &'a str,
    pub flows: Option<&'a [String]>,
    pub expires_at: Option<i64>,
}

const KEY_COLUMNS: &str = "k.id, k.user_id, k.name, k.key_hash, k.prefix, k.key_length, \
     k.scope, k.flows, k.created_at, k.expires_at, k.last_used_at, k.total_uses, k.is_active";

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRow> {
    let flows: Option<String> = row.try_get("flows")?;
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        prefix: row.try_get("prefix")?,
        key_length: row.try_get("key_length")?,
        scope: row.try_get("scope")?,
        flows: flows.and_then(|f| serde_json::from_str(&f).ok()),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        total_uses: row.try_get("total_uses")?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
    })
}

/// Usage accumulated in memory by the server, flushed in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct UsageDelta<'a> {
    pub key_id: &'a str,
    pub uses: i64,
    pub last_used_at: i64,
}

impl Store {
    pub async fn create_api_key(&self, key: NewApiKey<'_>) -> Result<ApiKeyRow> {
        let flows = key
            .flows
            .map(|f| serde_json::to_string(f).expect("a list of strings serialises"));
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, key_length, scope, flows, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(key.id)
        .bind(key.user_id)
        .bind(key.name)
        .bind(key.key_hash)
        .bind(key.prefix)
        .bind(key.key_length)
        .bind(key.scope)
        .bind(flows)
        .bind(now_micros())
        .bind(key.expires_at)
        .execute(self.pool())
        .await?;
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1");
        let row = sqlx::query(&sql)
            .bind(key.id)
            .fetch_one(self.pool())
            .await?;
        key_from_row(&row)
    }

    /// The caller's keys, oldest first (Langflow's order).
    pub async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at, k.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Looks a key up by its hash through the unique index, with its owner.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<(ApiKeyRow, UserRow)>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, u.username AS u_username, u.password_hash AS u_password_hash, \
             u.profile_image AS u_profile_image, u.is_active AS u_is_active, \
             u.is_superuser AS u_is_superuser, u.create_at AS u_create_at, \
             u.updated_at AS u_updated_at, u.last_login_at AS u_last_login_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let key = key_from_row(&row)?;
        let user = UserRow {
            id: key.user_id.clone(),
            username: row.try_get("u_username")?,
            password_hash: row.try_get("u_password_hash")?,
            profile_image: row.try_get("u_profile_image")?,
            is_active: row.try_get::<i64, _>("u_is_active")? != 0,
            is_superuser: row.try_get::<i64, _>("u_is_superuser")? != 0,
            create_at: row.try_get("u_create_at")?,
            updated_at: row.try_get("u_updated_at")?,
            last_login_at: row.try_get("u_last_login_at")?,
        };
        Ok(Some((key, user)))
    }

    /// Deletes one of `user_id`'s keys; another user's key is indistinguishable from a missing
    /// one. Returns the deleted key's hash so caches can drop it.
    pub async fn delete_api_key(&self, user_id: &str, key_id: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2 RETURNING key_hash")
                .bind(key_id)
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        let hash = row
            .map(|r| r.try_get::<String, _>("key_hash"))
            .transpose()?;
        if hash.is_some() {
            self.announce_change().await;
        }
        Ok(hash)
    }

    /// Deletes a key by id whoever owns it (CLI, administrators).
    pub async fn delete_api_key_any_owner(&self, key_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("DELETE FROM api_keys WHERE id = $1 RETURNING key_hash")
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?;
        let hash = row
            .map(|r| r.try_get::<String, _>("key_hash"))
            .transpose()?;
        if hash.is_some() {
            self.announce_change().await;
        }
        Ok(hash)
    }

    /// Revokes (deletes) a key found by its hash, whoever owns it: the leak response.
    pub async fn delete_api_key_by_hash(&self, key_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE key_hash = $1")
            .bind(key_hash)
            .execute(self.pool())
            .await?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            self.announce_change().await;
        }
        Ok(deleted)
    }

    /// Adds accumulated usage in one transaction. Keys deleted meanwhile are skipped.
    pub async fn flush_key_usage(&self, deltas: &[UsageDelta<'_>]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for delta in deltas {
            sqlx::query(
                "UPDATE api_keys SET total_uses = total_uses + $1, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 \
                 THEN $3 ELSE last_used_at END WHERE id = $4",
            )
            .bind(delta.uses)
            .bind(delta.last_used_at)
            .bind(delta.last_used_at)
            .bind(delta.key_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
