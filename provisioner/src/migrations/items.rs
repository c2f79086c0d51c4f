//! One database of a run: a tenant, a template or a warm-pool database, migrated and its
//! outcome written to the ledger.

use std::time::Instant;

use crate::ServerAddress;
use catalog::fleet::{EntryOutcome, Kind};

use super::PlanItem;
use super::run::{Context, ItemResult, RunError, elapsed_ms};
use crate::error::OpsError;

pub(super) fn item_result(item: &PlanItem, started: Instant) -> ItemResult {
    ItemResult {
        kind: item.kind,
        slug: item.slug.clone(),
        server: item.server.clone(),
        database: item.database.clone(),
        from_version: item.from_version,
        to_version: None,
        applied_steps: 0,
        succeeded: false,
        error: None,
        elapsed_ms: elapsed_ms(started),
    }
}

/// Records the start of `item` in the ledger (for a tenant, with its mark) and migrates
/// its live database; the result says how it went.
async fn begin_and_migrate(
    context: &Context,
    address: &ServerAddress,
    item: &PlanItem,
    kind: Kind,
    started: Instant,
) -> Result<(i64, ItemResult), RunError> {
    let entry = catalog::fleet::begin_entry(
        &context.platform.db,
        context.run_id,
        kind,
        item.server_id,
        &item.database,
        item.from_version,
    )
    .await?;
    let migrated = crate::template::migrate_live_database(
        address,
        &item.database,
        &context.platform.settings.migrations,
        context.lock_timeout,
    )
    .await;
    let mut result = item_result(item, started);
    match migrated {
        Ok(migrated) => {
            result.succeeded = true;
            result.to_version = migrated.version;
            result.applied_steps = migrated.applied_steps;
        }
        Err(error) => result.error = Some(error.to_string()),
    }
    Ok((entry, result))
}

fn entry_outcome(result: &ItemResult) -> EntryOutcome {
    match &result.error {
        None => EntryOutcome::Succeeded {
            version: result.to_version,
        },
        Some(error) => EntryOutcome::Failed {
            error: error.clone(),
        },
    }
}

/// One tenant: mark it migrating (routers answer 503 `tenant_migrating`), apply its steps
/// in one transaction, record the version its database now reports and lift the mark.
pub(super) async fn migrate_tenant(
    context: &Context,
    address: &ServerAddress,
    item: &PlanItem,
) -> Result<ItemResult, RunError> {
    let started = Instant::now();
    let tenant_id = item.tenant_id.ok_or_else(|| {
        RunError::Api(OpsError::Internal(anyhow::anyhow!(
            "a tenant item without id"
        )))
    })?;
    let kind = Kind::Tenant(tenant_id);
    let (entry, mut result) = begin_and_migrate(context, address, item, kind, started).await?;
    if let Some(error) = &result.error {
        tracing::warn!(run = %context.run_id, tenant = ?item.slug, %error, "tenant migration failed");
    }
    catalog::fleet::finish_entry(&context.platform.db, entry, kind, &entry_outcome(&result))
        .await?;
    result.elapsed_ms = elapsed_ms(started);
    Ok(result)
}

pub(super) async fn migrate_template(
    context: &Context,
    address: &ServerAddress,
    item: &PlanItem,
) -> Result<ItemResult, RunError> {
    let started = Instant::now();
    let db = &context.platform.db;
    let entry = catalog::fleet::begin_entry(
        db,
        context.run_id,
        Kind::Template,
        item.server_id,
        &item.database,
        item.from_version,
    )
    .await?;
    // Under the template lock: no tenant is cloned from a template halfway migrated.
    let prepared =
        crate::template::prepare_server(address, &context.platform.settings.migrations).await;
    let mut result = item_result(item, started);
    match prepared {
        Ok(prepared) => {
            catalog::servers::set_schema_version(db, item.server_id, prepared.schema_version)
                .await?;
            result.succeeded = true;
            result.to_version = Some(prepared.schema_version);
            result.applied_steps = prepared.applied_steps;
        }
        Err(error) => {
            tracing::error!(run = %context.run_id, server = %item.server, %error, "template migration failed");
            result.error = Some(error.to_string());
        }
    }
    catalog::fleet::finish_entry(db, entry, Kind::Template, &entry_outcome(&result)).await?;
    result.elapsed_ms = elapsed_ms(started);
    Ok(result)
}

/// A warm database is migrated while its catalog row is locked, so no provisioning adopts
/// it halfway; one being adopted right now is skipped (None). One that fails is dropped:
/// the pool refills from the migrated template.
pub(super) async fn migrate_warm(
    context: &Context,
    address: &ServerAddress,
    item: &PlanItem,
) -> Result<Option<ItemResult>, RunError> {
    let started = Instant::now();
    let db = &context.platform.db;
    let mut transaction = db.begin().await?;
    if catalog::warm::lock_for_migration(&mut *transaction, &item.database)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let (entry, mut result) =
        begin_and_migrate(context, address, item, Kind::Warm, started).await?;
    if result.succeeded {
        let version = result.to_version.unwrap_or_default();
        catalog::warm::set_schema_version(&mut *transaction, &item.database, version).await?;
    } else if let Some(name) = crate::DatabaseName::parse(&item.database) {
        let dropped = match address.connect("postgres").await {
            Ok(admin) => {
                crate::tenant::drop_database(&admin, &name, context.platform.installation).await
            }
            Err(error) => Err(error),
        };
        match dropped {
            Ok(()) => {
                catalog::warm::forget(&mut *transaction, &item.database).await?;
                if let Some(error) = &mut result.error {
                    error.push_str("; the warm database was dropped");
                }
            }
            Err(error) => {
                tracing::warn!(database = %item.database, %error, "drop a warm database that failed to migrate");
            }
        }
    }
    transaction.commit().await?;
    catalog::fleet::finish_entry(db, entry, Kind::Warm, &entry_outcome(&result)).await?;
    result.elapsed_ms = elapsed_ms(started);
    Ok(Some(result))
}
