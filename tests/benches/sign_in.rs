//! Sign-in and the signed-in user's requests, against a customer point read in the same
//! run on the same router and server:
//! - `GET /v1/customers/{id}` with a service token (the baseline: no per-request lookup);
//! - the same read with a user token (its session and permission read on every request);
//! - `GET /v1/auth/me` with a user token;
//! - `POST /v1/auth/login` (argon2id-bound), beside argon2id verifications alone, in
//!   process, one per core (the ceiling sign-in cannot pass).
//!
//! Closed-loop clients in this process (reqwest), `TENANCY_BENCH_CONNECTIONS` of them
//! (default 32; sign-in uses 2 per core). Run: `cargo bench -p tenancy-tests --bench sign_in`.
//! `TENANCY_BENCH_SECONDS` (default 10) sets each phase's length.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tenancy_tests::bench::{Figures, env_or, load, platform, print_table};
use tenancy_tests::json;

type Error = Box<dyn std::error::Error>;

const PASSWORD: &str = "a long enough password";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let seconds: u64 = env_or("TENANCY_BENCH_SECONDS", 10);
    let connections: usize = env_or("TENANCY_BENCH_CONNECTIONS", 32);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let period = Duration::from_secs(seconds);

    let (app, admin, router) = platform("bench").await;
    let router = Arc::new(router);
    let service = app
        .tenant_token(&admin, "bench", &["customers.read", "customers.write"])
        .await;
    let mut ids = Vec::new();
    for n in 0..200 {
        let (status, body) = router
            .call(
                Method::POST,
                "/v1/customers",
                Some(&service),
                Some(json!({ "code": format!("C-{n}"), "name": format!("Customer {n}") })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().ok_or("id")?.to_owned());
    }
    let ids = Arc::new(ids);
    let credentials = json!({ "email": "owner@bench.example", "password": PASSWORD });
    let tokens = sign_in(&router, &credentials).await?;
    let user = tokens["access_token"].as_str().ok_or("token")?.to_owned();

    let mut results = Vec::new();
    let read = |token: String| {
        let ids = ids.clone();
        move |client: &reqwest::Client, base: &str, n: usize| {
            client
                .get(format!("{base}/v1/customers/{}", ids[n % ids.len()]))
                .bearer_auth(&token)
        }
    };
    results.push(
        load(
            "customer read, service token",
            &router.base_url,
            connections,
            period,
            read(service.clone()),
        )
        .await,
    );
    results.push(
        load(
            "customer read, user token",
            &router.base_url,
            connections,
            period,
            read(user.clone()),
        )
        .await,
    );
    let me = user.clone();
    results.push(
        load(
            "GET /v1/auth/me, user token",
            &router.base_url,
            connections,
            period,
            move |client, base, _| client.get(format!("{base}/v1/auth/me")).bearer_auth(&me),
        )
        .await,
    );
    let body = credentials.clone();
    results.push(
        load(
            "POST /v1/auth/login",
            &router.base_url,
            cores * 2,
            period,
            move |client, base, _| {
                client
                    .post(format!("{base}/v1/auth/login"))
                    .header("x-tenant", "bench")
                    .json(&body)
            },
        )
        .await,
    );
    results.push(argon2_alone(cores, period).await);

    let argon2 = results[4].per_second;
    print_table(
        &format!("sign-in and user requests, {seconds} s per phase, {cores} cores"),
        &results,
    );
    println!(
        "sign-in reaches {:.0} % of the argon2id ceiling on this machine",
        100.0 * results[3].per_second / argon2
    );
    Ok(())
}

async fn sign_in(
    router: &tenancy_tests::TenantRouter,
    credentials: &Value,
) -> Result<Value, Error> {
    let response = router
        .client
        .post(format!("{}/v1/auth/login", router.base_url))
        .header("x-tenant", "bench")
        .json(credentials)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(response.json().await?)
}

/// argon2id verifications of the same kind of hash, one thread per core, no HTTP.
async fn argon2_alone(cores: usize, period: Duration) -> Figures {
    let hash = tenancy_core::password::hash_password(PASSWORD).expect("hash");
    let deadline = Instant::now() + period;
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let hash = hash.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    assert!(tenancy_core::password::verify_password(&hash, PASSWORD));
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("a thread"))
        .collect();
    Figures::from_latencies("argon2id verify alone (ceiling)", latencies, 0, period)
}
