//! What keeps the router's hot path light with many tenants: the verified-token cache (never
//! past `exp`, never for a tenant that may not be served), frequency-aware eviction, fair
//! waiting, pre-warming.

use std::collections::HashMap;

use super::*;

/// A counter of the router's metrics (0 when not yet reported).
async fn counter(router: &TenantRouter, series: &str) -> u64 {
    router.metric(series).await.map_or(0, |value| value as u64)
}

const HITS: &str = r#"tenancy_router_token_cache_lookups_total{result="hit"}"#;
const MISSES: &str = r#"tenancy_router_token_cache_lookups_total{result="miss"}"#;

/// A service token for `slug` like the control plane's, expiring at `exp`.
async fn token_expiring(app: &ControlPlane, admin: &str, slug: &str, exp: i64) -> String {
    let issued = app.tenant_token(admin, slug, ALL).await;
    let mut claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(issued.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("json");
    claims["exp"] = json!(exp);
    app.signing_key.sign(&claims).expect("sign")
}

#[tokio::test]
async fn the_token_cache_never_serves_a_token_past_its_exp_nor_for_a_tenant_gone() {
    let (app, admin) = platform_with_tenants(&["cached", "doomed"]).await;
    let router = app.start_router(&[]).await;

    // Seen twice: the second time from the cache.
    let soon = chrono::Utc::now().timestamp() + 3;
    let token = token_expiring(&app, &admin, "cached", soon).await;
    let (status, _) = router.customers(&token).await;
    assert_eq!(status, 200);
    let hits = counter(&router, HITS).await;
    let (status, _) = router.customers(&token).await;
    assert_eq!(status, 200);
    assert_eq!(
        counter(&router, HITS).await,
        hits + 1,
        "served from the cache"
    );

    // Past `exp`, the cache does not answer: the token goes through the verifier again
    // (which allows a few seconds of clock skew, then refuses it).
    while chrono::Utc::now().timestamp() <= soon {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (hits, misses) = (counter(&router, HITS).await, counter(&router, MISSES).await);
    let _ = router.customers(&token).await;
    assert_eq!(
        counter(&router, HITS).await,
        hits,
        "not from the cache past exp"
    );
    assert_eq!(counter(&router, MISSES).await, misses + 1);
    eventually(
        Duration::from_secs(10),
        "the expired token refused",
        || async {
            let (status, body) = router.customers(&token).await;
            status == 401 && body["code"] == "invalid_token"
        },
    )
    .await;

    // A cached token of a tenant that is then suspended, then deleted: refused at once.
    let token = app.tenant_token(&admin, "doomed", ALL).await;
    for _ in 0..2 {
        let (status, _) = router.customers(&token).await;
        assert_eq!(status, 200);
    }
    let (status, _) = app.suspend(&admin, "doomed").await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(1), "suspended: 403", || async {
        let (status, body) = router.customers(&token).await;
        status == 403 && body["code"] == "tenant_suspended"
    })
    .await;
    app.delete_tenant_now(&admin, "doomed", FinalBackup::Skip)
        .await;
    let hits = counter(&router, HITS).await;
    eventually(Duration::from_secs(1), "deleted: 401", || async {
        let (status, _) = router.customers(&token).await;
        status == 401
    })
    .await;
    assert!(
        counter(&router, HITS).await > hits,
        "the cache still knew the token; the directory refused it"
    );
}

#[tokio::test]
async fn a_cold_stampede_of_500_tenants_reads_each_from_the_catalog_once() {
    let app = ControlPlane::start().await;
    // 500 tenants in the catalog (suspended: the router answers from the directory alone).
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO tenants (id, slug, name, plan, status) \
         SELECT gen_random_uuid(), 'cold-' || n, 'Cold ' || n, 'standard', 'suspended' \
         FROM generate_series(1, 500) AS n RETURNING id",
    )
    .fetch_all(&mut catalog)
    .await
    .expect("500 tenants");
    let router = app.start_router(&[]).await;
    let now = chrono::Utc::now().timestamp();
    let tokens: Vec<String> = ids
        .iter()
        .map(|id| {
            app.signing_key
                .sign(&json!({
                    "sub": "service:stampede", "iss": "tenancy-control-plane",
                    "aud": "tenancy-tenant", "iat": now, "exp": now + 600,
                    "jti": uuid::Uuid::new_v4(), "tenant": id, "scopes": ["customers.read"],
                }))
                .expect("sign")
        })
        .collect();
    let reads = "tenancy_router_directory_catalog_reads_total";
    assert_eq!(counter(&router, reads).await, 0, "cold");

    // Every tenant at once, four requests each arriving together.
    use futures::StreamExt;
    let answers: Vec<Vec<(u16, Value)>> = futures::stream::iter(tokens.iter())
        .map(|token| {
            let router = &router;
            async move { futures::future::join_all((0..4).map(|_| router.customers(token))).await }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let refused = answers
        .iter()
        .flatten()
        .filter(|(status, body)| *status == 403 && body["code"] == "tenant_suspended")
        .count();
    assert_eq!(refused, 2000, "every request answered from the directory");
    let read = counter(&router, reads).await;
    assert!(read <= 500, "{read} catalog reads for 500 tenants");
    assert!(read >= 500, "each tenant read once: {read}");
    assert_eq!(
        counter(&router, "tenancy_router_directory_entries").await,
        500
    );
}

#[tokio::test]
async fn a_hot_tenant_saturating_its_pool_cannot_starve_fifty_cold_ones() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    add_server_with_budget(&app, &admin, "shared", 100, 8).await;
    let mut cold = tenants_with_tokens(&app, &admin, "fair", 51).await;
    let hot = cold.pop().expect("the hot tenant");
    let wait = Duration::from_secs(2);
    let router = app.start_router(&[("TENANCY_POOL_WAIT", "2s")]).await;

    // The hot tenant: 32 clients back to back for the whole test.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let hot_load = futures::future::join_all((0..32).map(|_| async {
        let mut served = 0_u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (status, _) = router.customers(&hot).await;
            if status == 200 {
                served += 1;
            }
        }
        served
    }));
    // Meanwhile each cold tenant, one after another, three requests: each answered, and
    // within the bounded wait.
    let cold_load = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut slowest = Duration::ZERO;
        let mut refused = Vec::new();
        for (index, token) in cold.iter().enumerate() {
            for _ in 0..3 {
                let started = Instant::now();
                let (status, body) = router.customers(token).await;
                slowest = slowest.max(started.elapsed());
                if status != 200 {
                    refused.push(format!("fair-{index}: {status} {body}"));
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (slowest, refused)
    };
    let (hot_served, (slowest, refused)) = tokio::join!(hot_load, cold_load);
    assert!(refused.is_empty(), "cold tenants refused: {refused:?}");
    assert!(
        slowest < wait + Duration::from_millis(500),
        "a cold request waited {slowest:?}"
    );
    let hot_served: u32 = hot_served.iter().sum();
    assert!(
        hot_served > 150,
        "the hot tenant was served too: {hot_served}"
    );
}

#[tokio::test]
async fn a_busy_tenant_takes_connections_other_tenants_left_idle_but_not_recently_used_ones() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    // A budget of 8: a tenant may hold at most half of it (4).
    let server = add_server_with_budget(&app, &admin, "full", 100, 8).await;
    let (status, busy) = app.create_tenant(&admin, "burst").await;
    assert_eq!(status, 201, "{busy}");
    let busy_database = busy["database_name"].as_str().expect("database").to_owned();
    let busy_token = app.tenant_token(&admin, "burst", ALL).await;
    let sleepy = tenants_with_tokens(&app, &admin, "sleepy", 7).await;
    let router = app.start_router(&[("TENANCY_POOL_WAIT", "5s")]).await;
    let evictions = format!("tenancy_router_server_evictions_total{{server=\"{server}\"}}");

    // Every tenant one request: eight warm connections, the budget full.
    assert_eq!(router.customers(&busy_token).await.0, 200);
    for token in &sleepy {
        assert_eq!(router.customers(token).await.0, 200);
    }
    let used = Instant::now();
    // 16 clients on the busy tenant for `period`; the most router connections its database
    // had meanwhile.
    let burst = async |period: Duration| {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let load = futures::future::join_all((0..16).map(|_| async {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(router.customers(&busy_token).await.0, 200);
            }
        }));
        let watch = async {
            let started = Instant::now();
            let mut most = 0;
            while started.elapsed() < period {
                most = most.max(router_backends(&app, &busy_database).await.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            most
        };
        tokio::join!(load, watch).1
    };

    // The others' connections were just used: the busy tenant keeps to its one rather
    // than make them reopen theirs.
    let most = burst(Duration::from_secs(1)).await;
    assert!(
        used.elapsed() < Duration::from_secs(5),
        "the burst ended before the others' connections were idle for 5 s"
    );
    assert_eq!(most, 1, "one connection while the others are recently used");
    assert_eq!(counter(&router, &evictions).await, 0);

    // Idle for 5 s, the others' connections go to the busy tenant, up to its half of the
    // budget; the server never holds more than the budget.
    tokio::time::sleep(
        Duration::from_secs(5).saturating_sub(used.elapsed()) + Duration::from_millis(500),
    )
    .await;
    let most = burst(Duration::from_secs(2)).await;
    assert_eq!(most, 4, "the busy tenant took its half of the budget");
    assert!(counter(&router, &evictions).await >= 3);
    let mut admin_connection =
        tenancy_tests::connect(&app.postgres.server.superuser_url("postgres")).await;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenancy-router'",
    )
    .fetch_one(&mut admin_connection)
    .await
    .expect("count");
    assert!(open <= 8, "{open} router connections on a budget of 8");

    // A sleepy tenant that comes back is served (its place made from an idle one).
    for token in &sleepy {
        assert_eq!(router.customers(token).await.0, 200);
    }
}

/// `count` tenants `<prefix>-<n>`, created through the API, and a token for each.
async fn tenants_with_tokens(
    app: &ControlPlane,
    admin: &str,
    prefix: &str,
    count: usize,
) -> Vec<String> {
    let mut tokens = Vec::new();
    for index in 0..count {
        let slug = format!("{prefix}-{index}");
        let (status, body) = app.create_tenant(admin, &slug).await;
        assert_eq!(status, 201, "{body}");
        tokens.push(app.tenant_token(admin, &slug, ALL).await);
    }
    tokens
}

/// The router's backends on a database: (pid, when each started).
async fn router_backends(app: &ControlPlane, database: &str) -> Vec<(i32, String)> {
    let mut admin = tenancy_tests::connect(&app.postgres.server.superuser_url("postgres")).await;
    sqlx::query_as(
        "SELECT pid, backend_start::text FROM pg_stat_activity \
         WHERE application_name = 'tenancy-router' AND datname = $1 ORDER BY pid",
    )
    .bind(database)
    .fetch_all(&mut admin)
    .await
    .expect("backends")
}

#[tokio::test]
async fn the_busiest_tenant_keeps_its_warm_connection_while_cold_tenants_come_and_go() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    let server = add_server_with_budget(&app, &admin, "tight", 100, 4).await;
    let (status, hot) = app.create_tenant(&admin, "busy").await;
    assert_eq!(status, 201, "{hot}");
    let hot_database = hot["database_name"].as_str().expect("database").to_owned();
    let hot_token = app.tenant_token(&admin, "busy", ALL).await;
    let cold = tenants_with_tokens(&app, &admin, "rare", 12).await;
    let router = app.start_router(&[]).await;

    // The busy tenant, one request after another: one warm connection serves it.
    for _ in 0..50 {
        assert_eq!(router.customers(&hot_token).await.0, 200);
    }
    let warm = router_backends(&app, &hot_database).await;
    assert_eq!(warm.len(), 1, "one warm connection: {warm:?}");

    // Twelve rare tenants, three rounds, on a budget of 4, while the busy one goes on:
    // each rare request needs a connection, and what makes room is another rare tenant's.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy = async {
        let mut served = 0_u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            assert_eq!(router.customers(&hot_token).await.0, 200);
            served += 1;
        }
        served
    };
    let rare = async {
        for _ in 0..3 {
            for token in &cold {
                let (status, body) = router.customers(token).await;
                assert_eq!(status, 200, "{body}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (served, ()) = tokio::join!(busy, rare);
    assert!(served > 0);
    let evictions = counter(
        &router,
        &format!("tenancy_router_server_evictions_total{{server=\"{server}\"}}"),
    )
    .await;
    assert!(
        evictions >= 20,
        "the rare tenants made room for each other: {evictions} evictions"
    );
    // The busy tenant's connection is the very one it had: never evicted, never reopened.
    let after = router_backends(&app, &hot_database).await;
    assert!(
        after.contains(&warm[0]),
        "the busy tenant's warm connection survived: before {warm:?}, after {after:?}"
    );
}

#[tokio::test]
async fn a_restarted_router_prewarms_the_busiest_tenants() {
    let (app, admin) = platform_with_tenants(&["warm-a", "warm-b", "warm-c"]).await;
    let mut databases = HashMap::new();
    for slug in ["warm-a", "warm-b", "warm-c"] {
        let (_, tenant) = app.tenant(&admin, slug).await;
        databases.insert(
            slug,
            tenant["database_name"].as_str().expect("db").to_owned(),
        );
    }
    let busy = ["warm-a", "warm-b"];
    {
        let router = app.start_router(&[("TENANCY_USAGE_FLUSH", "100ms")]).await;
        for slug in busy {
            let token = app.tenant_token(&admin, slug, ALL).await;
            for _ in 0..3 {
                let (status, _) = router.customers(&token).await;
                assert_eq!(status, 200);
            }
        }
        eventually(Duration::from_secs(5), "requests counted", || async {
            let (_, usage) = app.usage(&admin, "warm-b").await;
            usage["requests_last_24h"].as_i64() >= Some(3)
        })
        .await;
    }
    // The router is gone (its connections with it); a new one, before any request.
    let router_databases = async || -> Vec<String> {
        let mut admin =
            tenancy_tests::connect(&app.postgres.server.superuser_url("postgres")).await;
        sqlx::query_scalar(
            "SELECT datname FROM pg_stat_activity WHERE application_name = 'tenancy-router'",
        )
        .fetch_all(&mut admin)
        .await
        .expect("sessions")
    };
    eventually(
        Duration::from_secs(5),
        "the old router's sessions gone",
        || async { router_databases().await.is_empty() },
    )
    .await;
    let _router = app.start_router(&[]).await;
    eventually(
        Duration::from_secs(5),
        "the busy tenants pre-warmed",
        || async {
            let open = router_databases().await;
            busy.iter().all(|slug| open.contains(&databases[slug]))
        },
    )
    .await;
    assert!(
        !router_databases().await.contains(&databases["warm-c"]),
        "a tenant without requests is not"
    );
}

#[tokio::test]
async fn a_server_gets_no_more_connection_opens_per_second_than_its_rate() {
    let slugs: Vec<String> = (0..15).map(|index| format!("rate-{index}")).collect();
    let refs: Vec<&str> = slugs.iter().map(String::as_str).collect();
    let (app, admin) = platform_with_tenants(&refs).await;
    let mut tokens = Vec::new();
    for slug in &slugs {
        tokens.push(app.tenant_token(&admin, slug, ALL).await);
    }
    let router = app
        .start_router(&[
            ("TENANCY_SERVER_OPENS_PER_SECOND", "5"),
            ("TENANCY_POOL_WAIT", "6s"),
        ])
        .await;
    // 15 cold tenants at once: 5 connections at once, then 5 a second.
    let started = Instant::now();
    let answers =
        futures::future::join_all(tokens.iter().map(|token| router.customers(token))).await;
    let took = started.elapsed();
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert!(
        took >= Duration::from_millis(1800),
        "15 opens at 5 a second (5 at once) took {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}
