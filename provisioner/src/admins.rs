//! Super-admins: creating one (the first comes from `tenantctl admin create`).

use catalog::audit::{Actor, Change};
use tenancy_core::password::hash_password;
use tenancy_core::{AdminId, Email};

use crate::error::{OpsError, OpsResult};

/// Hashes the password (off the async threads) and inserts the admin with its audit entry,
/// in one transaction. An e-mail that is taken is `409 admin_exists`.
pub async fn create(
    db: &sqlx::PgPool,
    email: &Email,
    password: &str,
    actor: &Actor,
) -> OpsResult<AdminId> {
    let owned = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&owned))
        .await
        .map_err(|error| OpsError::Internal(anyhow::Error::new(error).context("hash a password")))?
        .map_err(|error| OpsError::Internal(anyhow::anyhow!("hash a password: {error}")))?;
    let mut transaction = db.begin().await?;
    let id = match catalog::admins::create(&mut *transaction, email, &hash).await {
        Ok(id) => id,
        Err(sqlx::Error::Database(error))
            if error.constraint() == Some("admin_users_email_key") =>
        {
            return Err(OpsError::conflict(
                "admin_exists",
                format!("a super-admin with e-mail {email} exists already"),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "admin.create",
            entity_type: "admin",
            entity_id: &id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "id": id, "email": email })),
        },
    )
    .await?;
    transaction.commit().await?;
    Ok(id)
}
