//! Flows, always scoped to their owner: every query names the user, so another user's flow is
//! indistinguishable from a missing one.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Result, Store, StoreError, now_micros};

/// A stored flow. `data`, `tags`, `extra` and `problems` are JSON texts.
#[derive(Debug, Clone, Default)]
pub struct FlowRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub icon_bg_color: Option<String>,
    pub gradient: Option<String>,
    /// `None` in header listings.
    pub data: Option<String>,
    pub is_component: bool,
    pub webhook: bool,
    pub endpoint_name: Option<String>,
    pub tags: Option<String>,
    pub locked: bool,
    pub mcp_enabled: bool,
    pub action_name: Option<String>,
    pub action_description: Option<String>,
    pub access_type: String,
    pub flow_type: String,
    pub folder_id: Option<String>,
    pub extra: String,
    pub problems: String,
    /// The component registry `problems` was computed under.
    pub problems_version: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What to do when a new flow's name or endpoint name is taken by another of the user's flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClash {
    /// Langflow's create/upload behaviour: `Name (1)`, `endpoint-1`.
    Rename,
    /// Refuse with [`FlowSaveError::NameTaken`] / [`FlowSaveError::EndpointTaken`].
    Fail,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowSaveError {
    #[error("Name must be unique")]
    NameTaken,
    #[error("Endpoint name must be unique")]
    EndpointTaken,
    /// The id names a flow of another user.
    #[error("flow id {0} belongs to another user")]
    ForeignId(String),
    /// The id names one of the caller's flows and the operation only creates.
    #[error("a flow with id {0} already exists")]
    IdExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for FlowSaveError {
    fn from(e: sqlx::Error) -> Self {
        FlowSaveError::Store(e.into())
    }
}

/// How a save treats an id that already exists for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOwnId {
    /// Replace that flow (upload, PUT).
    Replace,
    /// Refuse with [`FlowSaveError::IdExists`] (POST create).
    Refuse,
}

const FLOW_COLUMNS: &str = "id, user_id, name, description, icon, icon_bg_color, gradient, data, \
    is_component, webhook, endpoint_name, tags, locked, mcp_enabled, action_name, \
    action_description, access_type, flow_type, folder_id, extra, problems, problems_version, \
    created_at, updated_at";
/// Headers leave out the two large texts: the graph (`data`) and the imported document (`extra`).
const HEADER_COLUMNS: &str = "id, user_id, name, description, icon, icon_bg_color, gradient, \
    NULL AS data, is_component, webhook, endpoint_name, tags, locked, mcp_enabled, action_name, \
    action_description, access_type, flow_type, folder_id, '{}' AS extra, problems, problems_version, \
    created_at, updated_at";

fn flow_from_row(row: &AnyRow) -> Result<FlowRecord> {
    let flag = |name: &str| -> Result<bool> { Ok(row.try_get::<i64, _>(name)? != 0) };
    Ok(FlowRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        icon: row.try_get("icon")?,
        icon_bg_color: row.try_get("icon_bg_color")?,
        gradient: row.try_get("gradient")?,
        data: row.try_get("data")?,
        is_component: flag("is_component")?,
        webhook: flag("webhook")?,
        endpoint_name: row.try_get("endpoint_name")?,
        tags: row.try_get("tags")?,
        locked: flag("locked")?,
        mcp_enabled: flag("mcp_enabled")?,
        action_name: row.try_get("action_name")?,
        action_description: row.try_get("action_description")?,
        access_type: row.try_get("access_type")?,
        flow_type: row.try_get("flow_type")?,
        folder_id: row.try_get("folder_id")?,
        extra: row.try_get("extra")?,
        problems: row.try_get("problems")?,
        problems_version: row.try_get("problems_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Saves new or replacement flows for `user_id` in ONE transaction: either all are stored or
    /// none. Ids are kept when free; names and endpoint names are de-duplicated or refused as
    /// `on_clash` says. Returns the stored records in input order.
    pub async fn save_flows(
        &self,
        user_id: &str,
        flows: Vec<FlowRecord>,
        on_clash: OnClash,
        on_own_id: OnOwnId,
    ) -> Result<Vec<FlowRecord>, FlowSaveError> {
        let mut tx = self.write_tx().await?;
        self.serialize_user_writes(&mut tx, user_id).await?;
        let mut saved = Vec::with_capacity(flows.len());
        for mut flow in flows {
            flow.user_id = user_id.to_string();
            let owner: Option<String> = sqlx::query("SELECT user_id FROM flows WHERE id = $1")
                .bind(&flow.id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("user_id"))
                .transpose()?;
            let replacing = match owner {
                Some(owner) if owner != user_id => return Err(FlowSaveError::ForeignId(flow.id)),
                Some(_) if on_own_id == OnOwnId::Refuse => {
                    return Err(FlowSaveError::IdExists(flow.id));
                }
                Some(_) => true,
                None => false,
            };
            let exclude = replacing.then_some(flow.id.as_str());
            flow.name = unique_name(&mut tx, user_id, &flow.name, exclude, on_clash).await?;
            if let Some(endpoint) = flow.endpoint_name.take() {
                flow.endpoint_name =
                    Some(unique_endpoint(&mut tx, user_id, &endpoint, exclude, on_clash).await?);
            }
            let now = now_micros();
            flow.updated_at = now;
            if replacing {
                write_flow(&mut tx, &flow, "UPDATE").await?;
            } else {
                flow.created_at = now;
                write_flow(&mut tx, &flow, "INSERT").await?;
            }
            saved.push(flow);
        }
        tx.commit().await?;
        // Servers cache compiled flows: tell every process sharing the database.
        self.announce_change().await;
        Ok(saved)
    }

    /// The user's flows, most recently updated first; without `data` when `headers_only`.
    pub async fn list_flows(&self, user_id: &str, headers_only: bool) -> Result<Vec<FlowRecord>> {
        let columns = if headers_only {
            HEADER_COLUMNS
        } else {
            FLOW_COLUMNS
        };
        let sql =
            format!("SELECT {columns} FROM flows WHERE user_id = $1 ORDER BY updated_at DESC, id");
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(flow_from_row).collect()
    }

    pub async fn flow(&self, user_id: &str, id: &str) -> Result<Option<FlowRecord>> {
        let sql = format!("SELECT {FLOW_COLUMNS} FROM flows WHERE id = $1 AND user_id = $2");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    /// By id, or else by the user's endpoint name: how run routes address a flow.
    pub async fn flow_by_id_or_endpoint(
        &self,
        user_id: &str,
        ident: &str,
    ) -> Result<Option<FlowRecord>> {
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE user_id = $1 AND (id = $2 OR endpoint_name = $3) \
             ORDER BY CASE WHEN id = $4 THEN 0 ELSE 1 END LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(ident)
            .bind(ident)
            .bind(ident)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    /// Several of the user's flows by id (others' and missing ids are skipped).
    pub async fn flows_by_ids(&self, user_id: &str, ids: &[String]) -> Result<Vec<FlowRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(flow) = self.flow(user_id, id).await? {
                out.push(flow);
            }
        }
        Ok(out)
    }

    /// Replaces a flow the caller owns with `flow` (PATCH after merging). Name and endpoint
    /// clashes are refused.
    pub async fn update_flow(
        &self,
        user_id: &str,
        mut flow: FlowRecord,
    ) -> Result<FlowRecord, FlowSaveError> {
        let mut tx = self.write_tx().await?;
        flow.user_id = user_id.to_string();
        let id = flow.id.clone();
        if taken(&mut tx, "name", user_id, &flow.name, Some(&id)).await? {
            return Err(FlowSaveError::NameTaken);
        }
        if let Some(endpoint) = &flow.endpoint_name
            && taken(&mut tx, "endpoint_name", user_id, endpoint, Some(&id)).await?
        {
            return Err(FlowSaveError::EndpointTaken);
        }
        flow.updated_at = now_micros();
        write_flow(&mut tx, &flow, "UPDATE").await?;
        tx.commit().await?;
        self.announce_change().await;
        Ok(flow)
    }

    /// Deletes one of the user's flows. Returns whether it existed.
    pub async fn delete_flow(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM flows WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() > 0 {
            self.announce_change().await;
        }
        Ok(done.rows_affected() > 0)
    }

    /// Flows whose problems were computed under another component registry (any owner).
    pub async fn flows_with_stale_problems(
        &self,
        fingerprint: &str,
        limit: i64,
    ) -> Result<Vec<FlowRecord>> {
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE problems_version <> $1 ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(fingerprint)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(flow_from_row).collect()
    }

    /// Records re-computed problems without touching `updated_at`.
    pub async fn set_flow_problems(
        &self,
        id: &str,
        problems: &str,
        fingerprint: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE flows SET problems = $1, problems_version = $2 WHERE id = $3")
            .bind(problems)
            .bind(fingerprint)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Whether `column = value` is used by another of the user's flows (other than `except_id`).
async fn taken(
    tx: &mut Transaction<'_, Any>,
    column: &str,
    user_id: &str,
    value: &str,
    except_id: Option<&str>,
) -> Result<bool> {
    let sql =
        format!("SELECT id FROM flows WHERE user_id = $1 AND {column} = $2 AND id <> $3 LIMIT 1");
    Ok(sqlx::query(&sql)
        .bind(user_id)
        .bind(value)
        .bind(except_id.unwrap_or(""))
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// Langflow's rule for names: `Name`, else `Name (N+1)` with N the highest existing suffix.
async fn unique_name(
    tx: &mut Transaction<'_, Any>,
    user_id: &str,
    name: &str,
    except_id: Option<&str>,
    on_clash: OnClash,
) -> Result<String, FlowSaveError> {
    let numbered = Numbering {
        column: "name",
        before: " (",
        after: ")",
        taken: FlowSaveError::NameTaken,
    };
    numbered
        .first_free(tx, user_id, name, except_id, on_clash)
        .await
}

/// Langflow's rule for endpoint names: `ep`, else `ep-N+1` with N the highest numeric suffix.
async fn unique_endpoint(
    tx: &mut Transaction<'_, Any>,
    user_id: &str,
    endpoint: &str,
    except_id: Option<&str>,
    on_clash: OnClash,
) -> Result<String, FlowSaveError> {
    let numbered = Numbering {
        column: "endpoint_name",
        before: "-",
        after: "",
        taken: FlowSaveError::EndpointTaken,
    };
    numbered
        .first_free(tx, user_id, endpoint, except_id, on_clash)
        .await
}

/// How a clashing value of `column` gets a number: `{base}{before}{n}{after}`.
struct Numbering {
    column: &'static str,
    before: &'static str,
    after: &'static str,
    taken: FlowSaveError,
}

impl Numbering {
    async fn first_free(
        self,
        tx: &mut Transaction<'_, Any>,
        user_id: &str,
        base: &str,
        except_id: Option<&str>,
        on_clash: OnClash,
    ) -> Result<String, FlowSaveError> {
        if !taken(tx, self.column, user_id, base, except_id).await? {
            return Ok(base.to_string());
        }
        if on_clash == OnClash::Fail {
            return Err(self.taken);
        }
        let prefix = format!("{base}{}", self.before);
        let sql = format!(
            "SELECT {col} AS v FROM flows WHERE user_id = $1 AND substr({col}, 1, CAST($2 AS INTEGER)) = $3",
            col = self.column
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(prefix.chars().count() as i64)
            .bind(&prefix)
            .fetch_all(&mut **tx)
            .await?;
        let highest = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("v").ok())
            .filter_map(|v| {
                v.strip_prefix(&prefix)?
                    .strip_suffix(self.after)?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        Ok(format!("{prefix}{}{}", highest + 1, self.after))
    }
}

/// One bind list serves both statements; the UPDATE leaves `created_at` alone, so its `$21`
/// appears only in a tautology (PostgreSQL wants every bound parameter used).
async fn write_flow(tx: &mut Transaction<'_, Any>, f: &FlowRecord, verb: &str) -> Result<()> {
    let sql = if verb == "INSERT" {
        "INSERT INTO flows (name, description, icon, icon_bg_color, gradient, data, is_component, \
         webhook, endpoint_name, tags, locked, mcp_enabled, action_name, action_description, \
         access_type, flow_type, folder_id, extra, problems, updated_at, created_at, user_id, id, \
         problems_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24)"
    } else {
        "UPDATE flows SET name = $1, description = $2, icon = $3, icon_bg_color = $4, gradient = $5, \
         data = $6, is_component = $7, webhook = $8, endpoint_name = $9, tags = $10, locked = $11, \
         mcp_enabled = $12, action_name = $13, action_description = $14, access_type = $15, \
         flow_type = $16, folder_id = $17, extra = $18, problems = $19, updated_at = $20, \
         problems_version = $24 WHERE $21 = $21 AND user_id = $22 AND id = $23"
    };
    let done = sqlx::query(sql)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.icon)
        .bind(&f.icon_bg_color)
        .bind(&f.gradient)
        .bind(&f.data)
        .bind(f.is_component as i64)
        .bind(f.webhook as i64)
        .bind(&f.endpoint_name)
        .bind(&f.tags)
        .bind(f.locked as i64)
        .bind(f.mcp_enabled as i64)
        .bind(&f.action_name)
        .bind(&f.action_description)
        .bind(&f.access_type)
        .bind(&f.flow_type)
        .bind(&f.folder_id)
        .bind(&f.extra)
        .bind(&f.problems)
        .bind(f.updated_at)
        .bind(f.created_at)
        .bind(&f.user_id)
        .bind(&f.id)
        .bind(&f.problems_version)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Other(format!("flow {} was not written", f.id)));
    }
    Ok(())
}
