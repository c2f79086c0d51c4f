//! Database servers: registering one (after checking it can be reached and preparing it for
//! tenants), listing them, and opening their admin credentials for the provisioner.

use crate::ServerAddress;
use catalog::audit::{Actor, Change};
use catalog::plans::FieldError;
use catalog::servers::{NewServer, Server};
use secrecy::SecretString;
use tenancy_core::ServerId;

use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

/// A server to register, as given by an operator.
#[derive(Debug, Clone)]
pub struct NewServerRequest {
    pub name: String,
    pub host: String,
    pub port: i64,
    pub admin_user: String,
    pub admin_password: SecretString,
    pub max_tenants: i64,
    pub connection_budget: i64,
}

fn check(request: &NewServerRequest) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = request.name.as_bytes();
    let name_ok = (1..=63).contains(&name.len())
        && name[0].is_ascii_lowercase()
        && name
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !name_ok {
        errors.push(FieldError::new(
            "name",
            "1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
        ));
    }
    let host_ok = (1..=253).contains(&request.host.len())
        && request
            .host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:_[]".contains(c));
    if !host_ok {
        errors.push(FieldError::new("host", "a host name or IP address"));
    }
    if !(1..=65535).contains(&request.port) {
        errors.push(FieldError::new("port", "must be between 1 and 65535"));
    }
    if request.admin_user.is_empty() || request.admin_user.len() > 63 {
        errors.push(FieldError::new("admin_user", "1 to 63 characters"));
    }
    if !(1..=100_000).contains(&request.max_tenants) {
        errors.push(FieldError::new(
            "max_tenants",
            "must be between 1 and 100000",
        ));
    }
    if !(1..=100_000).contains(&request.connection_budget) {
        errors.push(FieldError::new(
            "connection_budget",
            "must be between 1 and 100000",
        ));
    }
    errors
}

/// A change to a server's capacity; what is absent stays.
#[derive(Debug, Clone, Default)]
pub struct CapacityChange {
    pub max_tenants: Option<i64>,
    pub connection_budget: Option<i64>,
}

/// Changes a server's maximum of tenants and the connection budget the routers share on it.
/// Routers apply a new budget at once, without a restart (they hear of it from the catalog):
/// a smaller one closes idle connections and opens none until they fit. A maximum below
/// the tenants already there only stops placement (nothing moves).
pub async fn set_capacity(
    platform: &Platform,
    actor: &Actor,
    name: &str,
    change: CapacityChange,
) -> OpsResult<Server> {
    let mut errors = Vec::new();
    if change
        .max_tenants
        .is_some_and(|value| !(1..=100_000).contains(&value))
    {
        errors.push(FieldError::new(
            "max_tenants",
            "must be between 1 and 100000",
        ));
    }
    if change
        .connection_budget
        .is_some_and(|value| !(1..=100_000).contains(&value))
    {
        errors.push(FieldError::new(
            "connection_budget",
            "must be between 1 and 100000",
        ));
    }
    if change.max_tenants.is_none() && change.connection_budget.is_none() {
        errors.push(FieldError::new(
            "connection_budget",
            "give max_tenants or connection_budget",
        ));
    }
    if !errors.is_empty() {
        return Err(OpsError::validation(errors));
    }
    let not_found = || OpsError::not_found("server_not_found", format!("no server named `{name}`"));
    let mut transaction = platform.db.begin().await?;
    let id = catalog::servers::lock_by_name(&mut *transaction, name)
        .await?
        .ok_or_else(not_found)?;
    let before = catalog::servers::get(&mut *transaction, id)
        .await?
        .ok_or_else(not_found)?;
    let max_tenants = change.max_tenants.map_or(before.max_tenants, |value| {
        i32::try_from(value).unwrap_or(i32::MAX)
    });
    let budget = change
        .connection_budget
        .map_or(before.connection_budget, |value| {
            i32::try_from(value).unwrap_or(i32::MAX)
        });
    if max_tenants == before.max_tenants && budget == before.connection_budget {
        return Ok(before);
    }
    catalog::servers::set_capacity(&mut *transaction, id, max_tenants, budget).await?;
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "server.update",
            entity_type: "server",
            entity_id: name,
            before: Some(serde_json::json!({
                "max_tenants": before.max_tenants,
                "connection_budget": before.connection_budget,
            })),
            after: Some(serde_json::json!({
                "max_tenants": max_tenants,
                "connection_budget": budget,
            })),
        },
    )
    .await?;
    let after = catalog::servers::get(&mut *transaction, id)
        .await?
        .ok_or_else(not_found)?;
    transaction.commit().await?;
    Ok(after)
}

/// Checks the server answers with the given credentials, prepares it for tenants (schema
/// owner role, closed maintenance databases, template database) and records it.
pub async fn register(
    platform: &Platform,
    actor: &Actor,
    request: NewServerRequest,
) -> OpsResult<Server> {
    let errors = check(&request);
    if !errors.is_empty() {
        return Err(OpsError::validation(errors));
    }
    let port = i32::try_from(request.port).unwrap_or_default();
    let address = ServerAddress {
        host: request.host.clone(),
        port: u16::try_from(request.port).unwrap_or_default(),
        admin_user: request.admin_user.clone(),
        admin_password: request.admin_password.clone(),
    };
    // A server is its cluster: whatever host name or address reaches it, a cluster that is
    // registered already is refused before anything is done to it.
    let identity = cluster_identity(&address).await?;
    if let Some(existing) = catalog::servers::by_system_identifier(&platform.db, &identity).await? {
        return Err(cluster_registered(&existing));
    }
    let prepared = crate::template::prepare_server(&address, &platform.settings.migrations)
        .await
        .map_err(|error| {
            tracing::warn!(server = %address.endpoint(), %error, "prepare a database server");
            OpsError::Validation {
                code: "server_unusable",
                detail: format!("the server cannot be prepared for tenants: {error}"),
                errors: Vec::new(),
            }
        })?;
    let id = ServerId::new();
    let sealed = platform
        .sealer
        .seal_secret(
            &catalog::servers::password_context(id),
            &request.admin_password,
        )
        .map_err(|error| {
            OpsError::Internal(anyhow::Error::new(error).context("seal a server password"))
        })?;
    let mut transaction = platform.db.begin().await?;
    catalog::servers::create(
        &mut *transaction,
        &NewServer {
            id,
            name: &request.name,
            host: &request.host,
            port,
            admin_user: &request.admin_user,
            sealed_password: &sealed,
            max_tenants: i32::try_from(request.max_tenants).unwrap_or(i32::MAX),
            connection_budget: i32::try_from(request.connection_budget).unwrap_or(i32::MAX),
            schema_version: prepared.schema_version,
            system_identifier: &identity,
        },
    )
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(database)
            if database.constraint() == Some("database_servers_name_key") =>
        {
            OpsError::conflict(
                "server_exists",
                format!("a server named `{}` exists", request.name),
            )
        }
        sqlx::Error::Database(database)
            if database.constraint() == Some("database_servers_system_identifier_key") =>
        {
            cluster_registered("another registration made at the same time")
        }
        _ => OpsError::from(error),
    })?;
    let server = catalog::servers::get(&mut *transaction, id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("the new server vanished")))?;
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "server.create",
            entity_type: "server",
            entity_id: &id.to_string(),
            before: None,
            after: Some(
                serde_json::to_value(crate::wire::Server::from(server.clone())).unwrap_or_default(),
            ),
        },
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(server = %request.name, schema_version = prepared.schema_version, "database server registered");
    Ok(server)
}

/// The cluster behind an address, read as the given admin (so the credentials are checked too).
async fn cluster_identity(address: &ServerAddress) -> OpsResult<String> {
    let unusable = |error: crate::ProvisionError| {
        tracing::warn!(server = %address.endpoint(), %error, "read a database server's identity");
        OpsError::Validation {
            code: "server_unusable",
            detail: format!("the server cannot be prepared for tenants: {error}"),
            errors: Vec::new(),
        }
    };
    let admin = address.connect("postgres").await.map_err(unusable)?;
    crate::mark::system_identifier(&admin)
        .await
        .map_err(unusable)
}

fn cluster_registered(existing: &str) -> OpsError {
    OpsError::conflict(
        "server_exists",
        format!(
            "this PostgreSQL cluster is registered already, as server `{existing}` (a cluster is registered once, whatever address reaches it)"
        ),
    )
}

/// The address and admin credentials of a server, opened with the catalog key.
pub async fn address(platform: &Platform, id: ServerId) -> OpsResult<ServerAddress> {
    let secret = catalog::servers::secret(&platform.db, id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("server {id} is not in the catalog")))?;
    to_address(platform, secret)
}

pub fn to_address(
    platform: &Platform,
    secret: catalog::servers::ServerSecret,
) -> OpsResult<ServerAddress> {
    let password = platform
        .sealer
        .open_secret(
            &catalog::servers::password_context(secret.id),
            &secret.admin_password,
        )
        .map_err(|error| {
            OpsError::Internal(anyhow::Error::new(error).context("open a server password"))
        })?;
    Ok(ServerAddress {
        host: secret.host,
        port: u16::try_from(secret.port).unwrap_or_default(),
        admin_user: secret.admin_user,
        admin_password: password,
    })
}
