//! Roles and permissions: the seeded permission catalogue, roles that group permissions,
//! and the system `admin` role (every permission; never changed or deleted).

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenancy_http::Path;
use tokio_postgres::{GenericClient, Row};

use super::input::{Problems, path_id, violated};
use super::table::Routes;
use crate::audit::Change;
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Tenant};
use crate::ids::RoleId;

pub fn routes() -> Routes {
    Routes::new()
        .get("/v1/roles", list)
        .post("/v1/roles", create)
        .get("/v1/roles/{id}", show)
        .patch("/v1/roles/{id}", update)
        .delete("/v1/roles/{id}", remove)
        .put("/v1/roles/{id}/permissions", set_permissions)
        .get("/v1/permissions", catalogue)
}

/// Roles a tenant may have.
const MAX_ROLES: i64 = 1000;

#[derive(Debug, Serialize)]
pub struct Role {
    id: RoleId,
    name: String,
    description: String,
    is_system: bool,
    permissions: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT r.id, r.name, r.description, r.is_system, r.created_at, r.updated_at, \
      ARRAY(SELECT rp.permission FROM role_permissions rp WHERE rp.role_id = r.id \
            ORDER BY rp.permission) AS permissions \
    FROM roles r";

impl From<&Row> for Role {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            is_system: row.get("is_system"),
            permissions: row.get("permissions"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

fn not_found() -> RouterError {
    RouterError::NotFound {
        code: "role_not_found",
        detail: "no such role".to_owned(),
    }
}

fn system_role() -> RouterError {
    RouterError::Conflict {
        code: "system_role",
        detail: "the system `admin` role holds every permission and cannot be changed or deleted"
            .to_owned(),
    }
}

fn role_exists(name: &str) -> RouterError {
    RouterError::Conflict {
        code: "role_exists",
        detail: format!("a role named `{name}` exists"),
    }
}

async fn load(client: &impl GenericClient, id: RoleId) -> RouterResult<Option<Role>> {
    let row = client
        .query_opt(&format!("{SELECT} WHERE r.id = $1"), &[&id])
        .await?;
    Ok(row.as_ref().map(Role::from))
}

/// A role that may be changed: it exists and is not the system role.
async fn changeable(client: &impl GenericClient, id: RoleId) -> RouterResult<Role> {
    let role = load(client, id).await?.ok_or_else(not_found)?;
    if role.is_system {
        return Err(system_role());
    }
    Ok(role)
}

/// Refuses permission codes that are not in the catalogue (422 naming them).
async fn check_permissions(client: &impl GenericClient, codes: &[String]) -> RouterResult<()> {
    let known: Vec<String> = client
        .query(
            "SELECT code FROM permissions WHERE code = ANY($1)",
            &[&codes],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let unknown: Vec<&str> = codes
        .iter()
        .filter(|code| !known.contains(code))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(RouterError::Invalid {
            code: "validation_failed",
            detail: format!("permissions: no such permission: {}", unknown.join(", ")),
        })
    }
}

/// Gives the role exactly these permissions (checked before).
async fn set_permissions_of(
    client: &impl GenericClient,
    id: RoleId,
    permissions: &[String],
) -> RouterResult<()> {
    client
        .execute(
            "DELETE FROM role_permissions WHERE role_id = $1 AND NOT permission = ANY($2)",
            &[&id, &permissions],
        )
        .await?;
    client
        .execute(
            "INSERT INTO role_permissions (role_id, permission) SELECT $1, unnest($2::text[]) \
             ON CONFLICT DO NOTHING",
            &[&id, &permissions],
        )
        .await?;
    Ok(())
}

#[derive(Serialize)]
struct Roles {
    items: Vec<Role>,
}

async fn list(tenant: Tenant) -> RouterResult<Json<Roles>> {
    let connection = tenant.access("roles.read").await?;
    let rows = connection
        .client
        .query(
            &format!("{SELECT} ORDER BY lower(r.name) LIMIT {MAX_ROLES}"),
            &[],
        )
        .await?;
    Ok(Json(Roles {
        items: rows.iter().map(Role::from).collect(),
    }))
}

async fn show(tenant: Tenant, Path(id): Path<String>) -> RouterResult<Json<Role>> {
    let id = path_id(&id, not_found)?;
    let connection = tenant.access("roles.read").await?;
    load(&*connection.client, id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<String>,
}

fn check_text(
    name: Option<&str>,
    description: Option<&str>,
    permissions: usize,
) -> RouterResult<()> {
    let mut problems = Problems::new();
    problems.length("name", name.map(str::trim), 1, 100);
    problems.length("description", description, 0, 500);
    if permissions > 200 {
        problems.push("permissions", "at most 200 permissions");
    }
    problems.finish()
}

async fn create(tenant: Tenant, Json(body): Json<NewRole>) -> RouterResult<impl IntoResponse> {
    check_text(
        Some(&body.name),
        Some(&body.description),
        body.permissions.len(),
    )?;
    let mut connection = tenant.access_write("roles.write").await?;
    let transaction = connection.client.transaction().await?;
    check_permissions(&*transaction, &body.permissions).await?;
    let count: i64 = transaction
        .query_one("SELECT count(*) FROM roles", &[])
        .await?
        .get(0);
    if count >= MAX_ROLES {
        return Err(RouterError::LimitExceeded(format!(
            "a tenant may have at most {MAX_ROLES} roles"
        )));
    }
    let name = body.name.trim();
    let inserted = transaction
        .query_one(
            "INSERT INTO roles (name, description) VALUES ($1, $2) RETURNING id",
            &[&name, &body.description],
        )
        .await;
    let id: RoleId = match inserted {
        Ok(row) => row.get(0),
        Err(error) if violated(&error) == Some("roles_name_key") => {
            return Err(role_exists(name));
        }
        Err(error) => return Err(error.into()),
    };
    set_permissions_of(&*transaction, id, &body.permissions).await?;
    let role = load(&*transaction, id).await?.ok_or_else(not_found)?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("role.create", "role", id).after(&role),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/roles/{id}"))],
        Json(role),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    name: Option<String>,
    description: Option<String>,
}

async fn update(
    tenant: Tenant,
    Path(id): Path<String>,
    Json(body): Json<RoleChange>,
) -> RouterResult<Json<Role>> {
    let id = path_id(&id, not_found)?;
    check_text(body.name.as_deref(), body.description.as_deref(), 0)?;
    let mut connection = tenant.access_write("roles.write").await?;
    let transaction = connection.client.transaction().await?;
    let before = changeable(&*transaction, id).await?;
    let name = body.name.as_deref().map(str::trim);
    let updated = transaction
        .execute(
            "UPDATE roles SET name = COALESCE($2, name), description = COALESCE($3, description), \
               updated_at = now() WHERE id = $1",
            &[&id, &name, &body.description],
        )
        .await;
    match updated {
        Ok(_) => {}
        Err(error) if violated(&error) == Some("roles_name_key") => {
            return Err(role_exists(name.unwrap_or_default()));
        }
        Err(error) => return Err(error.into()),
    }
    let after = load(&*transaction, id).await?.ok_or_else(not_found)?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("role.update", "role", id)
                .before(&before)
                .after(&after),
        )
        .await?;
    Ok(Json(after))
}

async fn remove(tenant: Tenant, Path(id): Path<String>) -> RouterResult<StatusCode> {
    let id = path_id(&id, not_found)?;
    let mut connection = tenant.access_write("roles.write").await?;
    let transaction = connection.client.transaction().await?;
    let before = changeable(&*transaction, id).await?;
    transaction
        .execute("DELETE FROM roles WHERE id = $1", &[&id])
        .await?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("role.delete", "role", id).before(&before),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionSet {
    /// Every permission the role holds afterwards.
    permissions: Vec<String>,
}

/// Sets the role's permissions to exactly these. Users holding the role feel it on their
/// next request; connected clients get a `role.permissions_changed` event.
async fn set_permissions(
    tenant: Tenant,
    Path(id): Path<String>,
    Json(body): Json<PermissionSet>,
) -> RouterResult<Json<Role>> {
    let id = path_id(&id, not_found)?;
    check_text(None, None, body.permissions.len())?;
    let mut connection = tenant.access_write("roles.write").await?;
    let transaction = connection.client.transaction().await?;
    let before = changeable(&*transaction, id).await?;
    check_permissions(&*transaction, &body.permissions).await?;
    set_permissions_of(&*transaction, id, &body.permissions).await?;
    transaction
        .execute("UPDATE roles SET updated_at = now() WHERE id = $1", &[&id])
        .await?;
    let after = load(&*transaction, id).await?.ok_or_else(not_found)?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("role.permissions", "role", id)
                .before(&before)
                .after(&after),
        )
        .await?;
    Ok(Json(after))
}

#[derive(Serialize)]
struct Permission {
    code: String,
    description: String,
}

#[derive(Serialize)]
struct Catalogue {
    items: Vec<Permission>,
}

async fn catalogue(tenant: Tenant) -> RouterResult<Json<Catalogue>> {
    let connection = tenant.access("roles.read").await?;
    let rows = connection
        .client
        .query(
            "SELECT code, description FROM permissions ORDER BY code",
            &[],
        )
        .await?;
    Ok(Json(Catalogue {
        items: rows
            .iter()
            .map(|row| Permission {
                code: row.get(0),
                description: row.get(1),
            })
            .collect(),
    }))
}
