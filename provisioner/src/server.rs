//! How to reach a database server as its admin role.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, NoTls};

use crate::ProvisionError;

/// A server's address and the admin role the provisioner acts as. The admin needs
/// `CREATEDB` and `CREATEROLE` (a superuser is simplest).
#[derive(Clone)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: SecretString,
}

impl std::fmt::Debug for ServerAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerAddress")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_user", &self.admin_user)
            .finish_non_exhaustive()
    }
}

impl ServerAddress {
    /// Connects to `database` as the admin role.
    pub async fn connect(&self, database: &str) -> Result<Client, ProvisionError> {
        connect(
            &self.host,
            self.port,
            &self.admin_user,
            &self.admin_password,
            database,
        )
        .await
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How long a connection (TCP, TLS-less startup and authentication) may take: a server that
/// accepts and then says nothing must not hold a caller forever.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Connects with a password, within [`CONNECT_WITHIN`]; the connection is driven by a task
/// of its own.
pub async fn connect(
    host: &str,
    port: u16,
    user: &str,
    password: &SecretString,
    database: &str,
) -> Result<Client, ProvisionError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(user)
        .password(password.expose_secret())
        .dbname(database)
        .application_name("tenancy-provisioner")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = tokio::time::timeout(CONNECT_WITHIN, config.connect(NoTls))
        .await
        .map_err(|_| ProvisionError::ConnectTimeout {
            server: format!("{host}:{port}"),
            user: user.to_owned(),
            seconds: CONNECT_WITHIN.as_secs(),
        })?
        .map_err(|source| ProvisionError::Connect {
            server: format!("{host}:{port}"),
            user: user.to_owned(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "provisioner connection ended");
        }
    });
    Ok(client)
}
