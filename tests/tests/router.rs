//! The tenant router binary: every request on its own tenant's database, tokens verified
//! strictly, tenant status and plan limits enforced.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tenancy_core::token::TokenKey;
use tenancy_tests::{ControlPlane, TenantRouter, assert_problem};

const ALL: &[&str] = &["customers.read", "customers.write"];

async fn platform_with_tenants(slugs: &[&str]) -> (ControlPlane, String) {
    let app = ControlPlane::start_with(&[("TENANCY_DELETE_GRACE", "0s")]).await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 50)
        .await;
    for slug in slugs {
        let (status, body) = app.create_tenant(&admin, slug).await;
        assert_eq!(status, 201, "{body}");
    }
    (app, admin)
}

async fn create_customer(router: &TenantRouter, token: &str, code: &str) -> Value {
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(token),
            Some(json!({ "code": code, "name": format!("Customer {code}") })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["code"].as_str().expect("code").to_owned())
        .collect()
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_data() {
    let (app, admin) = platform_with_tenants(&["acme", "globex"]).await;
    let router = app.start_router(&[]).await;
    let acme = app.tenant_token(&admin, "acme", ALL).await;
    let globex = app.tenant_token(&admin, "globex", ALL).await;

    let acme_customer = create_customer(&router, &acme, "A-1").await;
    create_customer(&router, &acme, "A-2").await;
    let globex_customer = create_customer(&router, &globex, "G-1").await;

    let (_, page) = router
        .call(Method::GET, "/v1/customers", Some(&acme), None)
        .await;
    assert_eq!(codes(&page), ["A-1", "A-2"]);
    let (_, page) = router
        .call(Method::GET, "/v1/customers", Some(&globex), None)
        .await;
    assert_eq!(codes(&page), ["G-1"]);
    // The same code in two tenants is two customers.
    create_customer(&router, &globex, "A-1").await;

    let globex_id = globex_customer["id"].as_str().expect("id");
    let (status, body) = router
        .call(
            Method::GET,
            &format!("/v1/customers/{globex_id}"),
            Some(&acme),
            None,
        )
        .await;
    assert_problem(status, &body, 404, "customer_not_found");
    let acme_id = acme_customer["id"].as_str().expect("id");
    let (status, body) = router
        .call(
            Method::GET,
            &format!("/v1/customers/{acme_id}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (200, Some("A-1")));

    // Editing the tenant claim to point at another tenant breaks the signature.
    let globex_tenant = {
        let payload = globex.split('.').nth(1).expect("payload");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        claims["tenant"].clone()
    };
    let mut parts: Vec<String> = acme.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    claims["tenant"] = globex_tenant;
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let (status, body) = router
        .call(Method::GET, "/v1/customers", Some(&parts.join(".")), None)
        .await;
    assert_problem(status, &body, 401, "invalid_token");

    // Scopes are enforced per route.
    let read_only = app.tenant_token(&admin, "acme", &["customers.read"]).await;
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&read_only),
            Some(json!({ "code": "X", "name": "X" })),
        )
        .await;
    assert_problem(status, &body, 403, "forbidden");
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&acme),
            Some(json!({ "code": "A-1", "name": "Dup" })),
        )
        .await;
    assert_problem(status, &body, 409, "customer_exists");
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&acme),
            Some(json!({ "code": "", "name": "x", "extra": 1 })),
        )
        .await;
    assert_problem(status, &body, 422, "invalid_body");
}

#[tokio::test]
async fn bad_tokens_of_every_kind_are_refused() {
    let (app, admin) = platform_with_tenants(&["acme"]).await;
    let router = app.start_router(&[]).await;
    let good = app.tenant_token(&admin, "acme", ALL).await;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(good.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("json");
    let now = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        claims
    };
    let kid = app.signing_key.kid().to_owned();
    // A correctly signed forgery works, so each refusal below is about its one flaw.
    let (status, _) = router
        .call(
            Method::GET,
            "/v1/customers",
            Some(&app.signing_key.sign(&with(&|_| {})).expect("sign")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (stranger, _) = TokenKey::generate().expect("key");
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(app.signing_key.public_pem().as_bytes()),
        )
        .expect("sign")
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": kid }).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        ("unsigned (alg none)", none),
        (
            "signed by an unknown key",
            stranger.sign(&claims).expect("sign"),
        ),
        ("HS256 keyed with the public key", hs256),
        ("wrong audience (an admin token)", app.admin_token().await),
        (
            "wrong aud",
            app.signing_key
                .sign(&with(&|c| c["aud"] = json!("tenancy-admin")))
                .expect("sign"),
        ),
        (
            "wrong iss",
            app.signing_key
                .sign(&with(&|c| c["iss"] = json!("elsewhere")))
                .expect("sign"),
        ),
        (
            "missing exp",
            app.signing_key
                .sign(&with(&|c| {
                    c.as_object_mut().expect("object").remove("exp");
                }))
                .expect("sign"),
        ),
        (
            "expired",
            app.signing_key
                .sign(&with(&|c| c["exp"] = json!(now - 120)))
                .expect("sign"),
        ),
        (
            "exp as a string",
            app.signing_key
                .sign(&with(&|c| c["exp"] = json!((now + 600).to_string())))
                .expect("sign"),
        ),
        (
            "unknown tenant",
            app.signing_key
                .sign(&with(&|c| c["tenant"] = json!(uuid::Uuid::new_v4())))
                .expect("sign"),
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (name, token) in cases {
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "invalid_token", "{name}: {body}");
    }
    let (status, body) = router.call(Method::GET, "/v1/customers", None, None).await;
    assert_problem(status, &body, 401, "missing_token");
}

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

    let (status, _) = app
        .call(Method::POST, "/v1/tenants/acme/suspend", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let took = wait_for_status(&router, &token, 403, Duration::from_secs(1)).await;
    let (_, body) = router
        .call(Method::GET, "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(body["code"], "tenant_suspended");
    println!("suspension reached the router in {took:?}");

    let (status, _) = app
        .call(Method::POST, "/v1/tenants/acme/resume", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    wait_for_status(&router, &token, 200, Duration::from_secs(1)).await;

    // Deleted: 401. A new tenant with the same slug does not honour the old token.
    let (status, _) = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme?final_backup=skip",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
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
    let metrics = router
        .client
        .get(format!("{}/metrics", router.base_url))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
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

#[tokio::test]
async fn the_server_connection_cap_holds_and_waiters_get_503_not_a_hang() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    // A budget of 4 connections on this server for all tenants together.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/servers",
            Some(&admin),
            Some(json!({
            "name": "small", "host": "127.0.0.1", "port": app.postgres.server.port(),
            "admin_user": "postgres", "admin_password": app.postgres.server.superuser_password(),
            "max_tenants": 50, "connection_budget": 4 })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
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
    let mut lockers = Vec::new();
    for database in &databases {
        use sqlx::Connection;
        let mut locker = sqlx::PgConnection::connect(&app.postgres.server.superuser_url(database))
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
        lockers.push(locker);
    }
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
async fn a_stopped_server_gives_fast_503s_and_traffic_resumes_when_it_returns() {
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

    let _back = EmbeddedPostgres::start(PostgresOptions {
        port: Some(port),
        ..PostgresOptions::for_tests(data_dir)
    })
    .expect("restart the tenant server");
    let returned = Instant::now();
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
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
            break;
        }
        assert_eq!(status, 201, "{body}");
        assert!(
            Instant::now() < deadline,
            "the storage limit was never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = router
            .call(
                Method::POST,
                "/v1/customers",
                Some(&token),
                Some(json!({ "code": format!("C-{requests}"), "name": "C" })),
            )
            .await;
        requests += 1;
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The requests reach the usage figures; another tenant's stay at zero.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, usage) = app
            .call(Method::GET, "/v1/tenants/acme/usage", Some(&admin), None)
            .await;
        assert_eq!(status, 200, "{usage}");
        if usage["requests_last_24h"].as_i64() == Some(requests) {
            assert!(usage["storage"]["bytes"].as_i64().expect("sampled") > 1_000_000);
            assert_eq!(usage["storage"]["limit_bytes"], 10240_i64 * 1_048_576);
            assert_eq!(usage["storage"]["exceeded"], false);
            assert_eq!(usage["hourly_requests"].as_array().expect("hours").len(), 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage shows {usage}, expected {requests} requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, other) = app
        .call(Method::GET, "/v1/tenants/globex/usage", Some(&admin), None)
        .await;
    assert_eq!(other["requests_last_24h"], 0);
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
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/acme", Some(&admin), None)
        .await;
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
