//! The portal's tenants page with 10,000 tenants in the catalog (each with its figures: users,
//! size, a day of hourly request counts): the first page, a plan filter, a search by name,
//! a page deep in the list, and one tenant's page (its charts and audit entries), each
//! rendered by the control plane, against the API's `GET /v1/tenants` (JSON, the same
//! query) in the same run.
//!
//! Latency is what matters here (the goal: p95 under 100 ms), so by default one client
//! sends requests back to back (`TENANCY_BENCH_CONNECTIONS`, default 1);
//! `TENANCY_BENCH_SECONDS` (default 10) sets each phase's length.
//! Run: `cargo bench -p tenancy-tests --bench portal`.

use std::time::Duration;

use reqwest::Method;
use tenancy_tests::bench::{env_or, load, print_table};
use tenancy_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, ControlPlane};

type Error = Box<dyn std::error::Error>;

const TENANTS: i64 = 10_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let seconds: u64 = env_or("TENANCY_BENCH_SECONDS", 10);
    let clients: usize = env_or("TENANCY_BENCH_CONNECTIONS", 1);
    let period = Duration::from_secs(seconds);

    // Jobs rarely: the rows below have no databases for them to look at.
    let app = ControlPlane::start_with(&[("TENANCY_JOBS_INTERVAL", "1h")]).await;
    let admin = app.admin_token().await;
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, plan, status, created_at) \
         SELECT gen_random_uuid(), 'tenant-' || n, 'Company ' || n || ' Ltd', \
                (ARRAY['trial', 'standard', 'enterprise'])[1 + n % 3], \
                (ARRAY['active', 'active', 'active', 'suspended'])[1 + n % 4], \
                now() - n * interval '1 second' \
         FROM generate_series(1, $1) AS n",
    )
    .bind(TENANTS)
    .execute(&mut catalog)
    .await?;
    // Figures for every row: users, a size, a request count for each hour of the day.
    sqlx::query(
        "UPDATE tenants SET users_count = 1 + (hashtext(slug) & 63), \
           storage_bytes = 8388608 + (hashtext(name) & 1048575) * 64, storage_sampled_at = now()",
    )
    .execute(&mut catalog)
    .await?;
    sqlx::query(
        "INSERT INTO usage_requests (tenant_id, hour, requests) \
         SELECT t.id, date_trunc('hour', now()) - h * interval '1 hour', 100 + h \
         FROM tenants t, generate_series(0, 23) AS h",
    )
    .execute(&mut catalog)
    .await?;
    sqlx::query("ANALYZE tenants").execute(&mut catalog).await?;
    sqlx::query("ANALYZE usage_requests")
        .execute(&mut catalog)
        .await?;

    // Sign in to the portal as a browser does.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = client
        .get(format!("{}/portal/login", app.base_url))
        .send()
        .await?;
    let login_cookie = cookie(&form, "tenancy_portal_login").ok_or("a sign-in cookie")?;
    let html = form.text().await?;
    let csrf = html
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("a CSRF field")?
        .to_owned();
    let signed_in = client
        .post(format!("{}/portal/login", app.base_url))
        .header("cookie", format!("tenancy_portal_login={login_cookie}"))
        .form(&[
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
            ("_csrf", &csrf),
        ])
        .send()
        .await?;
    let session = format!(
        "tenancy_portal={}",
        cookie(&signed_in, "tenancy_portal").ok_or("a session")?
    );
    // A cursor deep in the list: the API's, after 100 pages of 50.
    let (status, page) = app
        .call(
            Method::GET,
            "/v1/tenants?limit=500&status=active",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let mut cursor = page["next_cursor"].as_str().ok_or("a cursor")?.to_owned();
    for _ in 0..8 {
        let (_, page) = app
            .call(
                Method::GET,
                &format!("/v1/tenants?limit=500&status=active&cursor={cursor}"),
                Some(&admin),
                None,
            )
            .await;
        cursor = page["next_cursor"].as_str().ok_or("a cursor")?.to_owned();
    }

    let mut results = Vec::new();
    let token = admin.clone();
    results.push(
        load(
            "GET /v1/tenants (API, first 50)",
            &app.base_url,
            clients,
            period,
            move |client, base, _| {
                client
                    .get(format!("{base}/v1/tenants?limit=50"))
                    .bearer_auth(&token)
            },
        )
        .await,
    );
    for (name, query) in [
        ("portal tenants, first page", String::new()),
        ("portal tenants, plan filter", "?plan=standard".to_owned()),
        (
            "portal tenants, search by name",
            "?q=company+4242".to_owned(),
        ),
        (
            "portal tenants, page 91",
            format!("?status=active&cursor={cursor}"),
        ),
        (
            "portal tenant page (charts, audit)",
            "/tenant-42".to_owned(),
        ),
    ] {
        let session = session.clone();
        results.push(
            load(
                name,
                &app.base_url,
                clients,
                period,
                move |client, base, _| {
                    client
                        .get(format!("{base}/portal/tenants{query}"))
                        .header("cookie", &session)
                },
            )
            .await,
        );
    }
    print_table(
        &format!(
            "the portal's tenants page with {TENANTS} tenants, {seconds} s per phase, \
             {clients} client(s) back to back"
        ),
        &results,
    );
    Ok(())
}

/// The value a response's `Set-Cookie` gives `name`.
fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookie| {
            let pair = cookie.split(';').next()?;
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
}
