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

    /// Tenants the directory keeps at most (the least recently used are forgotten first).
    #[arg(long, env = "TENANCY_DIRECTORY_CAPACITY", default_value_t = 100_000)]
    pub directory_capacity: usize,

    /// The busiest tenants (by requests in the last hours) given a connection when the router
    /// starts, at most half of each server's budget; 0: none.
    #[arg(long, env = "TENANCY_PREWARM_TENANTS", default_value_t = 200)]
    pub prewarm_tenants: usize,

    /// How long "no such tenant" is remembered.
    #[arg(long, env = "TENANCY_DIRECTORY_NEGATIVE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub directory_negative_ttl: Duration,

    /// New connections this router opens per second to one database server at most (a
    /// second's worth may come at once): a cold start or a stampede of cold tenants does
    /// not fork the server's postmaster to its knees.
    #[arg(long, env = "TENANCY_SERVER_OPENS_PER_SECOND", default_value_t = 200)]
    pub server_opens_per_second: u32,

    /// Connections this router opens at once to one database server at most; more wait
    /// their turn first come, first served (within the bounded wait). A server forks and
    /// starts its backends one after the other: opening more at once only makes each take
    /// longer and their order random.
    #[arg(long, env = "TENANCY_SERVER_OPENS_AT_ONCE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub server_opens_at_once: u32,

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

    /// End-user sign-in: the router's own token keys, lifetimes, brute-force lockout.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Live events (`GET /v1/events`).
    #[command(flatten)]
    pub events: EventsArgs,

    /// Test-only fault injection: every directory read of the catalog takes this longer.
    #[arg(long, env = "TENANCY_FAULT_DIRECTORY_DELAY", hide = true, value_parser = humantime::parse_duration)]
    pub fault_directory_delay: Option<Duration>,
}

/// End-user sign-in. The router signs its users' tokens with keys of its own (never the
/// control plane's), for an audience of their own.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Private keys (Ed25519, PKCS#8 PEM, one or more concatenated) for user tokens. The
    /// first signs; every one is accepted. To rotate: add the new key second, then move it
    /// first, then drop the old one an access-token lifetime later.
    #[arg(long, env = "TENANCY_ROUTER_SIGNING_KEYS", value_parser = parse_secret, hide_env_values = true)]
    pub signing_keys: Option<SecretString>,

    /// File holding the user-token private keys.
    #[arg(long, env = "TENANCY_ROUTER_SIGNING_KEYS_FILE")]
    pub signing_keys_file: Option<PathBuf>,

    /// The `iss` of user tokens.
    #[arg(long, env = "TENANCY_ROUTER_ISSUER", default_value = "tenancy-router")]
    pub issuer: String,

    /// Sign-in names its tenant by the first label of a host under this domain (say
    /// `example.com`: `acme.example.com` is the tenant `acme`), or by `X-Tenant`.
    #[arg(long, env = "TENANCY_ROUTER_BASE_DOMAIN")]
    pub base_domain: Option<String>,

    /// Verified tokens remembered (by their SHA-256, until their `exp`), so a token seen
    /// before skips the signature check.
    #[arg(long, env = "TENANCY_TOKEN_CACHE_CAPACITY", default_value_t = 100_000)]
    pub token_cache_capacity: usize,

    /// Lifetime of an access token.
    #[arg(long, env = "TENANCY_ACCESS_TOKEN_TTL", default_value = "60m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,

    /// Lifetime of a refresh token (each refresh issues a new one).
    #[arg(long, env = "TENANCY_REFRESH_TOKEN_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,

    /// A refresh token presented again within this time of its rotation (a client retrying
    /// a lost response) gets a new one; later, the whole session is revoked.
    #[arg(long, env = "TENANCY_REFRESH_REUSE_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub refresh_reuse_grace: Duration,

    /// Failed sign-ins of one e-mail within the window that lock it.
    #[arg(long, env = "TENANCY_LOGIN_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub login_max_failures: u32,

    /// The window in which failed sign-ins are counted.
    #[arg(long, env = "TENANCY_LOGIN_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub login_window: Duration,

    /// How long a locked e-mail stays locked.
    #[arg(long, env = "TENANCY_LOGIN_LOCKOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub login_lockout: Duration,

    /// Password checks (argon2id) at once; default: one per core.
    #[arg(long, env = "TENANCY_PASSWORD_CHECKS")]
    pub password_checks: Option<usize>,
}

impl AuthArgs {
    /// The defaults, with these keys.
    pub fn with_keys(signing_keys: SecretString) -> Self {
        Self {
            signing_keys: Some(signing_keys),
            signing_keys_file: None,
            issuer: "tenancy-router".to_owned(),
            base_domain: None,
            token_cache_capacity: 100_000,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(7 * 86_400),
            refresh_reuse_grace: Duration::from_secs(5),
            login_max_failures: 5,
            login_window: Duration::from_secs(300),
            login_lockout: Duration::from_secs(300),
            password_checks: None,
        }
    }

    /// The PEM blocks of the signing keys, the signing one first.
    pub fn signing_keys(&self) -> Result<Vec<SecretString>, ConfigError> {
        let bundle = load_secret(
            "the user-token signing keys",
            self.signing_keys.clone(),
            self.signing_keys_file.as_deref(),
        )?
        .ok_or(ConfigError::NoSigningKeys)?;
        let blocks =
            pem_blocks(bundle.expose_secret(), "PRIVATE KEY").map_err(ConfigError::SigningKeys)?;
        Ok(blocks.into_iter().map(SecretString::from).collect())
    }
}

/// Live events.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// A comment line is sent this often on an idle stream, so proxies keep it open.
    #[arg(long, env = "TENANCY_EVENTS_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub events_heartbeat: Duration,

    /// Events kept per tenant for clients that reconnect with `Last-Event-ID`.
    #[arg(long, env = "TENANCY_EVENTS_REPLAY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub events_replay: u32,

    /// Connected clients at most, over all tenants; beyond, `503`.
    #[arg(long, env = "TENANCY_EVENTS_MAX_CLIENTS", default_value_t = 10_000)]
    pub events_max_clients: usize,

    /// Lifetime of a single-use events ticket.
    #[arg(long, env = "TENANCY_EVENTS_TICKET_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub events_ticket_ttl: Duration,
}

impl Default for EventsArgs {
    fn default() -> Self {
        Self {
            events_heartbeat: Duration::from_secs(15),
            events_replay: 256,
            events_max_clients: 10_000,
            events_ticket_ttl: Duration::from_secs(30),
        }
    }
}

/// The PEM blocks labelled `label` in `text`.
fn pem_blocks(text: &str, label: &str) -> Result<Vec<String>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let length = rest[start..]
            .find(&end)
            .ok_or_else(|| "a PEM block is not closed".to_owned())?;
        blocks.push(rest[start..start + length + end.len()].to_owned());
        rest = &rest[start + length + end.len()..];
    }
    if blocks.is_empty() {
        return Err(format!("no `BEGIN {label}` block"));
    }
    Ok(blocks)
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
    #[error(
        "no user-token keys: set TENANCY_ROUTER_SIGNING_KEYS or TENANCY_ROUTER_SIGNING_KEYS_FILE (Ed25519 private keys, PEM: `openssl genpkey -algorithm ed25519`)"
    )]
    NoSigningKeys,
    #[error("TENANCY_ROUTER_SIGNING_KEYS: {0}")]
    SigningKeys(String),
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
        pem_blocks(bundle.expose_secret(), "PUBLIC KEY").map_err(ConfigError::PublicKeys)
    }

    pub fn database_options(&self) -> Result<sqlx::postgres::PgConnectOptions, ConfigError> {
        Ok(self.catalog.connect_options()?)
    }
}
