//! Tenants: create (reserve in the catalog, then provision), list, show, rename or re-plan,
//! suspend, resume, delete. Shared by the HTTP API and `tenantctl`.

pub mod provisioning;

use std::time::Duration;

use catalog::audit::{Actor, Change};
use catalog::plans::FieldError;
use catalog::tenants::{Reservation, Status, Tenant};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tenancy_core::{Email, PlanName, Slug, TenantId};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::Platform;
use provisioning::Outcome;

/// How long a create request waits for another worker that is provisioning the same tenant.
const WAIT_FOR_OTHER_WORKER: Duration = Duration::from_secs(60);

/// A tenant to create, parsed at the edge.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub plan: PlanName,
    pub admin_email: Email,
    pub admin_password: String,
}

/// An `Idempotency-Key` and who sent it.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub admin_id: Uuid,
    pub key: String,
}

/// What a create request ended as.
#[derive(Debug)]
pub enum Created {
    /// Provisioned now: routable.
    New(Tenant),
    /// The same request again (same Idempotency-Key): the tenant it made.
    Replayed(Tenant),
    /// Still being provisioned by another worker.
    Pending(Tenant),
}

fn check_name(name: &str) -> Option<FieldError> {
    let length = name.trim().chars().count();
    (!(1..=200).contains(&length)).then(|| FieldError::new("name", "must be 1 to 200 characters"))
}

fn request_hash(new: &NewTenant) -> Vec<u8> {
    // The password is left out: the hash is stored, and a fast hash of a password is not.
    let canonical = serde_json::json!([new.slug, new.name, new.plan, new.admin_email]);
    Sha256::digest(canonical.to_string().as_bytes()).to_vec()
}

fn internal(context: &'static str) -> impl FnOnce(anyhow::Error) -> ApiError {
    move |error| ApiError::Internal(error.context(context))
}

pub fn not_found(slug: &str) -> ApiError {
    ApiError::not_found("tenant_not_found", format!("no tenant `{slug}`"))
}

/// Creates a tenant: records it (with a server chosen by headroom) before any database
/// object exists, then provisions it and answers once it is routable. Provisioning runs in
/// a task of its own, so a client that goes away does not interrupt it.
pub async fn create(
    platform: &Platform,
    actor: &Actor,
    new: NewTenant,
    idempotency: Option<IdempotencyKey>,
) -> ApiResult<Created> {
    let mut errors: Vec<FieldError> = check_name(&new.name).into_iter().collect();
    if let Err(error) = tenancy_core::password::check_password_policy(&new.admin_password) {
        errors.push(FieldError::new("admin_password", error.to_string()));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let hash = request_hash(&new);
    if let Some(key) = &idempotency
        && let Some(replay) = replay(platform, key, &hash).await?
    {
        return Ok(replay);
    }
    let password = new.admin_password.clone();
    let password_hash =
        tokio::task::spawn_blocking(move || tenancy_core::password::hash_password(&password))
            .await
            .map_err(|error| {
                ApiError::Internal(anyhow::Error::new(error).context("hash a password"))
            })?
            .map_err(|error| {
                ApiError::Internal(anyhow::Error::new(error).context("hash a password"))
            })?;

    let id = TenantId::new();
    let role_password = SecretString::from(
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect::<String>(),
    );
    let sealed = platform
        .sealer
        .seal_secret(&catalog::tenants::password_context(id.0), &role_password)
        .map_err(|error| {
            ApiError::Internal(anyhow::Error::new(error).context("seal a role password"))
        })?;

    let mut transaction = platform.db.begin().await?;
    let plan = catalog::plans::get_for_update(&mut *transaction, &new.plan)
        .await?
        .ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "plan",
                format!("no plan named `{}`", new.plan),
            )])
        })?;
    let server_id = catalog::servers::lock_and_choose(&mut transaction)
        .await?
        .ok_or_else(|| ApiError::ServiceUnavailable {
            code: "no_capacity",
            detail: "no database server has room for another tenant; add a server".to_owned(),
        })?;
    let reserved = catalog::tenants::reserve(
        &mut *transaction,
        &Reservation {
            id: id.0,
            slug: new.slug.as_str(),
            name: new.name.trim(),
            plan: new.plan.as_str(),
            server_id,
            database_name: provisioner::DatabaseName::for_tenant(id).as_str(),
            app_role: provisioner::RoleName::for_tenant(id).as_str(),
            sealed_password: &sealed,
            first_admin_email: new.admin_email.as_str(),
            first_admin_password_hash: &password_hash,
            trial_days: plan.limits.trial_days,
        },
    )
    .await;
    match reserved {
        Ok(()) => {}
        Err(sqlx::Error::Database(error))
            if error.constraint() == Some("tenants_slug_live_key") =>
        {
            drop(transaction);
            // The same request racing itself: answer as its replay.
            if let Some(key) = &idempotency
                && let Some(replay) = replay(platform, key, &hash).await?
            {
                return Ok(replay);
            }
            return retry_failed(platform, &new.slug).await;
        }
        Err(error) => return Err(error.into()),
    }
    if let Some(key) = &idempotency {
        catalog::tenants::remember_idempotency_key(
            &mut *transaction,
            key.admin_id,
            &key.key,
            &hash,
            id.0,
        )
        .await?;
    }
    let tenant = catalog::tenants::get(&mut *transaction, id.0)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the reserved tenant vanished")))?;
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "tenant.create",
            entity_type: "tenant",
            entity_id: &id.to_string(),
            before: None,
            after: Some(serde_json::to_value(&tenant).unwrap_or_default()),
        },
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(tenant_id = %id, slug = %new.slug, "tenant reserved; provisioning");
    finish_provisioning(platform, id.0, Created::New).await
}

/// Provisions in a task of its own and waits for the outcome.
async fn finish_provisioning(
    platform: &Platform,
    id: Uuid,
    wrap: fn(Tenant) -> Created,
) -> ApiResult<Created> {
    let task = {
        let platform = platform.clone();
        tokio::spawn(async move { provisioning::provision(&platform, id).await })
    };
    let outcome = task.await.map_err(|error| {
        ApiError::Internal(anyhow::Error::new(error).context("run provisioning"))
    })??;
    let tenant = match outcome {
        Outcome::Busy => wait_while_provisioning(platform, id).await?,
        Outcome::Active | Outcome::NotPending => load(platform, id).await?,
        Outcome::Failed(reason) => {
            return Err(ApiError::ServiceUnavailable {
                code: "provisioning_failed",
                detail: format!(
                    "provisioning failed and was rolled back ({reason}); the tenant is `failed`: \
                     send the same request again to retry"
                ),
            });
        }
    };
    Ok(match tenant.status() {
        Some(Status::Provisioning) => Created::Pending(tenant),
        _ => wrap(tenant),
    })
}

/// A request with a known Idempotency-Key: the tenant it made, or 422 if the key was used
/// for a different request.
async fn replay(
    platform: &Platform,
    key: &IdempotencyKey,
    hash: &[u8],
) -> ApiResult<Option<Created>> {
    let Some((tenant_id, stored_hash)) =
        catalog::tenants::idempotent_request(&platform.db, key.admin_id, &key.key).await?
    else {
        return Ok(None);
    };
    if stored_hash != hash {
        return Err(ApiError::Validation {
            code: "idempotency_key_reused",
            detail: "this Idempotency-Key was used for a different request".to_owned(),
            errors: Vec::new(),
        });
    }
    let tenant = load(platform, tenant_id).await?;
    if tenant.status() == Some(Status::Provisioning) {
        return finish_provisioning(platform, tenant_id, Created::Replayed)
            .await
            .map(Some);
    }
    Ok(Some(Created::Replayed(tenant)))
}

/// A create of a slug that exists: a `failed` tenant is provisioned again; anything else is
/// a conflict.
async fn retry_failed(platform: &Platform, slug: &Slug) -> ApiResult<Created> {
    let mut transaction = platform.db.begin().await?;
    let existing = catalog::tenants::lock_by_slug(&mut *transaction, slug.as_str())
        .await?
        .ok_or_else(|| ApiError::conflict("tenant_exists", format!("a tenant `{slug}` exists")))?;
    if existing.status() != Some(Status::Failed) {
        return Err(ApiError::conflict(
            "tenant_exists",
            format!("a tenant `{slug}` exists"),
        ));
    }
    catalog::tenants::set_status(&mut *transaction, existing.id, Status::Provisioning, None)
        .await?;
    transaction.commit().await?;
    tracing::info!(tenant_id = %existing.id, "retrying a failed provisioning");
    finish_provisioning(platform, existing.id, Created::New).await
}

async fn wait_while_provisioning(platform: &Platform, id: Uuid) -> ApiResult<Tenant> {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER_WORKER;
    loop {
        let tenant = load(platform, id).await?;
        if tenant.status() != Some(Status::Provisioning) || tokio::time::Instant::now() > deadline {
            return Ok(tenant);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn load(platform: &Platform, id: Uuid) -> ApiResult<Tenant> {
    catalog::tenants::get(&platform.db, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("tenant {id} vanished")))
}

/// The live tenant with this slug (or the latest deleted one).
pub async fn get(platform: &Platform, slug: &str) -> ApiResult<Tenant> {
    catalog::tenants::find_by_slug(&platform.db, slug)
        .await?
        .ok_or_else(|| not_found(slug))
}

/// A page of tenants and the cursor of the next one.
pub struct Page {
    pub items: Vec<Tenant>,
    pub next_cursor: Option<String>,
}

pub struct ListQuery {
    pub status: Option<String>,
    pub plan: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(platform: &Platform, query: ListQuery) -> ApiResult<Page> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(
            "`limit` must be between 1 and 500".to_owned(),
        ));
    }
    if let Some(status) = &query.status
        && Status::parse(status).is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "`status` must be one of provisioning, active, suspended, deleting, deleted, failed; not `{status}`"
        )));
    }
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let items = catalog::tenants::list(
        &platform.db,
        &catalog::tenants::ListFilter {
            status: query.status.as_deref(),
            plan: query.plan.as_deref(),
            after,
            limit,
        },
    )
    .await?;
    let next_cursor = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| {
            items
                .last()
                .map(|tenant| encode_cursor(tenant.created_at, tenant.id))
        })
        .flatten();
    Ok(Page { items, next_cursor })
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", created_at.to_rfc3339()))
}

fn decode_cursor(cursor: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    use base64::Engine;
    let bad = || ApiError::BadRequest("`cursor` is not a cursor this API gave out".to_owned());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (time, id) = text.split_once('|').ok_or_else(bad)?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    Ok((time, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// A change of name and/or plan. A new plan's limits are set on the tenant's role at once.
pub async fn update(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    name: Option<String>,
    plan: Option<PlanName>,
) -> ApiResult<Tenant> {
    if let Some(error) = name.as_deref().and_then(check_name) {
        return Err(ApiError::validation(vec![error]));
    }
    let mut transaction = platform.db.begin().await?;
    let before = catalog::tenants::lock_by_slug(&mut *transaction, slug)
        .await?
        .ok_or_else(|| not_found(slug))?;
    let new_name = name.map_or_else(|| before.name.clone(), |name| name.trim().to_owned());
    let new_plan = match plan {
        Some(plan) => catalog::plans::get_for_update(&mut *transaction, &plan)
            .await?
            .ok_or_else(|| {
                ApiError::validation(vec![FieldError::new(
                    "plan",
                    format!("no plan named `{plan}`"),
                )])
            })?,
        None => catalog::plans::get_for_update(
            &mut *transaction,
            &before
                .plan
                .parse::<PlanName>()
                .map_err(|error| internal("parse a stored plan name")(anyhow::anyhow!(error)))?,
        )
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the tenant's plan vanished")))?,
    };
    if new_name == before.name && new_plan.name == before.plan {
        return Ok(before);
    }
    catalog::tenants::rename_and_replan(&mut *transaction, before.id, &new_name, &new_plan.name)
        .await?;
    if new_plan.name != before.plan
        && let Some(server_id) = before
            .server_id
            .filter(|_| before.status() != Some(Status::Provisioning))
    {
        // Set on the role before the catalog commits: if it fails, nothing changed.
        let address = crate::servers::address(platform, server_id).await?;
        let admin = address
            .connect("postgres")
            .await
            .map_err(unavailable_server)?;
        provisioner::tenant::apply_limits(
            &admin,
            TenantId(before.id),
            provisioner::RoleLimits {
                max_connections: new_plan.limits.max_connections,
                statement_timeout_ms: new_plan.limits.statement_timeout_ms,
            },
        )
        .await
        .map_err(unavailable_server)?;
    }
    let after = catalog::tenants::get(&mut *transaction, before.id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the tenant vanished")))?;
    audit(&mut transaction, actor, "tenant.update", &before, &after).await?;
    transaction.commit().await?;
    Ok(after)
}

/// Sets a plan's database-enforced limits on the role of every live tenant on it, server by
/// server. Errors are logged per server and do not stop the others.
pub async fn apply_plan_limits(platform: &Platform, plan: &str) -> ApiResult<usize> {
    let Some(plan_row) = catalog::plans::list(&platform.db)
        .await?
        .into_iter()
        .find(|candidate| candidate.name == plan)
    else {
        return Ok(0);
    };
    let limits = provisioner::RoleLimits {
        max_connections: plan_row.limits.max_connections,
        statement_timeout_ms: plan_row.limits.statement_timeout_ms,
    };
    let mut by_server: std::collections::BTreeMap<Uuid, Vec<Uuid>> = Default::default();
    for (tenant, server) in catalog::tenants::on_plan(&platform.db, plan).await? {
        by_server.entry(server).or_default().push(tenant);
    }
    let mut applied = 0;
    for (server_id, tenants) in by_server {
        let address = crate::servers::address(platform, server_id).await?;
        let admin = match address.connect("postgres").await {
            Ok(admin) => admin,
            Err(error) => {
                tracing::error!(%server_id, %error, plan, "apply plan limits: server unreachable");
                continue;
            }
        };
        for tenant in tenants {
            match provisioner::tenant::apply_limits(&admin, TenantId(tenant), limits).await {
                Ok(()) => applied += 1,
                Err(error) => {
                    tracing::error!(tenant_id = %tenant, %error, plan, "apply plan limits")
                }
            }
        }
    }
    Ok(applied)
}

/// A database server error seen while serving an admin request: 503, with the reason.
pub fn unavailable_server(error: provisioner::ProvisionError) -> ApiError {
    tracing::warn!(%error, "database server operation failed");
    ApiError::ServiceUnavailable {
        code: "server_unavailable",
        detail: "the tenant's database server could not complete the change; nothing was changed"
            .to_owned(),
    }
}

async fn audit(
    transaction: &mut sqlx::PgTransaction<'_>,
    actor: &Actor,
    action: &str,
    before: &Tenant,
    after: &Tenant,
) -> ApiResult<()> {
    catalog::audit::record(
        &mut **transaction,
        actor,
        Change {
            action,
            entity_type: "tenant",
            entity_id: &before.id.to_string(),
            before: Some(serde_json::to_value(before).unwrap_or_default()),
            after: Some(serde_json::to_value(after).unwrap_or_default()),
        },
    )
    .await?;
    Ok(())
}

/// Moves a tenant to `next` if its lifecycle allows it (409 otherwise).
pub async fn transition(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    next: Status,
) -> ApiResult<Tenant> {
    let mut transaction = platform.db.begin().await?;
    let before = catalog::tenants::lock_by_slug(&mut *transaction, slug)
        .await?
        .ok_or_else(|| not_found(slug))?;
    let current = before
        .status()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown stored status")))?;
    if !current.can_become(next) {
        return Err(ApiError::conflict(
            "invalid_transition",
            format!(
                "a tenant that is `{}` cannot become `{}`",
                current.as_str(),
                next.as_str()
            ),
        ));
    }
    let delete_after = (next == Status::Deleting).then(|| {
        Utc::now() + chrono::Duration::from_std(platform.settings.delete_grace).unwrap_or_default()
    });
    catalog::tenants::set_status(&mut *transaction, before.id, next, delete_after).await?;
    let after = catalog::tenants::get(&mut *transaction, before.id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the tenant vanished")))?;
    let action = match next {
        Status::Suspended => "tenant.suspend",
        Status::Active => "tenant.resume",
        Status::Deleting => "tenant.delete",
        _ => "tenant.status",
    };
    audit(&mut transaction, actor, action, &before, &after).await?;
    transaction.commit().await?;
    Ok(after)
}

/// Deletes a tenant: `deleting` now, dropped after the grace period (at once when it is 0).
pub async fn delete(platform: &Platform, actor: &Actor, slug: &str) -> ApiResult<Tenant> {
    let tenant = transition(platform, actor, slug, Status::Deleting).await?;
    if platform.settings.delete_grace.is_zero() {
        let id = tenant.id;
        let platform_for_task = platform.clone();
        tokio::spawn(async move { provisioning::drop_tenant(&platform_for_task, id).await })
            .await
            .map_err(|error| {
                ApiError::Internal(anyhow::Error::new(error).context("drop a tenant"))
            })??;
        return load(platform, id).await;
    }
    Ok(tenant)
}
