//! `tenantctl dev`: the whole platform on this machine. An embedded PostgreSQL cluster and
//! S3 endpoint (unless `DATABASE_URL` / `TENANCY_S3_ENDPOINT` point elsewhere), the control
//! plane and the router, a super-admin, and a banner with URLs, credentials and curl lines.
//! Everything lives in one data directory; a second run reuses it. Ctrl-C stops it all.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tenancy_core::Email;
use tenancy_core::secret::parse_secret;
use tenancy_core::token::TokenKey;
use tenancy_infra::{EmbeddedPostgres, EmbeddedS3, PostgresOptions, S3Credentials};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod banner;

use banner::{Banner, print_banner, say};

/// The catalog database's name on the embedded server.
const CATALOG_DATABASE: &str = "tenancy_catalog";
/// The bucket backups go to.
const BACKUP_BUCKET: &str = "tenancy-backups";
const DEV_ADMIN_EMAIL: &str = "admin@example.com";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the embedded cluster, the S3 store, keys and credentials live.
    #[arg(long, env = "TENANCY_DEV_DATA_DIR", default_value = ".tenancy-dev")]
    data_dir: PathBuf,

    /// Port for the control plane (another free port is used when it is taken).
    #[arg(long, env = "TENANCY_DEV_CONTROL_PLANE_PORT", default_value_t = 8080)]
    control_plane_port: u16,

    /// Port for the tenant router (another free port is used when it is taken).
    #[arg(long, env = "TENANCY_DEV_ROUTER_PORT", default_value_t = 8081)]
    router_port: u16,

    /// Use this catalog database instead of the embedded cluster.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    database_url: Option<SecretString>,

    /// Use this S3 endpoint instead of the embedded one.
    #[arg(long, env = "TENANCY_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
}

/// What a run remembers for the next one. Kept in the data directory, readable only by
/// its owner: it holds development credentials.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DevState {
    admin_email: Option<String>,
    admin_password: Option<String>,
    s3_access_key: Option<String>,
    s3_secret_key: Option<String>,
    postgres_port: Option<u16>,
    s3_port: Option<u16>,
    demo_password: Option<String>,
    /// The demo tenant has its sample data.
    #[serde(default)]
    demo_seeded: bool,
}

impl DevState {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("dev-state.json")
    }

    fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?,
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => {
                Err(anyhow::Error::new(error).context(format!("read {}", path.display())))
            }
        }
    }

    fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        write_private(&Self::path(data_dir), &serde_json::to_string_pretty(self)?)
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restrict {}", path.display()))
}

fn random_secret(length: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = std::path::absolute(&args.data_dir).context("resolve the data directory")?;
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    // The server runs as the `postgres` user when we are root; it must be able to enter.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("set permissions of {}", data_dir.display()))?;
    let previous = DevState::load(&data_dir)?;
    let reused = previous.is_some();
    let mut state = previous.unwrap_or_default();

    let (postgres, catalog_url) = match args.database_url.clone() {
        Some(url) => (None, url),
        None => {
            let options = PostgresOptions {
                data_dir: data_dir.join("postgres"),
                port: state.postgres_port,
                port_is_preference: true,
                durable: true,
                max_connections: 200,
                settings: Vec::new(),
            };
            let postgres = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(options))
                .await
                .context("start the embedded PostgreSQL")??;
            state.postgres_port = Some(postgres.port());
            ensure_database(&postgres, CATALOG_DATABASE).await?;
            let url = SecretString::from(postgres.superuser_url(CATALOG_DATABASE));
            (Some(postgres), url)
        }
    };

    let (s3, s3_endpoint) = match args.s3_endpoint.clone() {
        Some(endpoint) => (None, endpoint),
        None => {
            let credentials = S3Credentials {
                access_key: state
                    .s3_access_key
                    .get_or_insert_with(|| format!("dev{}", random_secret(12)))
                    .clone(),
                secret_key: state
                    .s3_secret_key
                    .get_or_insert_with(|| random_secret(32))
                    .clone(),
            };
            let port = preferred_port(state.s3_port.unwrap_or(0));
            let s3 = EmbeddedS3::start(data_dir.join("s3"), port, credentials)
                .await
                .context("start the embedded S3 endpoint")?;
            s3.ensure_bucket(BACKUP_BUCKET).await?;
            state.s3_port = Some(s3.address().port());
            let endpoint = s3.endpoint();
            (Some(s3), endpoint)
        }
    };

    let signing_pem = signing_key(&data_dir.join("jwt-signing-key.pem"))?;
    let router_signing_pem = signing_key(&data_dir.join("router-signing-key.pem"))?;

    let catalog_key_path = data_dir.join("catalog-key");
    let catalog_key = match std::fs::read_to_string(&catalog_key_path) {
        Ok(key) => SecretString::from(key),
        Err(_) => {
            let key = tenancy_core::sealing::Sealer::generate_key();
            write_private(&catalog_key_path, key.expose_secret())?;
            key
        }
    };

    let config = control_plane::Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.control_plane_port)),
        catalog: catalog::CatalogArgs {
            database_url: catalog_url.clone(),
            catalog_key: Some(catalog_key),
            catalog_key_file: None,
        },
        database_max_connections: 10,
        jwt_signing_key: Some(signing_pem),
        jwt_signing_key_file: None,
        jwt_issuer: "tenancy-control-plane".to_owned(),
        delete_grace: Duration::ZERO,
        warm_pool_size: 2,
        jobs_interval: Duration::from_secs(10),
        storage_sample_interval: Duration::from_secs(60),
        fault_after_step: None,
        admin_token_ttl: Duration::from_secs(3600),
        tenant_migrations: None,
        scheduled_backups: true,
        sweep: provisioner::sweep::SweepArgs {
            mode: provisioner::sweep::SweepMode::Quarantine,
            quarantine: Duration::from_secs(7 * 86_400),
            min_age: Duration::from_secs(3_600),
        },
        restore_keep: Duration::from_secs(86_400),
        connections: dev_connections(),
        s3: control_plane::backups::S3Args {
            s3_bucket: Some(BACKUP_BUCKET.to_owned()),
            s3_endpoint: Some(s3_endpoint.clone()),
            s3_region: "us-east-1".to_owned(),
            s3_path_style: true,
            s3_access_key_id: s3.as_ref().map(|s3| s3.credentials().access_key.clone()),
            s3_secret_access_key: s3
                .as_ref()
                .map(|s3| SecretString::from(s3.credentials().secret_key.clone())),
        },
    };
    let app = control_plane::build_state(&config).await?;

    let admin_email: Email = state
        .admin_email
        .get_or_insert_with(|| DEV_ADMIN_EMAIL.to_owned())
        .parse()
        .map_err(|error: tenancy_core::IdError| anyhow::anyhow!(error.0))?;
    let admin_id = match catalog::admins::find_by_email(&app.platform.db, &admin_email).await? {
        Some(admin) => admin.id(),
        None => {
            let password = state
                .admin_password
                .get_or_insert_with(|| random_secret(20))
                .clone();
            crate::admin::create_admin(
                &app.platform.db,
                &admin_email,
                &password,
                &crate::admin::operator(),
            )
            .await?
        }
    };
    if let Some(postgres) = &postgres {
        ensure_embedded_server(&app.platform, postgres).await?;
    }
    let demo = ensure_demo_tenant(&app.platform, &mut state).await?;
    state.save(&data_dir)?;
    let jobs = control_plane::jobs::spawn(
        app.platform.clone(),
        app.metrics.clone(),
        config.jobs_interval,
        config.storage_sample_interval,
    );

    let control_listener = bind_preferred(args.control_plane_port).await?;
    let router_listener = bind_preferred(args.router_port).await?;
    let control_url = format!("http://{}", control_listener.local_addr()?);
    let router_url = format!("http://{}", router_listener.local_addr()?);
    let token = app.auth.mint(admin_id)?;
    let router_config = tenant_router::Config {
        listen: router_listener.local_addr()?,
        catalog: config.catalog.clone(),
        jwt_public_keys: Some(SecretString::from(app.auth.public_key_pem().to_owned())),
        jwt_public_keys_file: None,
        jwt_issuer: config.jwt_issuer.clone(),
        directory_ttl: Duration::from_secs(60),
        directory_capacity: 100_000,
        prewarm_tenants: 200,
        server_opens_per_second: 200,
        server_opens_at_once: 8,
        directory_negative_ttl: Duration::from_secs(2),
        pool_wait: Duration::from_secs(2),
        pool_idle: Duration::from_secs(300),
        request_timeout: Duration::from_secs(30),
        usage_flush: Duration::from_secs(10),
        fault_directory_delay: None,
        connections: dev_connections(),
        auth: tenant_router::config::AuthArgs::with_keys(router_signing_pem),
        events: tenant_router::config::EventsArgs::default(),
    };
    let tenant_router = tenant_router::build(&router_config).await?;
    let demo_token = match &demo {
        Some(demo) => Some(mint_demo_token(&app, demo.id)?),
        None => None,
    };

    let (stop, stopped) = watch::channel(false);
    let wait = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let control = tokio::spawn(control_plane::serve(
        control_listener,
        app,
        wait(stopped.clone()),
    ));
    let router = tokio::spawn(tenant_router::serve(
        router_listener,
        tenant_router.state.clone(),
        wait(stopped.clone()),
    ));

    print_banner(&Banner {
        data_dir: &data_dir,
        reused,
        control_url: &control_url,
        router_url: &router_url,
        catalog_url: postgres.as_ref().map(|_| catalog_url.expose_secret()),
        s3_endpoint: &s3_endpoint,
        s3_credentials: s3.as_ref().map(EmbeddedS3::credentials),
        admin_email: admin_email.as_str(),
        admin_password: state.admin_password.as_deref(),
        token: &token,
        demo: demo.as_ref(),
        demo_token: demo_token.as_deref(),
    });
    // The demo tenant gets its sample data once, through the router, while the platform
    // serves.
    let seeding = match (&demo_token, state.demo_seeded) {
        (Some(demo_token), false) => {
            let demo_token = SecretString::from(demo_token.clone());
            let router_url = router_url.clone();
            Some(tokio::spawn(async move {
                crate::seed::seed(&router_url, &demo_token, DEMO_DATA, 4, 2026).await
            }))
        }
        _ => None,
    };
    if let Some(seeding) = seeding {
        match seeding.await {
            Ok(Ok(seeded)) => {
                say(&format!(
                    "demo tenant seeded: {} customers, {} suppliers, {} products, {} purchase orders",
                    seeded.customers, seeded.suppliers, seeded.products, seeded.orders
                ));
                state.demo_seeded = true;
                state.save(&data_dir)?;
            }
            Ok(Err(error)) => tracing::warn!("seeding the demo tenant failed: {error:#}"),
            Err(error) => tracing::warn!(%error, "seeding the demo tenant failed"),
        }
    }

    tenancy_core::shutdown::signal().await;
    say("stopping...");
    jobs.stop();
    let _ = stop.send(true);
    for (name, server) in [("control plane", control), ("tenant router", router)] {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "{name} failed"),
            Err(error) => tracing::error!(%error, "{name} task failed"),
        }
    }
    if let Some(s3) = s3 {
        s3.stop().await;
    }
    if let Some(mut postgres) = postgres {
        tokio::task::spawn_blocking(move || postgres.stop())
            .await
            .context("stop the embedded PostgreSQL")??;
    }
    say(&format!("stopped; data kept in {}", data_dir.display()));
    Ok(())
}

/// Creates `name` on the embedded server unless it exists. The name is a constant of ours.
async fn ensure_database(postgres: &EmbeddedPostgres, name: &'static str) -> anyhow::Result<()> {
    let options: sqlx::postgres::PgConnectOptions = postgres
        .superuser_url("postgres")
        .parse()
        .context("build the maintenance connection")?;
    let mut connection = sqlx::ConnectOptions::connect(&options)
        .await
        .context("connect to the embedded PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut connection)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .with_context(|| format!("create the {name} database"))?;
    }
    Ok(())
}

/// `port` when it is free (or 0), else another free port.
fn preferred_port(port: u16) -> u16 {
    if port != 0 && std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
        port
    } else {
        0
    }
}

async fn bind_preferred(port: u16) -> anyhow::Result<TcpListener> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(listener) => Ok(listener),
        Err(error) => {
            tracing::warn!(port, %error, "port taken; using another");
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .context("listen on a loopback port")
        }
    }
}

/// The demo tenant's sample data.
const DEMO_DATA: crate::seed::Counts = crate::seed::Counts {
    customers: 25,
    suppliers: 10,
    products: 40,
    orders: 15,
};

/// A service token for the demo tenant with every scope, valid for a day.
fn mint_demo_token(
    app: &control_plane::AppState,
    tenant: tenancy_core::TenantId,
) -> anyhow::Result<String> {
    let claims = provisioner::tokens::service_claims(
        app.auth.issuer(),
        tenant,
        Some("service:dev"),
        tenancy_core::claims::SCOPES
            .iter()
            .map(|scope| (*scope).to_owned())
            .collect(),
        86_400,
    );
    Ok(app.auth.sign(&claims)?)
}

/// The demo tenant and its first admin's credentials.
pub(super) struct DemoTenant {
    id: tenancy_core::TenantId,
    slug: String,
    database: String,
    admin_email: String,
    admin_password: Option<String>,
}

/// Registers the embedded server as a database server for tenants, once.
async fn ensure_embedded_server(
    platform: &control_plane::Platform,
    postgres: &EmbeddedPostgres,
) -> anyhow::Result<()> {
    if catalog::servers::list(&platform.db)
        .await?
        .iter()
        .any(|server| server.name == "embedded")
    {
        return Ok(());
    }
    control_plane::servers::register(
        platform,
        &crate::admin::operator(),
        control_plane::servers::NewServerRequest {
            name: "embedded".to_owned(),
            host: postgres.host().to_owned(),
            port: i64::from(postgres.port()),
            admin_user: tenancy_infra::postgres::SUPERUSER.to_owned(),
            admin_password: SecretString::from(postgres.superuser_password().to_owned()),
            max_tenants: 1000,
            connection_budget: 150,
        },
    )
    .await
    .map_err(|error| anyhow::anyhow!("register the embedded server: {error}"))?;
    Ok(())
}

/// Creates the `demo` tenant on the first run.
async fn ensure_demo_tenant(
    platform: &control_plane::Platform,
    state: &mut DevState,
) -> anyhow::Result<Option<DemoTenant>> {
    const SLUG: &str = "demo";
    const EMAIL: &str = "owner@demo.example";
    if let Ok(tenant) = control_plane::tenants::get(platform, SLUG).await {
        return Ok(Some(DemoTenant {
            id: tenant.id,
            slug: tenant.slug,
            database: tenant.database_name.unwrap_or_default(),
            admin_email: EMAIL.to_owned(),
            admin_password: state.demo_password.clone(),
        }));
    }
    let password = state
        .demo_password
        .get_or_insert_with(|| random_secret(20))
        .clone();
    let created = control_plane::tenants::create(
        platform,
        &crate::admin::operator(),
        control_plane::tenants::NewTenant {
            slug: SLUG
                .parse()
                .map_err(|error: tenancy_core::IdError| anyhow::anyhow!(error.0))?,
            name: "Demo Company".to_owned(),
            plan: "trial"
                .parse()
                .map_err(|error: tenancy_core::IdError| anyhow::anyhow!(error.0))?,
            admin_email: EMAIL
                .parse()
                .map_err(|error: tenancy_core::IdError| anyhow::anyhow!(error.0))?,
            admin_password: password.clone(),
        },
        None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("create the demo tenant: {error}"))?;
    let tenant = match created {
        control_plane::tenants::Created::New(tenant)
        | control_plane::tenants::Created::Replayed(tenant)
        | control_plane::tenants::Created::Pending(tenant) => tenant,
    };
    Ok(Some(DemoTenant {
        id: tenant.id,
        slug: tenant.slug,
        database: tenant.database_name.unwrap_or_default(),
        admin_email: EMAIL.to_owned(),
        admin_password: Some(password),
    }))
}

/// The services' connection limits in `dev`: the defaults.
fn dev_connections() -> tenancy_http::ConnectionArgs {
    let limits = tenancy_http::ConnectionLimits::default();
    tenancy_http::ConnectionArgs {
        max_connections: limits.max_connections,
        header_read_timeout: limits.header_read_timeout,
        max_header_bytes: limits.max_header_bytes,
        address_file: None,
    }
}

/// The Ed25519 key in `path`, made (readable by the owner only) on the first run.
fn signing_key(path: &Path) -> anyhow::Result<SecretString> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(SecretString::from(pem)),
        Err(_) => {
            let (_, pem) = TokenKey::generate()?;
            write_private(path, pem.expose_secret())?;
            Ok(pem)
        }
    }
}
