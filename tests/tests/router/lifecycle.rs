//! What reaches a router from the control plane: suspension and deletion, plan rate limits, key rotation, time limits, its ops endpoints.

use super::*;

async fn wait_for_status(
    router: &TenantRouter,
    token: &str,
    expected: u16,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(token), None)
            .await;
        if status == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {status} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn suspension_and_deletion_reach_the_router_within_a_second() {
    let (app, admin) = platform_with_tenants(&["acme"]).await;
    let router = app.start_router(&[("TENANCY_DIRECTORY_TTL", "10m")]).await;
    let token = app.tenant_token(&admin, "acme", ALL).await;
    create_customer(&router, &token, "A-1").await;

    let (status, _) = app.suspend(&admin, "acme").await;
    assert_eq!(status, 200);
    let took = wait_for_status(&router, &token, 403, Duration::from_secs(1)).await;
    let (_, body) = router
        .call(Method::GET, "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(body["code"], "tenant_suspended");
    println!("suspension reached the router in {took:?}");

    let (status, _) = app.resume(&admin, "acme").await;
    assert_eq!(status, 200);
    wait_for_status(&router, &token, 200, Duration::from_secs(1)).await;

    // Deleted: 401. A new tenant with the same slug does not honour the old token.
    app.delete_tenant_now(&admin, "acme", FinalBackup::Skip)
        .await;
    wait_for_status(&router, &token, 401, Duration::from_secs(1)).await;
    let (status, _) = app.create_tenant(&admin, "acme").await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = router
        .call(Method::GET, "/v1/customers", Some(&token), None)
        .await;
    assert_problem(status, &body, 401, "invalid_token");
    let fresh = app.tenant_token(&admin, "acme", ALL).await;
    let (status, page) = router
        .call(Method::GET, "/v1/customers", Some(&fresh), None)
        .await;
    assert_eq!(status, 200);
    assert!(codes(&page).is_empty(), "the new tenant starts empty");
}

#[tokio::test]
async fn the_plan_rate_limit_answers_429_per_tenant() {
    let (app, admin) = platform_with_tenants(&["busy", "calm"]).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/plans/standard",
            Some(&admin),
            Some(json!({ "limits": { "requests_per_minute": 20 } })),
        )
        .await;
    assert_eq!(status, 200);
    let router = app.start_router(&[]).await;
    let busy = app.tenant_token(&admin, "busy", ALL).await;
    let calm = app.tenant_token(&admin, "calm", ALL).await;
    let mut limited = None;
    for attempt in 0..40 {
        let response = router
            .client
            .get(format!("{}/v1/customers", router.base_url))
            .bearer_auth(&busy)
            .send()
            .await
            .expect("send");
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=60).contains(&retry_after));
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["code"], "rate_limited");
            limited = Some(attempt);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        limited,
        Some(20),
        "the 21st request within the minute is refused"
    );
    let (status, _) = router
        .call(Method::GET, "/v1/customers", Some(&calm), None)
        .await;
    assert_eq!(status, 200, "another tenant is unaffected");
}

#[tokio::test]
async fn router_ops_endpoints() {
    let (app, admin) = platform_with_tenants(&["acme"]).await;
    let router = app.start_router(&[]).await;
    let token = app.tenant_token(&admin, "acme", ALL).await;
    create_customer(&router, &token, "A-1").await;
    let (status, _) = router.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = router.call(Method::GET, "/v1/nothing", None, None).await;
    assert_problem(status, &body, 404, "not_found");
    let (status, openapi) = router.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/v1/customers"]["post"].is_object());
    let metrics = router.metrics().await;
    assert!(metrics.contains(r#"tenancy_router_http_requests_total{method="POST",route="/v1/customers",status="201"} 1"#), "{metrics}");
    assert!(
        metrics.contains("tenancy_router_directory_lookups_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenancy_router_server_connections"),
        "{metrics}"
    );
    assert!(!metrics.contains("acme"), "no tenant in any label");
}

#[tokio::test]
async fn two_signing_keys_are_valid_during_a_rotation() {
    let (app, admin) = platform_with_tenants(&["acme"]).await;
    let (next_key, _) = TokenKey::generate().expect("the next key");
    let both = format!("{}{}", app.signing_key.public_pem(), next_key.public_pem());
    let router = app
        .start_router(&[("TENANCY_JWT_PUBLIC_KEYS", &both)])
        .await;
    let current = app.tenant_token(&admin, "acme", ALL).await;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(current.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("json");
    let next = next_key.sign(&claims).expect("sign with the next key");
    for token in [&current, &next] {
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(token), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // A router that trusts only the next key refuses the current one.
    let rotated = app
        .start_router(&[("TENANCY_JWT_PUBLIC_KEYS", next_key.public_pem())])
        .await;
    let (status, body) = rotated
        .call(Method::GET, "/v1/customers", Some(&current), None)
        .await;
    assert_problem(status, &body, 401, "invalid_token");
    let (status, _) = rotated
        .call(Method::GET, "/v1/customers", Some(&next), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_request_over_the_time_limit_gets_a_503_problem_document() {
    let (app, admin) = platform_with_tenants(&["acme"]).await;
    let (_, tenant) = app.tenant(&admin, "acme").await;
    let database = tenant["database_name"]
        .as_str()
        .expect("database")
        .to_owned();
    let token = app.tenant_token(&admin, "acme", ALL).await;
    let router = app
        .start_router(&[("TENANCY_REQUEST_TIMEOUT", "300ms")])
        .await;
    create_customer(&router, &token, "A-1").await;

    // A lock makes the next read wait longer than the limit.
    use sqlx::Connection;
    let mut locker = sqlx::PgConnection::connect(&app.postgres.server.superuser_url(&database))
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE app.customers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("lock");
    let started = Instant::now();
    let response = router
        .client
        .get(format!("{}/v1/customers", router.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at the limit: {:?}",
        started.elapsed()
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["retry-after"], "1");
    let status = response.status().as_u16();
    assert_problem(
        status,
        &response.json().await.expect("json"),
        503,
        "timeout",
    );
    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("unlock");

    // The abandoned request left its connection usable.
    let (status, page) = router
        .call(Method::GET, "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(codes(&page), ["A-1"]);
}
