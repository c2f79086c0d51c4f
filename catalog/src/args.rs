//! Where the catalog is and the key that seals passwords in it: one set of options
//! (`TENANCY_DATABASE_URL`, `TENANCY_CATALOG_KEY` or `TENANCY_CATALOG_KEY_FILE`) for the
//! control plane, the router and `tenantctl`.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use tenancy_core::sealing::Sealer;
use tenancy_core::secret::{load_secret, parse_secret};

#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// Catalog database URL (postgres://user:password@host:port/database).
    #[arg(long, env = "TENANCY_DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: SecretString,

    /// The catalog key (32 bytes, base64) that seals tenant and server passwords in the
    /// catalog. Losing it makes those passwords unreadable.
    #[arg(long, env = "TENANCY_CATALOG_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub catalog_key: Option<SecretString>,

    /// File holding the catalog key, instead of `--catalog-key`.
    #[arg(long, env = "TENANCY_CATALOG_KEY_FILE")]
    pub catalog_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogArgsError {
    #[error("TENANCY_DATABASE_URL is not a valid PostgreSQL URL")]
    DatabaseUrl,
    #[error(
        "no catalog key: set TENANCY_CATALOG_KEY or TENANCY_CATALOG_KEY_FILE \
         (generate one with `openssl rand -base64 32`)"
    )]
    NoCatalogKey,
    #[error("{0}")]
    Secret(#[from] tenancy_core::secret::SecretError),
    #[error("the catalog key: {0}")]
    CatalogKey(#[from] tenancy_core::sealing::SealError),
}

impl CatalogArgs {
    /// The connection options (they carry the password: never log them).
    pub fn connect_options(&self) -> Result<PgConnectOptions, CatalogArgsError> {
        self.database_url
            .expose_secret()
            .parse()
            .map_err(|_| CatalogArgsError::DatabaseUrl)
    }

    /// The catalog key, from the variable or the file.
    pub fn sealer(&self) -> Result<Sealer, CatalogArgsError> {
        let key = load_secret(
            "the catalog key",
            self.catalog_key.clone(),
            self.catalog_key_file.as_deref(),
        )?
        .ok_or(CatalogArgsError::NoCatalogKey)?;
        Ok(Sealer::from_base64(&key)?)
    }
}
