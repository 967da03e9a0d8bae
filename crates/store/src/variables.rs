//! Global variables. The store keeps what it is given: encrypting Credential values is the
//! server's job, so this module never sees a plaintext credential.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, now_micros};

/// A variable as stored (`value` is ciphertext for Credential variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariableRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub value: String,
    /// `Credential` or `Generic`.
    pub var_type: String,
    pub default_fields: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, user_id, name, value, var_type, default_fields, created_at, updated_at";

fn variable_from_row(row: &AnyRow) -> Result<VariableRow> {
    let fields: String = row.try_get("default_fields")?;
    Ok(VariableRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        value: row.try_get("value")?,
        var_type: row.try_get("var_type")?,
        default_fields: serde_json::from_str(&fields).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Inserts a variable; a name the user already has is [`crate::StoreError::Conflict`].
    pub async fn create_variable(&self, var: &VariableRow) -> Result<VariableRow> {
        let now = now_micros();
        sqlx::query(
            "INSERT INTO variables (id, user_id, name, value, var_type, default_fields, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&var.id)
        .bind(&var.user_id)
        .bind(&var.name)
        .bind(&var.value)
        .bind(&var.var_type)
        .bind(fields_json(&var.default_fields))
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(VariableRow {
            created_at: now,
            updated_at: now,
            ..var.clone()
        })
    }

    /// The user's variables, by name (Langflow's order).
    pub async fn list_variables(&self, user_id: &str) -> Result<Vec<VariableRow>> {
        let sql = format!("SELECT {COLUMNS} FROM variables WHERE user_id = $1 ORDER BY name, id");
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(variable_from_row).collect()
    }

    /// One of the user's variables by id; another user's is indistinguishable from a missing one.
    pub async fn variable(&self, user_id: &str, id: &str) -> Result<Option<VariableRow>> {
        let sql = format!("SELECT {COLUMNS} FROM variables WHERE user_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(variable_from_row).transpose()
    }

    /// One of the user's variables by name.
    pub async fn variable_by_name(&self, user_id: &str, name: &str) -> Result<Option<VariableRow>> {
        let sql = format!("SELECT {COLUMNS} FROM variables WHERE user_id = $1 AND name = $2");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(variable_from_row).transpose()
    }

    /// Writes name, value, type and default fields of one of `var.user_id`'s variables.
    /// Returns the stored row, `None` when it does not exist (or is another user's).
    pub async fn update_variable(&self, var: &VariableRow) -> Result<Option<VariableRow>> {
        let now = now_micros();
        let done = sqlx::query(
            "UPDATE variables SET name = $1, value = $2, var_type = $3, default_fields = $4, \
             updated_at = $5 WHERE user_id = $6 AND id = $7",
        )
        .bind(&var.name)
        .bind(&var.value)
        .bind(&var.var_type)
        .bind(fields_json(&var.default_fields))
        .bind(now)
        .bind(&var.user_id)
        .bind(&var.id)
        .execute(self.pool())
        .await?;
        Ok((done.rows_affected() == 1).then(|| VariableRow {
            updated_at: now,
            ..var.clone()
        }))
    }

    /// Deletes one of the user's variables; false when there was none.
    pub async fn delete_variable(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM variables WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn fields_json(fields: &[String]) -> String {
    serde_json::to_string(fields).expect("a list of strings serialises")
}
