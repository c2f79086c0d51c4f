//! Quarantine and release of objects of ours that the catalog does not know: closed (no
//! connections, no logins) with the time in their mark, and opened again.

use tokio_postgres::Client;

use crate::mark::{self, Mark};
use crate::names::{DatabaseName, RoleName};
use crate::{Context, ProvisionError};

/// Quarantines a database of ours: nobody may connect to it any more, and its mark says
/// since when. Reversed by [`release_database`].
pub async fn quarantine_database(
    admin: &Client,
    database: &DatabaseName,
    mark: Mark,
) -> Result<Mark, ProvisionError> {
    let quarantined = mark.quarantined(chrono::Utc::now());
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false; {}",
            database.ident(),
            mark::comment_on_database(database, &quarantined)
        ))
        .await
        .context("quarantine a database")?;
    Ok(quarantined)
}

/// Lifts a database's quarantine: connections are allowed again, its mark loses the time.
pub async fn release_database(
    admin: &Client,
    database: &DatabaseName,
    mark: Mark,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true; {}",
            database.ident(),
            mark::comment_on_database(database, &mark.released())
        ))
        .await
        .context("lift a database's quarantine")
}

/// Quarantines a tenant role of ours: it may not log in any more; its mark says since when.
pub async fn quarantine_role(
    admin: &Client,
    role: &RoleName,
    mark: Mark,
) -> Result<Mark, ProvisionError> {
    let quarantined = mark.quarantined(chrono::Utc::now());
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} NOLOGIN; {}",
            role.ident(),
            mark::comment_on_role(role, &quarantined)
        ))
        .await
        .context("quarantine a role")?;
    Ok(quarantined)
}

/// Lifts a tenant role's quarantine: it may log in again.
pub async fn release_role(
    admin: &Client,
    role: &RoleName,
    mark: Mark,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} LOGIN; {}",
            role.ident(),
            mark::comment_on_role(role, &mark.released())
        ))
        .await
        .context("lift a role's quarantine")
}
