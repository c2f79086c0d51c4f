//! A tenant's database and role on a real server: what the role can and cannot do is
//! enforced by PostgreSQL itself.

use std::os::unix::fs::PermissionsExt;

use provisioner::{DatabaseName, RoleLimits, RoleName, ServerAddress};
use secrecy::SecretString;
use tenancy_core::TenantId;
use tenancy_infra::{EmbeddedPostgres, PostgresOptions};

struct Server {
    postgres: EmbeddedPostgres,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let postgres = EmbeddedPostgres::start(PostgresOptions::for_tests(dir.path().join("data")))
            .expect("start");
        Self {
            postgres,
            _dir: dir,
        }
    }

    fn address(&self) -> ServerAddress {
        ServerAddress {
            host: "127.0.0.1".to_owned(),
            port: self.postgres.port(),
            admin_user: "postgres".to_owned(),
            admin_password: SecretString::from(self.postgres.superuser_password().to_owned()),
        }
    }
}

/// The installation these tests act as.
const OWNER: provisioner::Installation = provisioner::Installation(uuid::Uuid::from_u128(
    0x7465_6e61_6e63_7900_0000_0000_0000_0001,
));

const LIMITS: RoleLimits = RoleLimits {
    max_connections: 4,
    statement_timeout_ms: 1500,
};

async fn provision(server: &ServerAddress, tenant: TenantId, password: &str) {
    let admin = server.connect("postgres").await.expect("admin connection");
    provisioner::tenant::ensure_role(
        &admin,
        tenant,
        &SecretString::from(password.to_owned()),
        LIMITS,
        OWNER,
    )
    .await
    .expect("role");
    assert!(
        provisioner::tenant::ensure_database(&admin, tenant, OWNER)
            .await
            .expect("database")
    );
    let version = provisioner::tenant::configure_database(
        server,
        tenant,
        Some(("boss@acme.example", "$argon2id$fake")),
    )
    .await
    .expect("configure");
    assert_eq!(version, Some(tenant_schema::latest_version()));
}

async fn connect_as(
    server: &ServerAddress,
    tenant: TenantId,
    password: &str,
    database: &str,
) -> Result<tokio_postgres::Client, provisioner::ProvisionError> {
    provisioner::server::connect(
        &server.host,
        server.port,
        RoleName::for_tenant(tenant).as_str(),
        &SecretString::from(password.to_owned()),
        database,
    )
    .await
}

fn sql_state(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|code| code.code().to_owned())
        .unwrap_or_else(|| format!("{error}"))
}

#[tokio::test]
async fn a_tenant_role_reaches_only_its_own_database_and_cannot_do_ddl() {
    let server = Server::start();
    let address = server.address();
    let prepared =
        provisioner::template::prepare_server(&address, &tenant_schema::MigrationSet::embedded())
            .await
            .expect("prepare");
    assert_eq!(prepared.schema_version, tenant_schema::latest_version());
    let (acme, globex) = (TenantId::new(), TenantId::new());
    provision(&address, acme, "acme-password-1").await;
    provision(&address, globex, "globex-password-2").await;
    // A machine-generated password (as every tenant's is) gets a cheap verifier and logs
    // in; a short one keeps PostgreSQL's 4,096 iterations.
    let initech = TenantId::new();
    let machine = "q8V2mZt0LwX4rKc7YbN1pHs5dJf9gA3uE6iO2kTz";
    provision(&address, initech, machine).await;
    let admin = address.connect("postgres").await.expect("admin");
    let verifier = |tenant: TenantId| {
        let admin = &admin;
        async move {
            let row = admin
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[&provisioner::RoleName::for_tenant(tenant).as_str()],
                )
                .await
                .expect("the role's verifier");
            row.get::<_, String>(0)
        }
    };
    assert!(verifier(initech).await.starts_with("SCRAM-SHA-256$16:"));
    assert!(verifier(acme).await.starts_with("SCRAM-SHA-256$4096:"));
    connect_as(
        &address,
        initech,
        machine,
        DatabaseName::for_tenant(initech).as_str(),
    )
    .await
    .expect("a login with the cheap verifier");
    assert!(
        connect_as(
            &address,
            initech,
            "q8V2mZt0LwX4rKc7YbN1pHs5dJf9gA3uE6iO2kTy",
            DatabaseName::for_tenant(initech).as_str(),
        )
        .await
        .is_err(),
        "and only with its password"
    );

    let acme_db = DatabaseName::for_tenant(acme);
    let client = connect_as(&address, acme, "acme-password-1", acme_db.as_str())
        .await
        .expect("own database");
    // The first admin is there, with every permission.
    let permissions: i64 = client
        .query_one(
            "SELECT count(*) FROM users u JOIN user_roles ur ON ur.user_id = u.id \
             JOIN role_permissions rp ON rp.role_id = ur.role_id WHERE u.email = 'boss@acme.example'",
            &[],
        )
        .await
        .expect("query as the tenant")
        .get(0);
    let all: i64 = client
        .query_one("SELECT count(*) FROM permissions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(permissions, all);
    // DML works; the plan's statement timeout is in force.
    client
        .execute(
            "INSERT INTO customers (code, name) VALUES ('C1', 'First')",
            &[],
        )
        .await
        .expect("insert as the tenant");
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "1500ms");

    // No DDL, no roles, no programs, no audit rewriting.
    for (statement, expected) in [
        ("CREATE TABLE app.evil (id int)", "42501"),
        ("CREATE TABLE public.evil (id int)", "42501"),
        ("CREATE ROLE evil", "42501"),
        ("COPY (SELECT 1) TO PROGRAM 'id'", "42501"),
        ("DROP TABLE customers", "42501"),
        ("ALTER TABLE customers ADD COLUMN x int", "42501"),
        ("UPDATE audit_log SET actor = 'nobody'", "42501"),
        ("DELETE FROM refinery_schema_history", "42501"),
        ("CREATE DATABASE evil", "42501"),
    ] {
        let error = client.batch_execute(statement).await.expect_err(statement);
        assert_eq!(sql_state(&error), expected, "{statement}: {error:?}");
    }
    let limit: i32 = client
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("limit")
        .get(0);
    assert_eq!(
        limit, 5,
        "the plan's 4, and one for the router's events listener"
    );

    // Another tenant's database, the maintenance databases and the template are closed.
    for database in [
        DatabaseName::for_tenant(globex).as_str(),
        "postgres",
        "template1",
        "tenancy_template",
    ] {
        let error = connect_as(&address, acme, "acme-password-1", database)
            .await
            .expect_err(database);
        let message = format!("{error}");
        assert!(
            message.contains("permission denied") || message.contains("not currently accepting"),
            "{database}: {message}"
        );
    }
    // A wrong password is refused.
    assert!(
        connect_as(&address, acme, "not-the-password", acme_db.as_str())
            .await
            .is_err()
    );
    // Another tenant's role cannot get into this database either.
    assert!(
        connect_as(&address, globex, "globex-password-2", acme_db.as_str())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn provisioning_steps_can_be_rerun_and_drop_leaves_nothing() {
    let server = Server::start();
    let address = server.address();
    provisioner::template::prepare_server(&address, &tenant_schema::MigrationSet::embedded())
        .await
        .expect("prepare");
    provisioner::template::prepare_server(&address, &tenant_schema::MigrationSet::embedded())
        .await
        .expect("prepare again is a no-op");
    let tenant = TenantId::new();
    provision(&address, tenant, "first-password").await;

    // Every step again (as after a crash): nothing fails, nothing is duplicated.
    let admin = address.connect("postgres").await.expect("admin");
    provisioner::tenant::ensure_role(
        &admin,
        tenant,
        &SecretString::from("second-password".to_owned()),
        LIMITS,
        OWNER,
    )
    .await
    .expect("role again");
    assert!(
        !provisioner::tenant::ensure_database(&admin, tenant, OWNER)
            .await
            .expect("database again")
    );
    provisioner::tenant::configure_database(
        &address,
        tenant,
        Some(("boss@acme.example", "$argon2id$fake")),
    )
    .await
    .expect("configure again");
    let client = connect_as(
        &address,
        tenant,
        "second-password",
        DatabaseName::for_tenant(tenant).as_str(),
    )
    .await
    .expect("the new password works");
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 1);
    drop(client);

    let objects = provisioner::tenant::list_objects(&admin)
        .await
        .expect("list");
    let names: Vec<_> = objects.databases.iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, vec![DatabaseName::for_tenant(tenant)]);
    let roles: Vec<_> = objects.roles.iter().map(|r| r.name.clone()).collect();
    assert_eq!(roles, vec![RoleName::for_tenant(tenant)]);
    // Both carry this installation's mark, written when they were created.
    assert!(
        objects.databases[0]
            .mark
            .is_some_and(|mark| mark.is_of(OWNER))
            && objects.roles[0].mark.is_some_and(|mark| mark.is_of(OWNER)),
        "{objects:?}"
    );
    // Another installation may drop neither.
    let other = provisioner::Installation(uuid::Uuid::new_v4());
    let refused = provisioner::tenant::drop_tenant(&admin, tenant, other)
        .await
        .expect_err("another installation's drop is refused");
    assert!(
        matches!(refused, provisioner::ProvisionError::NotOurs { .. }),
        "{refused}"
    );
    assert_eq!(
        provisioner::tenant::list_objects(&admin)
            .await
            .expect("list")
            .databases
            .len(),
        1
    );
    provisioner::tenant::drop_tenant(&admin, tenant, OWNER)
        .await
        .expect("drop");
    provisioner::tenant::drop_tenant(&admin, tenant, OWNER)
        .await
        .expect("drop again");
    assert_eq!(
        provisioner::tenant::list_objects(&admin)
            .await
            .expect("list"),
        Default::default()
    );
}

#[tokio::test]
async fn a_backup_reader_reads_one_database_and_writes_nothing() {
    let server = Server::start();
    let address = server.address();
    provisioner::template::prepare_server(&address, &tenant_schema::MigrationSet::embedded())
        .await
        .expect("prepare");
    let (acme, globex) = (TenantId::new(), TenantId::new());
    provision(&address, acme, "acme-password-0123456789").await;
    provision(&address, globex, "globex-password-0123456789").await;
    let admin = address.connect("postgres").await.expect("admin connection");
    let database = DatabaseName::for_tenant(acme);
    let reader = provisioner::backup::create_reader(&admin, &database)
        .await
        .expect("create a reader");
    let connect = |name: String| {
        let (host, port, user, password) = (
            address.host.clone(),
            address.port,
            reader.name.clone(),
            reader.password.clone(),
        );
        async move { provisioner::server::connect(&host, port, &user, &password, &name).await }
    };

    let client = connect(database.as_str().to_owned())
        .await
        .expect("the reader reaches its database");
    let users: i64 = client
        .query_one("SELECT count(*) FROM app.users", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(users, 1);
    client
        .query_one("SELECT count(*) FROM app.refinery_schema_history", &[])
        .await
        .expect("read the history too");
    for statement in [
        "INSERT INTO app.customers (code, name) VALUES ('X', 'x')",
        "DELETE FROM app.users",
        "CREATE TABLE app.stolen (id int)",
        "CREATE TABLE public.stolen (id int)",
    ] {
        let error = client
            .batch_execute(statement)
            .await
            .expect_err("the reader writes nothing");
        assert_eq!(sql_state(&error), "42501", "{statement}");
    }
    let is_superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("read its role")
        .get(0);
    assert!(!is_superuser);
    for other in [
        DatabaseName::for_tenant(globex).as_str().to_owned(),
        "postgres".to_owned(),
        provisioner::names::TEMPLATE_DATABASE.to_owned(),
    ] {
        assert!(
            connect(other.clone()).await.is_err(),
            "the reader must not reach {other}"
        );
    }
    drop(client);
    provisioner::backup::drop_reader(&admin, &reader)
        .await
        .expect("drop the reader");
    assert!(connect(database.as_str().to_owned()).await.is_err());
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenancy_backup_%'",
            &[],
        )
        .await
        .expect("count readers")
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn no_drop_removes_what_this_installation_did_not_mark() {
    let server = Server::start();
    let admin = server.address().connect("postgres").await.expect("admin");
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) \
                     OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                    &[&name],
                )
                .await
                .expect("look")
                .get::<_, bool>(0)
        }
    };
    let other = provisioner::Installation(uuid::Uuid::new_v4());
    for comment in [
        None,
        Some(format!("tenancy-owned installation={} created=1", other.0)),
        Some("a database the operator made".to_owned()),
    ] {
        let tenant = TenantId::new();
        let database = DatabaseName::for_tenant(tenant);
        let role = RoleName::for_tenant(tenant);
        admin
            .batch_execute(&format!("CREATE DATABASE {}", database.ident()))
            .await
            .expect("database");
        admin
            .batch_execute(&format!("CREATE ROLE {} LOGIN", role.ident()))
            .await
            .expect("role");
        if let Some(comment) = &comment {
            admin
                .batch_execute(&format!(
                    "COMMENT ON DATABASE {} IS '{comment}'; COMMENT ON ROLE {} IS '{comment}'",
                    database.ident(),
                    role.ident()
                ))
                .await
                .expect("comment");
        }
        for refused in [
            provisioner::tenant::drop_database(&admin, &database, OWNER)
                .await
                .expect_err("drop_database"),
            provisioner::tenant::drop_role(&admin, &role, OWNER)
                .await
                .expect_err("drop_role"),
            provisioner::tenant::drop_tenant(&admin, tenant, OWNER)
                .await
                .expect_err("drop_tenant"),
        ] {
            assert!(
                matches!(refused, provisioner::ProvisionError::NotOurs { .. }),
                "{comment:?}: {refused}"
            );
        }
        assert!(exists(database.as_str().to_owned()).await, "{comment:?}");
        assert!(exists(role.as_str().to_owned()).await, "{comment:?}");
    }
    // Marked by this installation: dropped.
    let tenant = TenantId::new();
    let database = DatabaseName::for_tenant(tenant);
    let mark = provisioner::Mark::new(OWNER);
    admin
        .batch_execute(&format!("CREATE DATABASE {}", database.ident()))
        .await
        .expect("database");
    provisioner::mark::mark_database(&admin, &database, &mark)
        .await
        .expect("mark");
    provisioner::tenant::drop_database(&admin, &database, OWNER)
        .await
        .expect("ours is dropped");
    assert!(!exists(database.as_str().to_owned()).await);
}
