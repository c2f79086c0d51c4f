//! `GET /v1/audit-log`: every write in the tenant, newest first, filtered by actor, entity,
//! action and time; paged by a cursor.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::input::Page;
use super::table::Routes;
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Query, Tenant};

/// The list its cursors are sealed to.
const SCOPE: &str = "audit-log";

pub fn routes() -> Routes {
    Routes::new().get("/v1/audit-log", list)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    /// `user:<id>` or `service:<id>`.
    actor: Option<String>,
    entity_type: Option<String>,
    entity_id: Option<String>,
    action: Option<String>,
    /// RFC 3339; inclusive.
    from: Option<DateTime<Utc>>,
    /// RFC 3339; exclusive.
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct Entry {
    id: i64,
    occurred_at: DateTime<Utc>,
    actor: String,
    actor_id: Option<Uuid>,
    action: String,
    entity_type: String,
    entity_id: String,
    before: Option<Value>,
    after: Option<Value>,
    request_id: Option<String>,
    client_ip: Option<IpAddr>,
    user_agent: Option<String>,
}

fn bad(detail: &str) -> RouterError {
    RouterError::BadRequest(detail.to_owned())
}

async fn list(tenant: Tenant, Query(filter): Query<Filter>) -> RouterResult<Json<Page<Entry>>> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("`limit` must be between 1 and 500"));
    }
    for (name, value) in [
        ("actor", &filter.actor),
        ("entity_type", &filter.entity_type),
        ("entity_id", &filter.entity_id),
        ("action", &filter.action),
    ] {
        if value
            .as_deref()
            .is_some_and(|value| value.chars().count() > 200)
        {
            return Err(bad(&format!("`{name}` must be at most 200 characters")));
        }
    }
    // The cursor holds the id of the last entry given out, sealed to this list (its
    // filters are not part of it: a cursor only says where to go on from).
    let before: Option<i64> = filter
        .cursor
        .as_deref()
        .map(|cursor| {
            tenant
                .state()
                .cursors
                .open(SCOPE, cursor)
                .and_then(|position| position.parse().ok())
                .ok_or_else(|| bad("`cursor` is not a cursor this list gave out"))
        })
        .transpose()?;
    let connection = tenant.access("audit.read").await?;
    let statement = connection
        .client
        .prepare_cached(
            "SELECT id, occurred_at, actor, actor_id, action, entity_type, entity_id, before, after, \
               request_id, client_ip, user_agent FROM audit_log \
             WHERE ($1::bigint IS NULL OR id < $1) \
               AND ($2::text IS NULL OR actor = $2) \
               AND ($3::text IS NULL OR entity_type = $3) \
               AND ($4::text IS NULL OR entity_id = $4) \
               AND ($5::text IS NULL OR action = $5) \
               AND ($6::timestamptz IS NULL OR occurred_at >= $6) \
               AND ($7::timestamptz IS NULL OR occurred_at < $7) \
             ORDER BY id DESC LIMIT $8",
        )
        .await?;
    let rows = connection
        .client
        .query(
            &statement,
            &[
                &before,
                &filter.actor,
                &filter.entity_type,
                &filter.entity_id,
                &filter.action,
                &filter.from,
                &filter.to,
                &limit,
            ],
        )
        .await?;
    let items: Vec<Entry> = rows
        .iter()
        .map(|row| Entry {
            id: row.get("id"),
            occurred_at: row.get("occurred_at"),
            actor: row.get("actor"),
            actor_id: row.get("actor_id"),
            action: row.get("action"),
            entity_type: row.get("entity_type"),
            entity_id: row.get("entity_id"),
            before: row.get("before"),
            after: row.get("after"),
            request_id: row.get("request_id"),
            client_ip: row.get("client_ip"),
            user_agent: row.get("user_agent"),
        })
        .collect();
    let next_cursor = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| items.last())
        .flatten()
        .map(|last| tenant.state().cursors.seal(SCOPE, &last.id.to_string()));
    Ok(Json(Page { items, next_cursor }))
}
