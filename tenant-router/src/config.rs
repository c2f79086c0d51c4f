//! The router's configuration: every option has a `TENANCY_` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tenancy_core::sealing::Sealer;
use tenancy_core::secret::{load_secret, parse_secret};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TENANCY_ROUTER_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// The catalog (read, LISTEN, and usage counts) and the key that opens tenant role
    /// passwords.
    #[command(flatten)]
    pub catalog: catalog::CatalogArgs,

    /// Public keys (PEM, one or more, concatenated) whose tokens are accepted; two during a
    /// key rotation.
    #[arg(long, env = "TENANCY_JWT_PUBLIC_KEYS", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_public_keys: Option<SecretString>,

    /// File holding the public keys.
    #[arg(long, env = "TENANCY_JWT_PUBLIC_KEYS_FILE")]
    pub jwt_public_keys_file: Option<PathBuf>,

    /// The `iss` tenant tokens must carry.
    #[arg(
        long,
        env = "TENANCY_JWT_ISSUER",
        default_value = "tenancy-control-plane"
    )]
    pub jwt_issuer: String,

    /// How long a directory entry is trusted without a change notification.
    #[arg(long, env = "TENANCY_DIRECTORY_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub directory_ttl: Duration,

    /// How long "no such tenant" is remembered.
    #[arg(long, env = "TENANCY_DIRECTORY_NEGATIVE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub directory_negative_ttl: Duration,

    /// How long a request waits for a connection before 503 `pool_timeout`.
    #[arg(long, env = "TENANCY_POOL_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub pool_wait: Duration,

    /// Longest a request may take; then `503 timeout`.
    #[arg(long, env = "TENANCY_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// A tenant pool unused this long is closed.
    #[arg(long, env = "TENANCY_POOL_IDLE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub pool_idle: Duration,

    /// How often request counts are added to the catalog's usage figures.
    #[arg(long, env = "TENANCY_USAGE_FLUSH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub usage_flush: Duration,

    #[command(flatten)]
    pub connections: tenancy_http::ConnectionArgs,

    /// Test-only fault injection: every directory read of the catalog takes this longer.
    #[arg(long, env = "TENANCY_FAULT_DIRECTORY_DELAY", hide = true, value_parser = humantime::parse_duration)]
    pub fault_directory_delay: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Secret(#[from] tenancy_core::secret::SecretError),
    #[error("{0}")]
    Catalog(#[from] catalog::CatalogArgsError),
    #[error(
        "no token keys: set TENANCY_JWT_PUBLIC_KEYS or TENANCY_JWT_PUBLIC_KEYS_FILE (the control plane's public key, PEM)"
    )]
    NoPublicKeys,
    #[error("TENANCY_JWT_PUBLIC_KEYS: {0}")]
    PublicKeys(String),
}

impl Config {
    pub fn sealer(&self) -> Result<Sealer, ConfigError> {
        Ok(self.catalog.sealer()?)
    }

    /// The PEM blocks of the accepted public keys.
    pub fn public_keys(&self) -> Result<Vec<String>, ConfigError> {
        let bundle = load_secret(
            "the token public keys",
            self.jwt_public_keys.clone(),
            self.jwt_public_keys_file.as_deref(),
        )?
        .ok_or(ConfigError::NoPublicKeys)?;
        let text = bundle.expose_secret();
        let mut keys = Vec::new();
        let mut rest: &str = text;
        while let Some(start) = rest.find("-----BEGIN PUBLIC KEY-----") {
            let end_marker = "-----END PUBLIC KEY-----";
            let end = rest[start..]
                .find(end_marker)
                .ok_or_else(|| ConfigError::PublicKeys("a PEM block is not closed".to_owned()))?;
            keys.push(rest[start..start + end + end_marker.len()].to_owned());
            rest = &rest[start + end + end_marker.len()..];
        }
        if keys.is_empty() {
            return Err(ConfigError::PublicKeys(
                "no `BEGIN PUBLIC KEY` block".to_owned(),
            ));
        }
        Ok(keys)
    }

    pub fn database_options(&self) -> Result<sqlx::postgres::PgConnectOptions, ConfigError> {
        Ok(self.catalog.connect_options()?)
    }
}
