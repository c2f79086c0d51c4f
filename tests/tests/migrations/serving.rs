//! Migrations and the routers; a migrations directory that rewrites a built-in step.

use super::*;

/// Polls the router until the tenant's customers are served (the router follows the
/// catalog's notifications within milliseconds).
async fn wait_until_served(router: &tenancy_tests::TenantRouter, token: &str) {
    eventually(Duration::from_secs(5), "served", || async {
        let (code, body) = router
            .call(Method::GET, "/v1/customers", Some(token), None)
            .await;
        if code == 200 {
            Ok(())
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await;
}

#[tokio::test]
async fn the_router_answers_tenant_migrating_while_a_tenant_is_migrated() {
    let fleet = Fleet::start(2).await;
    let router = fleet.app.start_router(&[]).await;
    let scopes = &["customers.read", "customers.write"];
    let first = fleet
        .app
        .tenant_token(&fleet.admin, "tenant-01", scopes)
        .await;
    let second = fleet
        .app
        .tenant_token(&fleet.admin, "tenant-02", scopes)
        .await;
    let (code, body) = router
        .call(Method::GET, "/v1/customers", Some(&first), None)
        .await;
    assert_eq!(code, 200, "{body}");
    fleet.add_step(&step(1, "customer_segments"), V2_ADDITIVE);
    let output = fleet.migrate(&["run", "--tenant", "no-such-tenant"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no migratable tenant with slug no-such-tenant"),
        "{}",
        stderr(&output)
    );

    // The tenant's own long transaction holds a lock the step needs.
    let mut blocker = fleet.tenant_database("tenant-01").await;
    let mut transaction = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE app.customers IN ACCESS SHARE MODE")
        .execute(&mut *transaction)
        .await
        .expect("lock the table");

    // With a short lock timeout the step gives up; the tenant keeps its old schema and
    // is served again.
    let output = fleet.migrate(&["run", "--tenant", "tenant-01", "--lock-timeout", "500ms"]);
    let report = failed_json(&output);
    let items = tenant_items(&report);
    assert_eq!(items.len(), 1);
    assert!(
        items[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("lock timeout") && error.contains("55P03")),
        "{report}"
    );
    wait_until_served(&router, &first).await;

    // With a longer one it waits; meanwhile the router answers 503 tenant_migrating for
    // this tenant only.
    let mut run = fleet.spawn_migrate(&["run", "--tenant", "tenant-01"]);
    // The run first migrates the templates and warm databases of both servers: with the
    // suite's other tests running beside it on two cores, that has taken over 10 s.
    let (code, body) = eventually(Duration::from_secs(30), "a 503", || async {
        let (code, body) = router
            .call(Method::GET, "/v1/customers", Some(&first), None)
            .await;
        if code == 503 && body["code"] == "tenant_migrating" {
            Ok((code, body))
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await;
    assert_problem(code, &body, 503, "tenant_migrating");
    let (code, body) = router
        .call(Method::GET, "/v1/customers", Some(&second), None)
        .await;
    assert_eq!(code, 200, "the other tenant is served: {body}");
    transaction.commit().await.expect("release the lock");
    assert_eq!(run.wait_exit(Duration::from_secs(30)), Some(0));

    // Served again, on the new schema.
    wait_until_served(&router, &first).await;
    let mut database = fleet.tenant_database("tenant-01").await;
    assert!(column_exists(&mut database, "customers", "segment").await);
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 1, "{status}");
    assert_eq!(status["summary"]["pending"], 1);
}

#[tokio::test]
async fn a_migrations_directory_that_rewrites_a_built_in_step_is_refused() {
    let fleet = Fleet::start(0).await;
    let (name, sql) = tenancy_tests::built_in_tenant_steps()
        .into_iter()
        .next()
        .expect("a built-in step");
    std::fs::write(fleet.dir.path().join(name), format!("{sql}\n-- edited\n"))
        .expect("edit the first built-in step");
    let output = fleet.migrate(&["status"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("differs from the built-in"),
        "{}",
        stderr(&output)
    );
}
