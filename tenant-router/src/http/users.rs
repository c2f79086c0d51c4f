//! Users of the tenant: list, show, create (capped by the plan's `max_users`), update,
//! disable, delete, and their roles. Disabling or deleting a user ends its sessions at once;
//! the last active admin can be neither disabled, deleted nor demoted.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy_http::Path;
use tokio_postgres::{GenericClient, Row};

use super::input::{ListParams, Page, Problems, path_id, violated};
use super::table::Routes;
use crate::audit::Change;
use crate::auth::sessions;
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Query, Tenant};
use crate::ids::{RoleId, UserId};

pub fn routes() -> Routes {
    Routes::new()
        .get("/v1/users", list)
        .post("/v1/users", create)
        .get("/v1/users/{id}", show)
        .patch("/v1/users/{id}", update)
        .delete("/v1/users/{id}", remove)
        .post("/v1/users/{id}/roles", set_roles)
}

/// Serializes the changes that could leave the tenant without an admin or over its user
/// cap (an advisory lock in the tenant's own database, for the transaction).
pub const USERS_LOCK: i64 = 0x7573_6572_735f_6c6b;

#[derive(Debug, Serialize)]
pub struct User {
    id: UserId,
    email: String,
    display_name: String,
    is_active: bool,
    /// `[{id, name}]`, by name.
    roles: Value,
    last_login_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT u.id, u.email, u.display_name, u.is_active, u.last_login_at, \
      u.created_at, u.updated_at, \
      COALESCE((SELECT jsonb_agg(jsonb_build_object('id', r.id, 'name', r.name) ORDER BY r.name) \
                FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id), \
               '[]'::jsonb) AS roles \
    FROM users u";

impl From<&Row> for User {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            email: row.get("email"),
            display_name: row.get("display_name"),
            is_active: row.get("is_active"),
            roles: row.get("roles"),
            last_login_at: row.get("last_login_at"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

pub fn not_found() -> RouterError {
    RouterError::NotFound {
        code: "user_not_found",
        detail: "no such user".to_owned(),
    }
}

/// The user with this id.
pub async fn load(client: &impl GenericClient, id: UserId) -> RouterResult<Option<User>> {
    let row = client
        .query_opt(&format!("{SELECT} WHERE u.id = $1"), &[&id])
        .await?;
    Ok(row.as_ref().map(User::from))
}

/// The user and its effective permissions (sorted), in one prepared statement.
pub async fn load_with_permissions(
    client: &deadpool_postgres::ClientWrapper,
    id: UserId,
) -> RouterResult<Option<(User, Vec<String>)>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT q.*, ARRAY(SELECT DISTINCT rp.permission FROM user_roles ur \
               JOIN role_permissions rp ON rp.role_id = ur.role_id \
               WHERE ur.user_id = q.id ORDER BY 1) AS permissions \
             FROM ({SELECT} WHERE u.id = $1) q"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&id]).await?;
    Ok(row.map(|row| (User::from(&row), row.get("permissions"))))
}

async fn list(tenant: Tenant, Query(params): Query<ListParams>) -> RouterResult<Json<Page<User>>> {
    let cursors = &tenant.state().cursors;
    let listing = params.check(cursors, "users")?;
    let connection = tenant.access("users.read").await?;
    let (after_time, after_id) = listing.after.unzip();
    let statement = connection
        .client
        .prepare_cached(&format!(
            "{SELECT} WHERE ($1::timestamptz IS NULL OR (u.created_at, u.id) > ($1, $2)) \
               AND ($3::text IS NULL OR u.email LIKE $3 OR lower(u.display_name) LIKE $3) \
             ORDER BY u.created_at, u.id LIMIT $4"
        ))
        .await?;
    let rows = connection
        .client
        .query(
            &statement,
            &[&after_time, &after_id, &listing.pattern, &listing.limit],
        )
        .await?;
    let items: Vec<User> = rows.iter().map(User::from).collect();
    let next_cursor =
        listing.next_cursor(cursors, &items, |user| (user.created_at, user.id.as_uuid()));
    Ok(Json(Page { items, next_cursor }))
}

async fn show(tenant: Tenant, Path(id): Path<String>) -> RouterResult<Json<User>> {
    let id = path_id(&id, not_found)?;
    let connection = tenant.access("users.read").await?;
    load(&*connection.client, id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    password: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    roles: Vec<RoleId>,
}

/// Checks a new password and hashes it, off the async threads and within the bound on
/// concurrent hashing.
async fn hash_new_password(tenant: &Tenant, password: &str, email: &str) -> RouterResult<String> {
    if let Err(error) = tenancy_core::password::check_new_password(password, email) {
        let mut problems = Problems::new();
        problems.push("password", error);
        problems.finish()?;
    }
    let permit = tenant
        .state()
        .auth
        .hashes
        .enter()
        .await
        .map_err(|_| RouterError::Busy)?;
    let password = password.to_owned();
    permit
        .run(move || tenancy_core::password::hash_checked_password(&password))
        .await
        .map_err(|error| RouterError::Internal(anyhow::Error::new(error)))?
        .map_err(|error| RouterError::Internal(anyhow::Error::new(error)))
}

/// Refuses role ids that do not exist (422 naming them).
async fn check_roles(client: &impl GenericClient, roles: &[RoleId]) -> RouterResult<()> {
    let known: Vec<RoleId> = client
        .query("SELECT id FROM roles WHERE id = ANY($1)", &[&roles])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let unknown: Vec<String> = roles
        .iter()
        .filter(|role| !known.contains(role))
        .map(ToString::to_string)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(RouterError::Invalid {
            code: "validation_failed",
            detail: format!("roles: no such role: {}", unknown.join(", ")),
        })
    }
}

/// Takes [`USERS_LOCK`] for the transaction.
async fn lock_users(client: &impl GenericClient) -> RouterResult<()> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&USERS_LOCK])
        .await?;
    Ok(())
}

/// Gives the user exactly these roles (checked before).
async fn set_roles_of(
    client: &impl GenericClient,
    id: UserId,
    roles: &[RoleId],
) -> RouterResult<()> {
    client
        .execute(
            "DELETE FROM user_roles WHERE user_id = $1 AND NOT role_id = ANY($2)",
            &[&id, &roles],
        )
        .await?;
    client
        .execute(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
            &[&id, &roles],
        )
        .await?;
    Ok(())
}

/// Refuses a change that left no active admin (the caller then rolls back).
async fn require_an_admin(client: &impl GenericClient) -> RouterResult<()> {
    let any: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users u JOIN user_roles ur ON ur.user_id = u.id \
               JOIN roles r ON r.id = ur.role_id \
               WHERE r.is_system AND r.name = 'admin' AND u.is_active)",
            &[],
        )
        .await?
        .get(0);
    if any {
        Ok(())
    } else {
        Err(RouterError::Conflict {
            code: "last_admin",
            detail: "this would leave the tenant without an active admin".to_owned(),
        })
    }
}

fn user_exists(email: &str) -> RouterError {
    RouterError::Conflict {
        code: "user_exists",
        detail: format!("a user with the e-mail `{email}` exists"),
    }
}

async fn create(tenant: Tenant, Json(body): Json<NewUser>) -> RouterResult<impl IntoResponse> {
    let mut problems = Problems::new();
    let email = problems.email("email", &body.email);
    problems.length("display_name", Some(&body.display_name), 0, 200);
    if body.roles.len() > 100 {
        problems.push("roles", "at most 100 roles");
    }
    problems.finish()?;
    let email = email.unwrap_or_default();
    // The permission first: a principal without it learns nothing from the body's checks.
    drop(tenant.access_write("users.write").await?);
    let hash = hash_new_password(&tenant, &body.password, &email).await?;
    let mut connection = tenant.access_write("users.write").await?;
    let transaction = connection.client.transaction().await?;
    check_roles(&*transaction, &body.roles).await?;
    lock_users(&*transaction).await?;
    let count: i64 = transaction
        .query_one("SELECT count(*) FROM users", &[])
        .await?
        .get(0);
    let cap = i64::from(tenant.entry.max_users);
    if count >= cap {
        return Err(RouterError::LimitExceeded(format!(
            "the plan allows {cap} users; the tenant has {count}"
        )));
    }
    let inserted = transaction
        .query_one(
            "INSERT INTO users (email, display_name, password_hash) VALUES ($1, $2, $3) RETURNING id",
            &[&email, &body.display_name.trim(), &hash],
        )
        .await;
    let id: UserId = match inserted {
        Ok(row) => row.get(0),
        Err(error) if violated(&error) == Some("users_email_key") => {
            return Err(user_exists(&email));
        }
        Err(error) => return Err(error.into()),
    };
    set_roles_of(&*transaction, id, &body.roles).await?;
    let user = load(&*transaction, id).await?.ok_or_else(not_found)?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("user.create", "user", id).after(&user),
        )
        .await?;
    tenant.users_changed(count + 1);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/users/{id}"))],
        Json(user),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    email: Option<String>,
    display_name: Option<String>,
    password: Option<String>,
    is_active: Option<bool>,
}

async fn update(
    tenant: Tenant,
    Path(id): Path<String>,
    Json(body): Json<UserChange>,
) -> RouterResult<Json<User>> {
    let id = path_id(&id, not_found)?;
    let mut problems = Problems::new();
    let email = body
        .email
        .as_deref()
        .and_then(|email| problems.email("email", email));
    problems.length("display_name", body.display_name.as_deref(), 0, 200);
    problems.finish()?;
    drop(tenant.access_write("users.write").await?);
    let hash = match &body.password {
        Some(password) => {
            let current = {
                let connection = tenant.access_write("users.write").await?;
                load(&*connection.client, id).await?.ok_or_else(not_found)?
            };
            let email = email.clone().unwrap_or(current.email);
            Some(hash_new_password(&tenant, password, &email).await?)
        }
        None => None,
    };
    let mut connection = tenant.access_write("users.write").await?;
    let transaction = connection.client.transaction().await?;
    lock_users(&*transaction).await?;
    let before = load(&*transaction, id).await?.ok_or_else(not_found)?;
    let updated = transaction
        .execute(
            "UPDATE users SET email = COALESCE($2, email), \
               display_name = COALESCE($3, display_name), \
               password_hash = COALESCE($4, password_hash), \
               is_active = COALESCE($5, is_active), updated_at = now() \
             WHERE id = $1",
            &[
                &id,
                &email,
                &body.display_name.as_deref().map(str::trim),
                &hash,
                &body.is_active,
            ],
        )
        .await;
    match updated {
        Ok(_) => {}
        Err(error) if violated(&error) == Some("users_email_key") => {
            return Err(user_exists(email.as_deref().unwrap_or_default()));
        }
        Err(error) => return Err(error.into()),
    }
    if body.is_active == Some(false) {
        require_an_admin(&*transaction).await?;
        sessions::revoke_all(&*transaction, id, "user_disabled").await?;
    } else if hash.is_some() {
        sessions::revoke_all(&*transaction, id, "password_changed").await?;
    }
    let after = load(&*transaction, id).await?.ok_or_else(not_found)?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("user.update", "user", id)
                .before(&before)
                .after(&after),
        )
        .await?;
    Ok(Json(after))
}

async fn remove(tenant: Tenant, Path(id): Path<String>) -> RouterResult<StatusCode> {
    let id = path_id(&id, not_found)?;
    let mut connection = tenant.access_write("users.write").await?;
    let transaction = connection.client.transaction().await?;
    lock_users(&*transaction).await?;
    let before = load(&*transaction, id).await?.ok_or_else(not_found)?;
    // Its sessions go with it (ON DELETE CASCADE): its tokens stop working at once.
    transaction
        .execute("DELETE FROM users WHERE id = $1", &[&id])
        .await?;
    require_an_admin(&*transaction).await?;
    let users: i64 = transaction
        .query_one("SELECT count(*) FROM users", &[])
        .await?
        .get(0);
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("user.delete", "user", id).before(&before),
        )
        .await?;
    tenant.users_changed(users);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSet {
    /// Every role the user holds afterwards.
    roles: Vec<RoleId>,
}

/// Sets the user's roles to exactly these.
async fn set_roles(
    tenant: Tenant,
    Path(id): Path<String>,
    Json(body): Json<RoleSet>,
) -> RouterResult<Json<User>> {
    let id = path_id(&id, not_found)?;
    if body.roles.len() > 100 {
        let mut problems = Problems::new();
        problems.push("roles", "at most 100 roles");
        problems.finish()?;
    }
    let mut connection = tenant.access_write("users.write").await?;
    let transaction = connection.client.transaction().await?;
    lock_users(&*transaction).await?;
    let before = load(&*transaction, id).await?.ok_or_else(not_found)?;
    check_roles(&*transaction, &body.roles).await?;
    set_roles_of(&*transaction, id, &body.roles).await?;
    require_an_admin(&*transaction).await?;
    let after = load(&*transaction, id).await?.ok_or_else(not_found)?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("user.roles", "user", id)
                .before(&before)
                .after(&after),
        )
        .await?;
    Ok(Json(after))
}
