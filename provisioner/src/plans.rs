//! Plans: changing one (validated, audited, applied to its tenants' roles). Shared by the
//! API's `PATCH /v1/plans/{name}` and the portal's plan form.

use catalog::audit::{Actor, Change};
use catalog::plans::{FieldError, Plan, PlanLimits};
use tenancy_core::PlanName;

use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

/// A display name's problem, if it has one.
pub fn check_display_name(name: &str) -> Option<FieldError> {
    let length = name.trim().chars().count();
    (!(1..=200).contains(&length))
        .then(|| FieldError::new("display_name", "must be 1 to 200 characters"))
}

/// Changes plan `name` to what `change` makes of it (its display name and limits), under
/// the plan's row lock. Unchanged, nothing is written; changed, the audit log has it before
/// and after, and new connection or statement limits are set on every tenant role of the
/// plan (in the background: the answer does not wait for every server).
pub async fn update(
    platform: &Platform,
    actor: &Actor,
    name: &str,
    change: impl FnOnce(&Plan) -> (String, PlanLimits),
) -> OpsResult<Plan> {
    let not_found = || OpsError::not_found("plan_not_found", format!("no plan named `{name}`"));
    let name: PlanName = name.parse().map_err(|_| not_found())?;
    let mut transaction = platform.db.begin().await?;
    let before = catalog::plans::get_for_update(&mut *transaction, &name)
        .await?
        .ok_or_else(not_found)?;
    let (display_name, limits) = change(&before);
    let mut errors = limits.check();
    errors.extend(check_display_name(&display_name));
    if !errors.is_empty() {
        return Err(OpsError::validation(errors));
    }
    if limits == before.limits && display_name.trim() == before.display_name {
        return Ok(before);
    }
    let after =
        catalog::plans::update(&mut *transaction, &name, display_name.trim(), &limits).await?;
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "plan.update",
            entity_type: "plan",
            entity_id: name.as_str(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        },
    )
    .await?;
    transaction.commit().await?;
    let database_limits_changed = before.limits.max_connections != after.limits.max_connections
        || before.limits.statement_timeout_ms != after.limits.statement_timeout_ms;
    if database_limits_changed {
        let background = platform.clone();
        let plan = after.name.clone();
        platform.spawn(async move {
            match crate::tenants::apply_plan_limits(&background, &plan).await {
                Ok(count) => {
                    tracing::info!(plan, tenants = count, "plan limits applied to tenant roles")
                }
                Err(error) => tracing::error!(plan, %error, "apply plan limits"),
            }
        });
    }
    Ok(after)
}

pub fn to_json(plan: &Plan) -> OpsResult<serde_json::Value> {
    serde_json::to_value(plan)
        .map_err(|error| OpsError::Internal(anyhow::Error::new(error).context("serialise a plan")))
}
