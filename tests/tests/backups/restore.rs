//! Restores: exact data back, a corrupt backup refused first, into a new tenant, a dead restore reclaimed, no write acknowledged on a replaced database.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_brings_back_exactly_the_backed_up_data_and_the_router_follows() {
    let fixture = Fixture::start(&["acme", "globex"]).await;
    let (_, mut database) = fixture.tenant_database("acme").await;
    sqlx::raw_sql(SEED)
        .execute(&mut database)
        .await
        .expect("seed every table");
    let before = checksums(&mut database).await;
    assert!(before.len() >= 12, "{before:?}");

    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let tenant_id = created[0]["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_owned();

    // The tenant goes on working after the backup.
    let admin = fixture.app.admin_token().await;
    let router = fixture.app.start_router(&[]).await;
    let token = fixture
        .app
        .tenant_token(&admin, "acme", &["customers.read", "customers.write"])
        .await;
    let (status, kept) = router
        .call(
            reqwest::Method::GET,
            "/v1/customers?limit=1",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{kept}");
    let kept_id = kept["items"][0]["id"]
        .as_str()
        .expect("a customer")
        .to_owned();
    let (status, added) = router
        .call(
            reqwest::Method::POST,
            "/v1/customers",
            Some(&token),
            Some(serde_json::json!({ "code": "AFTER-1", "name": "Added after the backup" })),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let added_id = added["id"].as_str().expect("id").to_owned();
    sqlx::raw_sql(
        "SET search_path = app; DELETE FROM app.customers WHERE code LIKE 'C-1%'; \
         UPDATE app.products SET unit_price = 1; \
         INSERT INTO app.purchase_orders (supplier_id) SELECT id FROM app.suppliers LIMIT 3;",
    )
    .execute(&mut database)
    .await
    .expect("change the data");
    assert_ne!(checksums(&mut database).await, before);
    drop(database);

    // Another tenant's backup is refused for this tenant.
    let output = fixture.backup(&["restore", &id, "--tenant", "globex"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("belongs to tenant acme, not globex"),
        "{}",
        stderr(&output)
    );

    let restored = json_of(&fixture.backup(&["restore", &id, "--tenant", "acme"]));
    let new_database = restored["database"].as_str().expect("database").to_owned();
    assert_ne!(restored["previous_database"], restored["database"]);
    // The catalog points at the restored database; the replaced one is kept, renamed,
    // closed to the tenant role, until TENANCY_RESTORE_KEEP has passed.
    let kept_database = restored["kept_database"].as_str().expect("kept").to_owned();
    let mut names = vec![new_database.clone(), kept_database.clone()];
    names.sort();
    assert_eq!(database_names(&fixture.app, &tenant_id).await, names);
    assert!(
        !names.contains(
            &restored["previous_database"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        )
    );
    let mut admin = connect(&fixture.app.postgres.url("postgres")).await;
    let role = format!("t_{}_app", tenant_id.replace('-', ""));
    let (role_may_connect, public_may_connect): (bool, bool) = sqlx::query_as(
        "SELECT has_database_privilege($1, $2, 'CONNECT'), has_database_privilege('public', $2, 'CONNECT')",
    )
    .bind(&role)
    .bind(&kept_database)
    .fetch_one(&mut admin)
    .await
    .expect("check the kept database");
    assert!(
        !role_may_connect && !public_may_connect,
        "the kept database is closed"
    );
    let (_, mut database) = fixture.tenant_database("acme").await;
    assert_eq!(
        checksums(&mut database).await,
        before,
        "exactly the backed-up data"
    );
    // Order numbers continue after the backed-up ones (taken when the insert commits).
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO app.purchase_orders (supplier_id) SELECT id FROM app.suppliers LIMIT 1 RETURNING id",
    )
    .fetch_one(&mut database)
    .await
    .expect("a new order");
    let number: String = sqlx::query_scalar("SELECT number FROM app.purchase_orders WHERE id = $1")
        .bind(id)
        .fetch_one(&mut database)
        .await
        .expect("its number");
    assert_eq!(number, "PO-000021");

    // The router serves the restored database: the customer added after the backup is
    // gone, the others are there, writes work (the tenant role's grants are back).
    eventually(
        Duration::from_secs(5),
        "the router serves the restored database",
        || async {
            let (status, body) = router
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/customers/{added_id}"),
                    Some(&token),
                    None,
                )
                .await;
            if status == 404 {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    let (status, body) = router
        .call(
            reqwest::Method::GET,
            &format!("/v1/customers/{kept_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = router
        .call(
            reqwest::Method::POST,
            "/v1/customers",
            Some(&token),
            Some(serde_json::json!({ "code": "AFTER-2", "name": "Written after the restore" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The tenant role still reaches only its own database.
    let mut catalog = connect(&fixture.app.database_url).await;
    let role_ok: bool =
        sqlx::query_scalar("SELECT NOT has_database_privilege('public', $1, 'CONNECT')")
            .bind(&new_database)
            .fetch_one(&mut database)
            .await
            .expect("check PUBLIC");
    assert!(role_ok, "PUBLIC may not connect to the restored database");
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'tenant.restore'")
            .fetch_one(&mut catalog)
            .await
            .expect("read the audit log");
    assert_eq!(audit, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_backup_is_refused_before_any_database_is_created() {
    let fixture = Fixture::start(&["acme"]).await;
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let tenant_id = created[0]["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_owned();
    let databases = database_names(&fixture.app, &tenant_id).await;
    let objects = fixture.objects();
    let mut stored = std::fs::read(&objects[0]).expect("read the object");
    let last = stored.len() - 1;
    stored[last] ^= 0x80;
    std::fs::write(&objects[0], &stored).expect("flip a byte");

    let output = fixture.backup(&["restore", &id]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("does not match the backup"),
        "{}",
        stderr(&output)
    );
    assert_eq!(database_names(&fixture.app, &tenant_id).await, databases);
    let mut catalog = connect(&fixture.app.database_url).await;
    let restores: i64 = sqlx::query_scalar("SELECT count(*) FROM restores")
        .fetch_one(&mut catalog)
        .await
        .expect("count restores");
    assert_eq!(restores, 0, "nothing was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_into_a_new_tenant_even_after_its_own_is_deleted() {
    let fixture = Fixture::start(&["acme"]).await;
    let (_, mut database) = fixture.tenant_database("acme").await;
    sqlx::raw_sql(SEED)
        .execute(&mut database)
        .await
        .expect("seed every table");
    let original = checksums(&mut database).await;
    drop(database);
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();

    let copy = json_of(&fixture.backup(&["restore", &id, "--as", "acme-copy"]));
    assert_eq!(copy["tenant"], "acme-copy");
    let (_, mut database) = fixture.tenant_database("acme-copy").await;
    assert_eq!(checksums(&mut database).await, original);
    drop(database);
    let (_, mut database) = fixture.tenant_database("acme").await;
    assert_eq!(
        checksums(&mut database).await,
        original,
        "the source is untouched"
    );
    drop(database);

    // The copy is a tenant like any other: its own role serves it through the router.
    let admin = fixture.app.admin_token().await;
    let router = fixture.app.start_router(&[]).await;
    let token = fixture
        .app
        .tenant_token(&admin, "acme-copy", &["customers.read"])
        .await;
    let (status, body) = router
        .call(
            reqwest::Method::GET,
            "/v1/customers?limit=5",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().expect("items").len(), 5);

    // A deleted tenant's final backup brings it back under a new slug.
    fixture
        .app
        .delete_tenant_now(&admin, "acme", FinalBackup::Required)
        .await;
    let listed = json_of(&fixture.backup(&["list", "--tenant", "acme"]));
    assert_eq!(listed[0]["trigger"], "final");
    let final_id = listed[0]["id"].as_str().expect("id");
    json_of(&fixture.backup(&["restore", final_id, "--as", "acme-again"]));
    let (_, mut database) = fixture.tenant_database("acme-again").await;
    assert_eq!(checksums(&mut database).await, original);

    // A slug in use is refused, and nothing is created.
    let output = fixture.backup(&["restore", &id, "--as", "acme-copy"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("acme-copy"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_of_a_restore_whose_process_died_is_reclaimed() {
    let fixture = Fixture::start(&["acme"]).await;
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let backup = &created[0];
    let tenant_id = backup["tenant_id"].as_str().expect("tenant_id").to_owned();
    // What a restore killed after creating its database leaves: a running row and the
    // database, with nobody holding the tenant's lock.
    let leftover = format!("t_{}_deadbeef", tenant_id.replace('-', ""));
    let mut admin = connect(&fixture.app.postgres.url("postgres")).await;
    sqlx::query(&format!("CREATE DATABASE {leftover}"))
        .execute(&mut admin)
        .await
        .expect("create the leftover database");
    // Made by this installation: it carries its ownership mark.
    let installation = fixture.app.installation_id().await;
    sqlx::query(&format!(
        "COMMENT ON DATABASE {leftover} IS 'tenancy-owned installation={installation} created={}'",
        chrono::Utc::now().timestamp()
    ))
    .execute(&mut admin)
    .await
    .expect("mark the leftover database");
    let mut catalog = connect(&fixture.app.database_url).await;
    sqlx::query(
        "INSERT INTO restores (id, backup_id, tenant_id, server_id, database_name, requested_by) \
         VALUES (gen_random_uuid(), $1::uuid, $2::uuid, $3::uuid, $4, 'a killed tenantctl')",
    )
    .bind(backup["id"].as_str().expect("id"))
    .bind(&tenant_id)
    .bind(backup["server_id"].as_str().expect("server_id"))
    .bind(&leftover)
    .execute(&mut catalog)
    .await
    .expect("record the dead restore");

    // The control plane's sweep (every 300 ms in tests) drops it and closes the row.
    let names = eventually(
        Duration::from_secs(30),
        "the leftover dropped",
        async || {
            let names = database_names(&fixture.app, &tenant_id).await;
            let status: String =
                sqlx::query_scalar("SELECT status FROM restores WHERE database_name = $1")
                    .bind(&leftover)
                    .fetch_one(&mut catalog)
                    .await
                    .expect("read the restore");
            if !names.contains(&leftover) && status == "failed" {
                Ok(names)
            } else {
                Err(format!("restore {status}, databases {names:?}"))
            }
        },
    )
    .await;
    assert_eq!(names.len(), 1, "the tenant's own database stays: {names:?}");
    // The tenant is still served from its database.
    let (_, mut database) = fixture.tenant_database("acme").await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM app.users")
        .fetch_one(&mut database)
        .await
        .expect("read the tenant's database");
    assert_eq!(users, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_under_continuous_writes_acknowledges_none_on_the_replaced_database() {
    let fixture = Fixture::start(&["acme"]).await;
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let admin = fixture.app.admin_token().await;
    let router = fixture.app.start_router(&[]).await;
    let token = fixture
        .app
        .tenant_token(&admin, "acme", &["customers.read", "customers.write"])
        .await;

    // A client writing one customer after the other, logging every answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = format!("{}/v1/customers", router.base_url);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut log: Vec<Write> = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 20_000 {
                n += 1;
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "code": format!("W-{n:05}"), "name": "written" }))
                    .send()
                    .await
                    .expect("the router answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                log.push((
                    n,
                    status,
                    body["code"].as_str().unwrap_or_default().to_owned(),
                ));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            log
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restored = json_of(&fixture.backup(&["restore", &id, "--tenant", "acme"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let log = writer.await.expect("the writer");

    let failures: Vec<&Write> = log
        .iter()
        .filter(|(_, status, code)| {
            !(*status == 201 || (*status == 503 && code == "tenant_restoring"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "only 201 and 503 tenant_restoring: {failures:?}"
    );
    assert!(
        log.iter().any(|(_, status, _)| *status == 503),
        "the restore was seen as 503 tenant_restoring"
    );
    let acknowledged: Vec<String> = log
        .iter()
        .filter(|(_, status, _)| *status == 201)
        .map(|(n, _, _)| format!("W-{n:05}"))
        .collect();

    let new = written(
        &fixture
            .app
            .postgres
            .url(restored["database"].as_str().expect("db")),
    )
    .await;
    let kept = written(
        &fixture
            .app
            .postgres
            .url(restored["kept_database"].as_str().expect("kept")),
    )
    .await;
    // The acknowledged writes split at the switch: those before it are in the replaced
    // database only (the restore went back to the backup), those after it in the new one
    // only. Nothing acknowledged is lost to a database that was being replaced.
    let first_new = acknowledged
        .iter()
        .position(|code| new.contains(code))
        .expect("writes were acknowledged after the switch");
    let (before, after) = acknowledged.split_at(first_new);
    assert!(
        !before.is_empty(),
        "writes were acknowledged before the restore"
    );
    assert!(
        before
            .iter()
            .all(|code| kept.contains(code) && !new.contains(code)),
        "writes before the restore are in the replaced database"
    );
    assert!(
        after
            .iter()
            .all(|code| new.contains(code) && !kept.contains(code)),
        "every write acknowledged after the switch is in the new database, none in the old"
    );
    assert_eq!(
        new.len(),
        after.len(),
        "nothing unacknowledged in the new database"
    );
}
