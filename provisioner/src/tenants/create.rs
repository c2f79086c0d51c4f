//! Creating a tenant: validate, reserve in the catalog (placement, slug, idempotency key),
//! then provision in a task of its own and answer once the tenant is routable.

use std::time::Duration;

use catalog::audit::Actor;
use catalog::plans::FieldError;
use catalog::tenants::{Reservation, Status, Tenant};
use sha2::{Digest, Sha256};
use tenancy_core::{AdminId, Email, PlanName, Slug, TenantId};

use super::provisioning::{self, Outcome};
use super::{check_name, load};
use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

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
    pub admin_id: AdminId,
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

fn request_hash(new: &NewTenant) -> Vec<u8> {
    // The password is left out: the hash is stored, and a fast hash of a password is not.
    let canonical = serde_json::json!([new.slug, new.name, new.plan, new.admin_email]);
    Sha256::digest(canonical.to_string().as_bytes()).to_vec()
}

/// Creates a tenant: records it (with a server chosen by headroom) before any database
/// object exists, then provisions it and answers once it is routable. Provisioning runs in
/// a task of its own, so a client that goes away does not interrupt it.
pub async fn create(
    platform: &Platform,
    actor: &Actor,
    new: NewTenant,
    idempotency: Option<IdempotencyKey>,
) -> OpsResult<Created> {
    let mut errors: Vec<FieldError> = check_name(&new.name).into_iter().collect();
    if let Err(error) =
        tenancy_core::password::check_new_password(&new.admin_password, new.admin_email.as_str())
    {
        errors.push(FieldError::new("admin_password", error.to_string()));
    }
    if !errors.is_empty() {
        return Err(OpsError::validation(errors));
    }
    let hash = request_hash(&new);
    if let Some(key) = &idempotency
        && let Some(replay) = replay(platform, key, &hash).await?
    {
        return Ok(replay);
    }
    let password = new.admin_password.clone();
    let password_hash = platform
        .hashes
        .enter()
        .await
        .map_err(|_| OpsError::busy())?
        .run(move || tenancy_core::password::hash_password(&password))
        .await
        .map_err(|error| OpsError::Internal(anyhow::Error::new(error).context("hash a password")))?
        .map_err(|error| {
            OpsError::Internal(anyhow::Error::new(error).context("hash a password"))
        })?;

    let id = TenantId::new();
    // The role's password is made when its role is (from the sealed copy).
    let (_, sealed) = super::new_role_password(platform, id)?;

    let mut transaction = platform.db.begin().await?;
    let plan = catalog::plans::get_for_update(&mut *transaction, &new.plan)
        .await?
        .ok_or_else(|| {
            OpsError::validation(vec![FieldError::new(
                "plan",
                format!("no plan named `{}`", new.plan),
            )])
        })?;
    let server_id = catalog::servers::lock_and_choose(&mut transaction)
        .await?
        .ok_or_else(|| OpsError::ServiceUnavailable {
            code: "no_capacity",
            detail: "no database server has room for another tenant; add a server".to_owned(),
        })?;
    let reserved = catalog::tenants::reserve(
        &mut *transaction,
        &Reservation {
            id,
            slug: new.slug.as_str(),
            name: new.name.trim(),
            plan: new.plan.as_str(),
            server_id,
            database_name: crate::DatabaseName::for_tenant(id).as_str(),
            app_role: crate::RoleName::for_tenant(id).as_str(),
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
            return retry_failed(
                platform,
                actor,
                &new,
                &password_hash,
                plan.limits.trial_days,
            )
            .await;
        }
        Err(error) => return Err(error.into()),
    }
    if let Some(key) = &idempotency {
        catalog::tenants::remember_idempotency_key(
            &mut *transaction,
            key.admin_id,
            &key.key,
            &hash,
            id,
        )
        .await?;
    }
    super::record_new(&mut transaction, actor, "tenant.create", id).await?;
    transaction.commit().await?;
    tracing::info!(tenant_id = %id, slug = %new.slug, "tenant reserved; provisioning");
    finish_provisioning(platform, id, Created::New).await
}

/// Provisions in a task of its own and waits for the outcome.
async fn finish_provisioning(
    platform: &Platform,
    id: TenantId,
    wrap: fn(Tenant) -> Created,
) -> OpsResult<Created> {
    let task = {
        let owned = platform.clone();
        platform.spawn(async move { provisioning::provision(&owned, id).await })
    };
    let outcome = task.await.map_err(|error| {
        OpsError::Internal(anyhow::Error::new(error).context("run provisioning"))
    })??;
    let tenant = match outcome {
        Outcome::Busy => wait_while_provisioning(platform, id).await?,
        Outcome::Active | Outcome::NotPending => load(platform, id).await?,
        Outcome::Failed(reason) => return Err(provisioning_failed(&reason)),
    };
    Ok(match tenant.status {
        Status::Provisioning => Created::Pending(tenant),
        // Another worker (the background job) provisioned it meanwhile, and failed.
        Status::Failed => return Err(provisioning_failed("in another worker")),
        _ => wrap(tenant),
    })
}

fn provisioning_failed(reason: &str) -> OpsError {
    OpsError::ServiceUnavailable {
        code: "provisioning_failed",
        detail: format!(
            "provisioning failed and was rolled back ({reason}); the tenant is `failed`: \
             send the same request again to retry"
        ),
    }
}

/// A request with a known Idempotency-Key: the tenant it made, or 422 if the key was used
/// for a different request.
async fn replay(
    platform: &Platform,
    key: &IdempotencyKey,
    hash: &[u8],
) -> OpsResult<Option<Created>> {
    let Some((tenant_id, stored_hash)) =
        catalog::tenants::idempotent_request(&platform.db, key.admin_id, &key.key).await?
    else {
        return Ok(None);
    };
    if stored_hash != hash {
        return Err(OpsError::Validation {
            code: "idempotency_key_reused",
            detail: "this Idempotency-Key was used for a different request".to_owned(),
            errors: Vec::new(),
        });
    }
    let tenant = load(platform, tenant_id).await?;
    if tenant.status == Status::Provisioning {
        return finish_provisioning(platform, tenant_id, Created::Replayed)
            .await
            .map(Some);
    }
    Ok(Some(Created::Replayed(tenant)))
}

/// A create of a slug that exists: a `failed` tenant is provisioned again with this
/// request's body (name, plan, first admin), never an earlier request's; anything else is a
/// conflict.
async fn retry_failed(
    platform: &Platform,
    actor: &Actor,
    new: &NewTenant,
    password_hash: &str,
    trial_days: Option<i32>,
) -> OpsResult<Created> {
    let slug = &new.slug;
    let mut transaction = platform.db.begin().await?;
    let existing = catalog::tenants::lock_by_slug(&mut *transaction, slug.as_str())
        .await?
        .ok_or_else(|| OpsError::conflict("tenant_exists", format!("a tenant `{slug}` exists")))?;
    if existing.status != Status::Failed {
        return Err(OpsError::conflict(
            "tenant_exists",
            format!("a tenant `{slug}` exists"),
        ));
    }
    catalog::tenants::reset_failed(
        &mut *transaction,
        existing.id,
        new.name.trim(),
        new.plan.as_str(),
        new.admin_email.as_str(),
        password_hash,
        trial_days,
    )
    .await?;
    let after = catalog::tenants::get(&mut *transaction, existing.id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("the tenant vanished")))?;
    super::audit(&mut transaction, actor, "tenant.retry", &existing, &after).await?;
    transaction.commit().await?;
    tracing::info!(tenant_id = %existing.id, "retrying a failed provisioning");
    finish_provisioning(platform, existing.id, Created::New).await
}

async fn wait_while_provisioning(platform: &Platform, id: TenantId) -> OpsResult<Tenant> {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER_WORKER;
    loop {
        let tenant = load(platform, id).await?;
        if tenant.status != Status::Provisioning || tokio::time::Instant::now() > deadline {
            return Ok(tenant);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
