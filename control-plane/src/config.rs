//! Configuration: every option has a `TENANCY_` environment variable; cross-field checks
//! happen in [`Config::load_signing_key`] and friends at start-up, with clear messages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use tenancy_core::sealing::Sealer;
use tenancy_core::secret::{load_secret, parse_secret};
use tenancy_core::token::TokenKey;

/// The control plane: super-admin API over the catalog database.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "TENANCY_CONTROL_PLANE_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub catalog: catalog::CatalogArgs,

    /// Connections the control plane keeps to the catalog.
    #[arg(long, env = "TENANCY_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens.
    #[arg(long, env = "TENANCY_JWT_SIGNING_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_signing_key: Option<SecretString>,

    /// File holding the signing key, instead of `--jwt-signing-key`.
    #[arg(long, env = "TENANCY_JWT_SIGNING_KEY_FILE")]
    pub jwt_signing_key_file: Option<PathBuf>,

    /// The `iss` claim of the tokens this control plane signs and accepts.
    #[arg(
        long,
        env = "TENANCY_JWT_ISSUER",
        default_value = "tenancy-control-plane"
    )]
    pub jwt_issuer: String,

    /// How long a deleted tenant's database is kept before it is dropped (`0s`: at once).
    #[arg(long, env = "TENANCY_DELETE_GRACE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub delete_grace: Duration,

    /// Databases each server keeps cloned from its template ahead of demand; a new tenant
    /// takes one by renaming it (0: always clone on demand).
    #[arg(long, env = "TENANCY_WARM_POOL_SIZE", default_value_t = 2)]
    pub warm_pool_size: u32,

    /// How often the background jobs run (resume interrupted provisioning, drop deleted
    /// tenants after their grace period, suspend expired trials, sweep orphans).
    #[arg(long, env = "TENANCY_JOBS_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub jobs_interval: Duration,

    /// How often every tenant database's size is sampled (for storage limits, the portal
    /// and usage). Each sample walks the database's files on its server (≈ 1.5 ms per
    /// database): with thousands of databases per server, every job round would be too
    /// often. At least the jobs interval.
    #[arg(long, env = "TENANCY_STORAGE_SAMPLE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub storage_sample_interval: Duration,

    /// Test-only fault injection: abort the process right after this provisioning step.
    #[arg(long, env = "TENANCY_FAULT_AFTER_STEP", hide = true)]
    pub fault_after_step: Option<String>,

    /// Lifetime of a super-admin access token (e.g. `15m`, `1h`).
    #[arg(long, env = "TENANCY_ADMIN_TOKEN_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub admin_token_ttl: Duration,

    /// A directory of tenant schema migrations (`V<n>__<name>.sql`) to use instead of the
    /// ones built into this binary; it must start with the built-in steps, unchanged.
    /// `tenantctl migrate` must be given the same.
    #[arg(long, env = "TENANCY_TENANT_MIGRATIONS")]
    pub tenant_migrations: Option<PathBuf>,

    #[command(flatten)]
    pub s3: crate::backups::S3Args,

    /// Whether the background jobs back up every active and suspended tenant (as often as
    /// its plan's `backup_interval_hours` says) and apply the plans' retention. Needs
    /// TENANCY_S3_BUCKET.
    #[arg(long, env = "TENANCY_SCHEDULED_BACKUPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub scheduled_backups: bool,

    #[command(flatten)]
    pub sweep: SweepArgs,

    #[command(flatten)]
    pub connections: tenancy_http::ConnectionArgs,

    /// How long a restore keeps the database it replaced (renamed, nobody may connect)
    /// before the jobs drop it.
    #[arg(long, env = "TENANCY_RESTORE_KEEP", default_value = "24h", value_parser = humantime::parse_duration)]
    pub restore_keep: Duration,
}

pub use provisioner::sweep::SweepArgs;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Catalog(#[from] catalog::CatalogArgsError),
    #[error(
        "no JWT signing key: set TENANCY_JWT_SIGNING_KEY or TENANCY_JWT_SIGNING_KEY_FILE \
         (generate one with `openssl genpkey -algorithm ed25519`)"
    )]
    NoSigningKey,
    #[error("{0}")]
    Secret(#[from] tenancy_core::secret::SecretError),
    #[error("the JWT signing key: {0}")]
    Key(#[from] tenancy_core::token::KeyError),
    #[error("TENANCY_JOBS_INTERVAL must be between 100ms and 1 hour")]
    JobsInterval,
    #[error("TENANCY_STORAGE_SAMPLE_INTERVAL must be between 100ms and 24 hours")]
    StorageSampleInterval,
    #[error("TENANCY_ADMIN_TOKEN_TTL must be between 1 minute and 24 hours")]
    TokenTtl,
    #[error("TENANCY_JWT_ISSUER must not be empty")]
    Issuer,
    #[error("TENANCY_TENANT_MIGRATIONS: {0}")]
    Migrations(#[from] tenant_schema::SetError),
}

impl Config {
    pub fn database_options(&self) -> Result<PgConnectOptions, ConfigError> {
        Ok(self.catalog.connect_options()?)
    }

    pub fn load_signing_key(&self) -> Result<TokenKey, ConfigError> {
        let pem = load_secret(
            "the JWT signing key",
            self.jwt_signing_key.clone(),
            self.jwt_signing_key_file.as_deref(),
        )?
        .ok_or(ConfigError::NoSigningKey)?;
        Ok(TokenKey::from_pem(&pem)?)
    }

    pub fn load_catalog_key(&self) -> Result<Sealer, ConfigError> {
        Ok(self.catalog.sealer()?)
    }

    pub fn sweep_settings(&self) -> crate::sweep::SweepSettings {
        self.sweep.settings()
    }

    /// The tenant migrations: the configured directory, or the built-in ones.
    pub fn tenant_migrations(&self) -> Result<tenant_schema::MigrationSet, ConfigError> {
        Ok(tenant_schema::MigrationSet::load(
            self.tenant_migrations.as_deref(),
        )?)
    }

    /// Checks that need several fields or more than a parse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.admin_token_ttl)
        {
            return Err(ConfigError::TokenTtl);
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.jobs_interval) {
            return Err(ConfigError::JobsInterval);
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(86_400))
            .contains(&self.storage_sample_interval)
        {
            return Err(ConfigError::StorageSampleInterval);
        }
        if self.jwt_issuer.trim().is_empty() {
            return Err(ConfigError::Issuer);
        }
        Ok(())
    }
}
