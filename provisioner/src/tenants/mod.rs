//! Tenants: create (reserve in the catalog, then provision), list, show, rename or re-plan,
//! suspend, resume, delete. Shared by the HTTP API and `tenantctl`.

mod adopt;
mod create;
pub mod provisioning;

pub use adopt::{Adoption, adopt};
pub use create::{Created, IdempotencyKey, NewTenant, create};

use catalog::audit::{Actor, Change};
use catalog::plans::FieldError;
use catalog::tenants::{Status, Tenant};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::SecretString;
use tenancy_core::{PlanName, ServerId, TenantId};
use uuid::Uuid;

use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

pub(crate) async fn load(platform: &Platform, id: TenantId) -> OpsResult<Tenant> {
    catalog::tenants::get(&platform.db, id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("tenant {id} vanished")))
}

pub(crate) fn check_name(name: &str) -> Option<FieldError> {
    let length = name.trim().chars().count();
    (!(1..=200).contains(&length)).then(|| FieldError::new("name", "must be 1 to 200 characters"))
}

fn internal(context: &'static str) -> impl FnOnce(anyhow::Error) -> OpsError {
    move |error| OpsError::Internal(error.context(context))
}

pub fn not_found(slug: &str) -> OpsError {
    OpsError::not_found("tenant_not_found", format!("no tenant `{slug}`"))
}

/// The live tenant with this slug (or the latest deleted one).
pub async fn get(platform: &Platform, slug: &str) -> OpsResult<Tenant> {
    catalog::tenants::find_by_slug(&platform.db, slug)
        .await?
        .ok_or_else(|| not_found(slug))
}

/// A tenant with its usage summary and its newest complete backup (`GET
/// /v1/tenants/{slug}`).
pub async fn detail(platform: &Platform, slug: &str) -> OpsResult<crate::wire::TenantDetail> {
    let tenant = get(platform, slug).await?;
    let id = tenant.id;
    let (hours, storage, backups) = tokio::try_join!(
        catalog::usage::hourly_requests(&platform.db, id, 24),
        catalog::usage::storage(&platform.db, id),
        catalog::backups::last_complete(&platform.db, id),
    )?;
    let storage = storage.ok_or_else(|| not_found(slug))?;
    Ok(crate::wire::TenantDetail {
        usage: crate::wire::UsageSummary {
            requests_last_24h: hours.iter().map(|hour| hour.requests).sum(),
            storage_bytes: storage.bytes,
            storage_limit_bytes: storage.limit_bytes,
            storage_exceeded: storage.exceeded,
            storage_sampled_at: storage.sampled_at,
        },
        last_backup: backups.as_ref().map(Into::into),
        tenant: tenant.into(),
    })
}

/// A page of tenants and the cursor of the next one.
pub struct Page {
    pub items: Vec<Tenant>,
    pub next_cursor: Option<String>,
}

pub struct ListQuery {
    pub status: Option<String>,
    pub plan: Option<String>,
    /// On the database server of this name.
    pub server: Option<String>,
    /// Deleted tenants left out unless `status` asks for them.
    pub live_only: bool,
    /// Slug or name containing this, case-insensitively.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(platform: &Platform, query: ListQuery) -> OpsResult<Page> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(OpsError::BadRequest(
            "`limit` must be between 1 and 500".to_owned(),
        ));
    }
    if let Some(status) = &query.status
        && Status::parse(status).is_none()
    {
        return Err(OpsError::BadRequest(format!(
            "`status` must be one of provisioning, active, suspended, restoring, deleting, deleted, failed; not `{status}`"
        )));
    }
    if let Some(plan) = &query.plan
        && plan.parse::<PlanName>().is_err()
    {
        return Err(OpsError::BadRequest(
            "`plan` is not a plan name (a-z, 0-9, '-' and '_', up to 63 characters)".to_owned(),
        ));
    }
    if query
        .server
        .as_deref()
        .is_some_and(|server| server.len() > 63)
    {
        return Err(OpsError::BadRequest(
            "`server` is not a server name (at most 63 characters)".to_owned(),
        ));
    }
    if query.q.as_deref().is_some_and(|q| q.chars().count() > 100) {
        return Err(OpsError::BadRequest(
            "`q` must be at most 100 characters".to_owned(),
        ));
    }
    let search = tenancy_core::search::contains(query.q.as_deref());
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let items = catalog::tenants::list(
        &platform.db,
        &catalog::tenants::ListFilter {
            status: query.status.as_deref(),
            plan: query.plan.as_deref(),
            server: query.server.as_deref(),
            live_only: query.live_only,
            search: search.as_deref(),
            after,
            limit,
        },
    )
    .await?;
    let next_cursor = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| {
            items
                .last()
                .map(|tenant| encode_cursor(tenant.created_at, tenant.id.as_uuid()))
        })
        .flatten();
    Ok(Page { items, next_cursor })
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    tenancy_core::cursor::encode(created_at, id)
}

fn decode_cursor(cursor: &str) -> OpsResult<(DateTime<Utc>, Uuid)> {
    tenancy_core::cursor::decode(cursor).ok_or_else(|| {
        OpsError::BadRequest("`cursor` is not a cursor this API gave out".to_owned())
    })
}

/// A change of name and/or plan. A new plan's limits are set on the tenant's role at once.
pub async fn update(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    name: Option<String>,
    plan: Option<PlanName>,
) -> OpsResult<Tenant> {
    if let Some(error) = name.as_deref().and_then(check_name) {
        return Err(OpsError::validation(vec![error]));
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
                OpsError::validation(vec![FieldError::new(
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
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("the tenant's plan vanished")))?,
    };
    if new_name == before.name && new_plan.name == before.plan {
        return Ok(before);
    }
    catalog::tenants::rename_and_replan(&mut *transaction, before.id, &new_name, &new_plan.name)
        .await?;
    if new_plan.name != before.plan
        && let Some(server_id) = before
            .server_id
            .filter(|_| before.status != Status::Provisioning)
    {
        // Set on the role before the catalog commits: if it fails, nothing changed.
        let address = crate::servers::address(platform, server_id).await?;
        let admin = address
            .connect("postgres")
            .await
            .map_err(unavailable_server)?;
        crate::tenant::apply_limits(
            &admin,
            before.id,
            crate::RoleLimits {
                max_connections: new_plan.limits.max_connections,
                statement_timeout_ms: new_plan.limits.statement_timeout_ms,
            },
        )
        .await
        .map_err(unavailable_server)?;
    }
    let after = catalog::tenants::get(&mut *transaction, before.id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("the tenant vanished")))?;
    audit(&mut transaction, actor, "tenant.update", &before, &after).await?;
    transaction.commit().await?;
    Ok(after)
}

/// Sets a plan's database-enforced limits on the role of every live tenant on it, server by
/// server. Errors are logged per server and do not stop the others.
pub async fn apply_plan_limits(platform: &Platform, plan: &str) -> OpsResult<usize> {
    let Some(plan_row) = catalog::plans::list(&platform.db)
        .await?
        .into_iter()
        .find(|candidate| candidate.name == plan)
    else {
        return Ok(0);
    };
    let limits = crate::RoleLimits {
        max_connections: plan_row.limits.max_connections,
        statement_timeout_ms: plan_row.limits.statement_timeout_ms,
    };
    let mut by_server: std::collections::BTreeMap<ServerId, Vec<TenantId>> = Default::default();
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
            match crate::tenant::apply_limits(&admin, tenant, limits).await {
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
pub fn unavailable_server(error: crate::ProvisionError) -> OpsError {
    tracing::warn!(%error, "database server operation failed");
    OpsError::ServiceUnavailable {
        code: "server_unavailable",
        detail: "the tenant's database server could not complete the change; nothing was changed"
            .to_owned(),
    }
}

/// A tenant as the audit log records it: what the API shows, no internal text.
fn audit_value(tenant: &Tenant) -> serde_json::Value {
    serde_json::to_value(crate::wire::Tenant::from(tenant.clone())).unwrap_or_default()
}

async fn audit(
    transaction: &mut sqlx::PgTransaction<'_>,
    actor: &Actor,
    action: &str,
    before: &Tenant,
    after: &Tenant,
) -> OpsResult<()> {
    catalog::audit::record(
        &mut **transaction,
        actor,
        Change {
            action,
            entity_type: "tenant",
            entity_id: &before.id.to_string(),
            before: Some(audit_value(before)),
            after: Some(audit_value(after)),
        },
    )
    .await?;
    Ok(())
}

/// A new random password for a tenant's role, and the same sealed for the catalog.
pub(crate) fn new_role_password(
    platform: &Platform,
    id: TenantId,
) -> OpsResult<(SecretString, Vec<u8>)> {
    let password = SecretString::from(
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect::<String>(),
    );
    let sealed = platform
        .sealer
        .seal_secret(&catalog::tenants::password_context(id), &password)
        .map_err(|error| {
            OpsError::Internal(anyhow::Error::new(error).context("seal a role password"))
        })?;
    Ok((password, sealed))
}

/// The audit entry of a tenant that comes into the catalog (created, adopted): the tenant
/// as it is now in `transaction`, which it returns.
async fn record_new(
    transaction: &mut sqlx::PgTransaction<'_>,
    actor: &Actor,
    action: &str,
    id: TenantId,
) -> OpsResult<Tenant> {
    let tenant = catalog::tenants::get(&mut **transaction, id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("the new tenant vanished")))?;
    catalog::audit::record(
        &mut **transaction,
        actor,
        Change {
            action,
            entity_type: "tenant",
            entity_id: &id.to_string(),
            before: None,
            after: Some(audit_value(&tenant)),
        },
    )
    .await?;
    Ok(tenant)
}

/// Moves a tenant to `next` if its lifecycle allows it (409 otherwise).
pub async fn transition(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    next: Status,
) -> OpsResult<Tenant> {
    transition_with(platform, actor, slug, next, FinalBackup::Required).await
}

async fn transition_with(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    next: Status,
    final_backup: FinalBackup,
) -> OpsResult<Tenant> {
    let mut transaction = platform.db.begin().await?;
    let before = catalog::tenants::lock_by_slug(&mut *transaction, slug)
        .await?
        .ok_or_else(|| not_found(slug))?;
    let current = before.status;
    if !current.can_become(next) {
        return Err(OpsError::conflict(
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
    if next == Status::Deleting && final_backup == FinalBackup::Waived {
        catalog::tenants::waive_final_backup(&mut *transaction, before.id).await?;
    }
    let after = catalog::tenants::get(&mut *transaction, before.id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("the tenant vanished")))?;
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

/// Whether a deleted tenant's database is backed up before it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalBackup {
    /// The rule: no drop without a complete final backup (refused when backups are not
    /// configured).
    Required,
    /// An operator's explicit waiver, recorded on the tenant and in the audit log.
    Waived,
}

/// Deletes a tenant: `deleting` now, dropped after the grace period (at once when it is 0)
/// once its final backup is complete. Without backups configured, a tenant that has a
/// database is refused (409 `final_backup_unavailable`) unless the final backup is waived.
pub async fn delete(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    final_backup: FinalBackup,
) -> OpsResult<Tenant> {
    let current = get(platform, slug).await?;
    let has_database = current.status != Status::Failed && current.server_id.is_some();
    if final_backup == FinalBackup::Required
        && has_database
        && platform.settings.backup_store.is_none()
        && current.status.can_become(Status::Deleting)
    {
        return Err(OpsError::conflict(
            "final_backup_unavailable",
            "backups are not configured (TENANCY_S3_BUCKET), and a tenant's database is never \
             dropped without a final backup: configure backups, or waive the final backup \
             explicitly (`?final_backup=skip`, `tenantctl tenant delete --no-final-backup`)",
        ));
    }
    let tenant = transition_with(platform, actor, slug, Status::Deleting, final_backup).await?;
    if platform.settings.delete_grace.is_zero() {
        let id = tenant.id;
        let platform_for_task = platform.clone();
        platform
            .spawn(async move { provisioning::drop_tenant(&platform_for_task, id).await })
            .await
            .map_err(|error| {
                OpsError::Internal(anyhow::Error::new(error).context("drop a tenant"))
            })??;
        return load(platform, id).await;
    }
    Ok(tenant)
}
