//! A router under pressure: the server connection cap, a stopped server (and its busiest
//! tenants warmed again when it returns), a tenant over its storage limit.

use super::*;

/// Router connections open on a server right now.
async fn router_connections(server: &tenancy_infra::EmbeddedPostgres) -> i64 {
    let mut admin = tenancy_tests::connect(&server.superuser_url("postgres")).await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenancy-router'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("count")
}

/// Each database's customers table locked in an open transaction (rolled back when the
/// connection is told to, or dropped): requests on it wait holding their connection, as
/// behind a slow query.
async fn lock_customers(app: &ControlPlane, databases: &[String]) -> Vec<sqlx::PgConnection> {
    let mut lockers = Vec::new();
    for database in databases {
        use sqlx::Connection;
        let mut locker = sqlx::PgConnection::connect(&app.postgres.server.superuser_url(database))
            .await
            .expect("connect");
        for statement in ["BEGIN", "LOCK TABLE app.customers IN ACCESS EXCLUSIVE MODE"] {
            sqlx::query(statement)
                .execute(&mut locker)
                .await
                .expect("lock");
        }
        lockers.push(locker);
    }
    lockers
}

#[tokio::test]
async fn the_server_connection_cap_holds_and_waiters_get_503_not_a_hang() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    // A budget of 4 connections on this server for all tenants together.
    add_server_with_budget(&app, &admin, "small", 50, 4).await;
    let slugs = ["t-one", "t-two", "t-three", "t-four", "t-five", "t-six"];
    let mut tokens = Vec::new();
    let mut databases = Vec::new();
    for slug in slugs {
        let (status, tenant) = app.create_tenant(&admin, slug).await;
        assert_eq!(status, 201);
        databases.push(tenant["database_name"].as_str().expect("db").to_owned());
        tokens.push(app.tenant_token(&admin, slug, ALL).await);
    }
    let router = app.start_router(&[("TENANCY_POOL_WAIT", "500ms")]).await;

    // Hold every tenant's customers table locked: requests wait on it holding their
    // connection, as a slow query would.
    let mut lockers = lock_customers(&app, &databases).await;
    let started = Instant::now();
    let requests = tokens
        .iter()
        .flat_map(|token| (0..3).map(move |_| token))
        .map(|token| router.call(Method::GET, "/v1/customers", Some(token), None));
    let all = futures::future::join_all(requests);
    let watcher = async {
        let mut most = 0;
        while started.elapsed() < Duration::from_millis(1500) {
            most = most.max(router_connections(&app.postgres.server).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for locker in &mut lockers {
            sqlx::query("ROLLBACK")
                .execute(&mut *locker)
                .await
                .expect("unlock");
        }
        most
    };
    let (results, most) = tokio::join!(all, watcher);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no request hung"
    );
    assert!(
        most <= 4,
        "at most the budget of router connections on the server: saw {most}"
    );
    assert!(most >= 2, "the lock held connections busy: saw {most}");
    let ok = results.iter().filter(|(status, _)| *status == 200).count();
    let timeouts = results
        .iter()
        .filter(|(status, body)| *status == 503 && body["code"] == "pool_timeout")
        .count();
    assert_eq!(
        ok + timeouts,
        results.len(),
        "only 200 or 503 pool_timeout: {results:?}"
    );
    assert!(timeouts > 0 && ok > 0, "{ok} served, {timeouts} timed out");
    assert!(router_connections(&app.postgres.server).await <= 4);
}

#[tokio::test]
async fn a_stopped_server_gives_fast_503s_and_its_busiest_tenant_is_warmed_when_it_returns() {
    use tenancy_infra::{EmbeddedPostgres, PostgresOptions};
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    let mut tenant_server = tenancy_tests::TestPostgres::start_distinct();
    app.add_server(&admin, "tenants", &tenant_server.server, 50)
        .await;
    let (status, _) = app.create_tenant(&admin, "acme").await;
    assert_eq!(status, 201);
    let token = app.tenant_token(&admin, "acme", ALL).await;
    let router = app.start_router(&[]).await;
    create_customer(&router, &token, "A-1").await;

    let port = tenant_server.server.port();
    let data_dir = tenant_server.server.data_dir().to_path_buf();
    tenant_server.server.stop().expect("stop the tenant server");
    for _ in 0..10 {
        let started = Instant::now();
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(&token), None)
            .await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["code"] == "server_unavailable" || body["code"] == "pool_timeout",
            "{body}"
        );
        let text = body.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.to_lowercase().contains("refused"),
            "no internal detail: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "fails fast: {:?}",
            started.elapsed()
        );
    }
    // The breaker is open now: answers are immediate.
    let started = Instant::now();
    let (status, _) = router
        .call(Method::GET, "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "breaker answers at once: {:?}",
        started.elapsed()
    );

    let back = EmbeddedPostgres::start(PostgresOptions {
        port: Some(port),
        ..PostgresOptions::for_tests(data_dir)
    })
    .expect("restart the tenant server");
    let returned = Instant::now();
    // Before any request: the health check heals the breaker and the router warms its
    // busiest tenant on the server again (a connection open, idle, waiting for it).
    eventually(
        Duration::from_secs(5),
        "the busiest tenant warmed again",
        async || router_connections(&back).await > 0,
    )
    .await;
    println!(
        "busiest tenant warmed {:?} after the server returned",
        returned.elapsed()
    );
    loop {
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(&token), None)
            .await;
        if status == 200 {
            assert_eq!(codes(&body), ["A-1"]);
            break;
        }
        assert!(
            returned.elapsed() < Duration::from_secs(10),
            "not back: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "traffic resumed {:?} after the server returned",
        returned.elapsed()
    );
}

#[tokio::test]
async fn over_its_storage_limit_a_tenant_can_read_but_not_write_and_usage_is_counted() {
    let (app, admin) = platform_with_tenants(&["acme", "globex"]).await;
    let router = app.start_router(&[("TENANCY_USAGE_FLUSH", "200ms")]).await;
    let token = app.tenant_token(&admin, "acme", ALL).await;
    let mut requests = 0;
    create_customer(&router, &token, "A-1").await;
    requests += 1;

    // A fresh tenant database is several MB: a 1 MB plan is exceeded at the next sample.
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/plans/standard",
            Some(&admin),
            Some(json!({ "limits": { "max_storage_mb": 1 } })),
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the storage limit applied",
        async || {
            let (status, body) = router
                .call(
                    Method::POST,
                    "/v1/customers",
                    Some(&token),
                    Some(json!({ "code": format!("B-{requests}"), "name": "B" })),
                )
                .await;
            requests += 1;
            if status == 403 {
                assert_eq!(body["code"], "storage_limit_exceeded");
                return true;
            }
            assert_eq!(status, 201, "{body}");
            false
        },
    )
    .await;
    let (status, _) = router
        .call(Method::GET, "/v1/customers", Some(&token), None)
        .await;
    requests += 1;
    assert_eq!(status, 200, "reads still work");

    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/plans/standard",
            Some(&admin),
            Some(json!({ "limits": { "max_storage_mb": 10240 } })),
        )
        .await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "writes back", async || {
        let (status, _) = router
            .call(
                Method::POST,
                "/v1/customers",
                Some(&token),
                Some(json!({ "code": format!("C-{requests}"), "name": "C" })),
            )
            .await;
        requests += 1;
        status == 201
    })
    .await;

    // The requests reach the usage figures; another tenant's stay at zero.
    let usage = eventually(Duration::from_secs(5), "the requests counted", async || {
        let (status, usage) = app.usage(&admin, "acme").await;
        assert_eq!(status, 200, "{usage}");
        if usage["requests_last_24h"].as_i64() == Some(requests) {
            Ok(usage)
        } else {
            Err(format!("{usage}, expected {requests} requests"))
        }
    })
    .await;
    assert!(usage["storage"]["bytes"].as_i64().expect("sampled") > 1_000_000);
    assert_eq!(usage["storage"]["limit_bytes"], 10240_i64 * 1_048_576);
    assert_eq!(usage["storage"]["exceeded"], false);
    assert_eq!(usage["hourly_requests"].as_array().expect("hours").len(), 1);
    let (_, other) = app.usage(&admin, "globex").await;
    assert_eq!(other["requests_last_24h"], 0);
}

/// The connection budget the router's metrics say is in force on a server.
async fn budget_in_force(router: &TenantRouter, server: &str) -> Option<i64> {
    router
        .metric(&format!(
            "tenancy_router_server_connection_budget{{server=\"{server}\"}}"
        ))
        .await
        .map(|value| value as i64)
}

/// Waits (at most 3 s) until the router applies `budget`; how long it took.
async fn until_applied(router: &TenantRouter, server: &str, budget: i64) -> Duration {
    let started = Instant::now();
    while budget_in_force(router, server).await != Some(budget) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "budget {budget} never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_budget_change_reaches_a_running_router_within_a_second() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    let server_id = add_server_with_budget(&app, &admin, "small", 50, 8).await;
    let slugs = ["b-one", "b-two", "b-three", "b-four"];
    let mut tokens = Vec::new();
    let mut databases = Vec::new();
    for slug in slugs {
        let (status, tenant) = app.create_tenant(&admin, slug).await;
        assert_eq!(status, 201);
        databases.push(tenant["database_name"].as_str().expect("db").to_owned());
        tokens.push(app.tenant_token(&admin, slug, ALL).await);
    }
    let router = app.start_router(&[("TENANCY_POOL_WAIT", "500ms")]).await;
    for token in &tokens {
        let (status, _) = router.customers(token).await;
        assert_eq!(status, 200);
    }
    assert_eq!(budget_in_force(&router, &server_id).await, Some(8));

    // Bad changes are refused and change nothing.
    for (path, body, status) in [
        ("/v1/servers/small", json!({ "connection_budget": 0 }), 422),
        ("/v1/servers/small", json!({}), 422),
        ("/v1/servers/small", json!({ "budget": 2 }), 422),
        ("/v1/servers/nope", json!({ "connection_budget": 2 }), 404),
    ] {
        let (got, answer) = app
            .call(Method::PATCH, path, Some(&admin), Some(body.clone()))
            .await;
        assert!(
            got == status || (status == 422 && got == 400),
            "{body}: {got} {answer}"
        );
        assert_eq!(answer["status"], got, "a problem document: {answer}");
    }

    // Smaller: applied within a second, and from then on the router holds at most that.
    let (status, changed) = app
        .call(
            Method::PATCH,
            "/v1/servers/small",
            Some(&admin),
            Some(json!({ "connection_budget": 2, "max_tenants": 40 })),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["connection_budget"], 2);
    assert_eq!(changed["max_tenants"], 40);
    let took = until_applied(&router, &server_id, 2).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");

    let mut lockers = lock_customers(&app, &databases).await;
    let started = Instant::now();
    let requests = tokens
        .iter()
        .flat_map(|token| (0..3).map(move |_| token))
        .map(|token| router.call(Method::GET, "/v1/customers", Some(token), None));
    let all = futures::future::join_all(requests);
    let watcher = async {
        let mut most = 0;
        while started.elapsed() < Duration::from_millis(1200) {
            most = most.max(router_connections(&app.postgres.server).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for locker in &mut lockers {
            sqlx::query("ROLLBACK")
                .execute(&mut *locker)
                .await
                .expect("unlock");
        }
        most
    };
    let (results, most) = tokio::join!(all, watcher);
    assert!(most <= 2, "at most the new budget: saw {most}");
    assert!(most >= 1, "the lock held a connection busy: saw {most}");
    assert!(
        results
            .iter()
            .all(|(status, body)| *status == 200 || body["code"] == "pool_timeout"),
        "{results:?}"
    );

    // Larger again, just as fast; recorded in the audit log.
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/servers/small",
            Some(&admin),
            Some(json!({ "connection_budget": 6 })),
        )
        .await;
    assert_eq!(status, 200);
    let took = until_applied(&router, &server_id, 6).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    let (_, audit) = app
        .call(Method::GET, "/v1/audit-log", Some(&admin), None)
        .await;
    let updates = audit["items"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["action"] == "server.update")
        .count();
    assert_eq!(updates, 2, "{audit}");

    // What the router reports of the server: connections opened, requests served on a
    // connection (five more in a row on one tenant's: reused), time waited.
    for _ in 0..5 {
        let (status, _) = router.customers(&tokens[0]).await;
        assert_eq!(status, 200);
    }
    let metrics = router.metrics().await;
    let value = |name: &str| -> f64 {
        let prefix = format!("tenancy_router_{name}{{server=\"{server_id}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let opened = value("server_connections_opened_total");
    let checkouts = value("server_checkouts_total");
    let served = results.iter().filter(|(status, _)| *status == 200).count() as f64;
    assert!(opened >= 1.0, "{metrics}");
    assert!(
        checkouts >= served + 9.0,
        "{checkouts} checkouts for {served} + 9 served"
    );
    assert!(
        checkouts > opened,
        "connections are reused: {opened} opened, {checkouts} served"
    );
    assert!(value("server_connection_wait_seconds_total") > 0.0);
    assert!(value("server_evictions_total") >= 0.0);
}
