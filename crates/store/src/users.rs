use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, now_micros};

/// A user as stored. `password_hash` never leaves the server.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub profile_image: Option<String>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub create_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub password_hash: &'a str,
    pub is_active: bool,
    pub is_superuser: bool,
}

/// Fields a PATCH may change; `None` leaves the column alone.
#[derive(Default, Debug)]
pub struct UserUpdate {
    pub username: Option<String>,
    pub password_hash: Option<String>,
    pub profile_image: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub is_superuser: Option<bool>,
}

const USER_COLUMNS: &str = "id, username, password_hash, profile_image, is_active, \
                            is_superuser, create_at, updated_at, last_login_at";

fn user_from_row(row: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        profile_image: row.try_get("profile_image")?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        is_superuser: row.try_get::<i64, _>("is_superuser")? != 0,
        create_at: row.try_get("create_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login_at: row.try_get("last_login_at")?,
    })
}

impl Store {
    /// Creates a user. A username that differs only in case from an existing one is a
    /// [`StoreError::Conflict`].
    pub async fn create_user(&self, user: NewUser<'_>) -> Result<UserRow> {
        let now = now_micros();
        sqlx::query(
            "INSERT INTO users (id, username, username_lower, password_hash, is_active, \
             is_superuser, create_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(user.id)
        .bind(user.username)
        .bind(user.username.to_lowercase())
        .bind(user.password_hash)
        .bind(user.is_active as i64)
        .bind(user.is_superuser as i64)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        self.user_by_id(user.id)
            .await?
            .ok_or_else(|| StoreError::Other("user vanished after insert".into()))
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Usernames are unique regardless of case.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_lower = $1");
        let row = sqlx::query(&sql)
            .bind(username.to_lowercase())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self, skip: i64, limit: i64) -> Result<(i64, Vec<UserRow>)> {
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users ORDER BY create_at, id LIMIT $1 OFFSET $2");
        let rows = sqlx::query(&sql)
            .bind(limit)
            .bind(skip)
            .fetch_all(self.pool())
            .await?;
        let users = rows.iter().map(user_from_row).collect::<Result<_>>()?;
        Ok((total, users))
    }

    /// Applies `update` and returns the new row (`None` when the user does not exist). Bumps the
    /// auth epoch: caches elsewhere hold copies of users and of refused keys.
    pub async fn update_user(&self, id: &str, update: UserUpdate) -> Result<Option<UserRow>> {
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let now = now_micros();
        if let Some(username) = &update.username {
            sqlx::query("UPDATE users SET username = $1, username_lower = $2 WHERE id = $3")
                .bind(username)
                .bind(username.to_lowercase())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hash) = &update.password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(image) = &update.profile_image {
            sqlx::query("UPDATE users SET profile_image = $1 WHERE id = $2")
                .bind(image.as_deref())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(active) = update.is_active {
            sqlx::query("UPDATE users SET is_active = $1 WHERE id = $2")
                .bind(active as i64)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(superuser) = update.is_superuser {
            sqlx::query("UPDATE users SET is_superuser = $1 WHERE id = $2")
                .bind(superuser as i64)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE users SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.announce_change().await;
        self.user_by_id(id).await
    }

    /// Records a successful login; also used to re-hash a legacy (bcrypt) password.
    pub async fn record_login(&self, id: &str, new_password_hash: Option<&str>) -> Result<()> {
        let now = now_micros();
        match new_password_hash {
            Some(hash) => {
                sqlx::query(
                    "UPDATE users SET last_login_at = $1, updated_at = $2, password_hash = $3 \
                     WHERE id = $4",
                )
                .bind(now)
                .bind(now)
                .bind(hash)
                .bind(id)
                .execute(self.pool())
                .await?
            }
            None => {
                sqlx::query("UPDATE users SET last_login_at = $1, updated_at = $2 WHERE id = $3")
                    .bind(now)
                    .bind(now)
                    .bind(id)
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(())
    }

    /// Deletes a user and, by cascade, everything the user owns. Returns whether it existed.
    pub async fn delete_user(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            self.announce_change().await;
        }
        Ok(deleted)
    }
}
