//! Adopting a tenant database back: a database of this installation that the catalog does
//! not know (say, after the catalog was restored from an older backup) becomes a tenant
//! again, with its data and its users, under a slug, name and plan the operator gives.

use catalog::audit::Actor;
use catalog::plans::FieldError;
use catalog::tenants::Tenant;
use tenancy_core::{PlanName, ServerId, Slug, TenantId};

use super::check_name;
use crate::error::{OpsError, OpsResult};
use crate::locks::SessionLock;
use crate::platform::Platform;

/// What to adopt, and as what.
#[derive(Debug, Clone)]
pub struct Adoption {
    /// The server's name in the catalog.
    pub server: String,
    /// The database (`t_<tenant id>` or a restored `t_<tenant id>_<8 hex>`).
    pub database: String,
    pub slug: Slug,
    pub name: String,
    pub plan: PlanName,
}

/// Adopts a tenant database: it must carry this installation's mark and belong to a tenant
/// the catalog does not know. Its quarantine is lifted, the tenant role gets a new password
/// and the plan's limits, grants are re-applied, and the tenant is recorded `active` with
/// its audit entry. Runs under the sweep's lock, so no sweep quarantines it meanwhile.
pub async fn adopt(platform: &Platform, actor: &Actor, adoption: Adoption) -> OpsResult<Tenant> {
    if let Some(error) = check_name(&adoption.name) {
        return Err(OpsError::validation(vec![error]));
    }
    let (database, tenant) = crate::DatabaseName::parse(&adoption.database)
        .and_then(|name| name.tenant().map(|tenant| (name, tenant)))
        .ok_or_else(|| {
            OpsError::validation(vec![FieldError::new(
                "database",
                "a tenant database name: t_<32 hex>[_<8 hex>]",
            )])
        })?;
    let plan = catalog::plans::list(&platform.db)
        .await?
        .into_iter()
        .find(|plan| plan.name == adoption.plan.as_str())
        .ok_or_else(|| {
            OpsError::validation(vec![FieldError::new(
                "plan",
                format!("no plan named `{}`", adoption.plan),
            )])
        })?;
    let server = catalog::servers::list(&platform.db)
        .await?
        .into_iter()
        .find(|server| server.name == adoption.server)
        .ok_or_else(|| {
            OpsError::not_found(
                "server_not_found",
                format!("no server `{}`", adoption.server),
            )
        })?;
    if catalog::tenants::get(&platform.db, tenant).await?.is_some() {
        return Err(OpsError::conflict(
            "tenant_known",
            format!("the catalog knows tenant {tenant} already: there is nothing to adopt"),
        ));
    }

    let sweep = SessionLock::take(&platform.db, crate::jobs::sweep_lock_key()).await?;
    let result = adopt_locked(
        platform, actor, &adoption, &plan, server.id, &database, tenant,
    )
    .await;
    sweep.release().await;
    result
}

async fn adopt_locked(
    platform: &Platform,
    actor: &Actor,
    adoption: &Adoption,
    plan: &catalog::plans::Plan,
    server_id: ServerId,
    database: &crate::DatabaseName,
    tenant: TenantId,
) -> OpsResult<Tenant> {
    let address = crate::servers::address(platform, server_id).await?;
    let admin = address
        .connect("postgres")
        .await
        .map_err(super::unavailable_server)?;
    let mark = crate::mark::database_mark(&admin, database)
        .await
        .map_err(super::unavailable_server)?;
    let mark = match mark {
        Some(mark) if mark.is_of(platform.installation) => mark,
        Some(_) | None => {
            let exists = crate::tenant::database_exists(&admin, database)
                .await
                .map_err(super::unavailable_server)?;
            return Err(if exists {
                OpsError::conflict(
                    "not_ours",
                    format!(
                        "database {database} does not carry this installation's ownership mark; it is not adopted"
                    ),
                )
            } else {
                OpsError::not_found(
                    "database_not_found",
                    format!("no database {database} on server `{}`", adoption.server),
                )
            });
        }
    };
    let (role_password, sealed) = super::new_role_password(platform, tenant)?;
    // On the server: connections allowed again, the role (new password, the plan's
    // limits), the grants. All idempotent: an adoption cut short is simply run again.
    if mark.quarantined_at.is_some() {
        crate::tenant::release_database(&admin, database, mark)
            .await
            .map_err(super::unavailable_server)?;
    }
    let limits = crate::RoleLimits {
        max_connections: plan.limits.max_connections,
        statement_timeout_ms: plan.limits.statement_timeout_ms,
    };
    crate::tenant::ensure_role(
        &admin,
        tenant,
        &role_password,
        limits,
        platform.installation,
    )
    .await
    .map_err(super::unavailable_server)?;
    let role = crate::RoleName::for_tenant(tenant);
    if let Some(role_mark) = crate::mark::role_mark(&admin, &role)
        .await
        .map_err(super::unavailable_server)?
        .filter(|mark| mark.quarantined_at.is_some())
    {
        crate::tenant::release_role(&admin, &role, role_mark)
            .await
            .map_err(super::unavailable_server)?;
    }
    let restored = crate::tenant::finish_restored_database(&address, &admin, database, tenant)
        .await
        .map_err(super::unavailable_server)?;
    let schema_version = restored.schema_version;

    let mut transaction = platform.db.begin().await?;
    let inserted = catalog::tenants::insert_adopted(
        &mut *transaction,
        &catalog::tenants::Adopted {
            id: tenant,
            slug: adoption.slug.as_str(),
            name: adoption.name.trim(),
            plan: adoption.plan.as_str(),
            server_id,
            database_name: database.as_str(),
            app_role: role.as_str(),
            sealed_password: &sealed,
            schema_version,
            users: restored.users,
        },
    )
    .await;
    match inserted {
        Ok(()) => {}
        Err(sqlx::Error::Database(error))
            if error.constraint() == Some("tenants_slug_live_key") =>
        {
            return Err(OpsError::conflict(
                "tenant_exists",
                format!("a tenant `{}` exists", adoption.slug),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    let adopted = super::record_new(&mut transaction, actor, "tenant.adopt", tenant).await?;
    transaction.commit().await?;
    tracing::info!(tenant_id = %tenant, slug = %adoption.slug, database = %database, "tenant database adopted");
    Ok(adopted)
}
