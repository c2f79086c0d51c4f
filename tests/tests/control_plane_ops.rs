//! Operational endpoints of the control-plane binary, and its behaviour when the catalog
//! goes away.

use std::time::Duration;

use reqwest::Method;
use tenancy_infra::{EmbeddedPostgres, PostgresOptions};
use tenancy_tests::{ControlPlane, assert_problem, eventually};

#[tokio::test]
async fn health_metrics_and_an_openapi_document_that_matches_the_routes() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    let (status, body) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    let (status, body) = app.call(Method::GET, "/v1/nothing-here", None, None).await;
    assert_problem(status, &body, 404, "not_found");
    let (status, body) = app
        .call(Method::DELETE, "/v1/plans", Some(&token), None)
        .await;
    assert_problem(status, &body, 405, "method_not_allowed");

    let (status, openapi) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(openapi["openapi"], "3.1.0");
    let paths = openapi["paths"].as_object().expect("paths");
    for expected in [
        "/v1/auth/login",
        "/v1/plans",
        "/v1/plans/{name}",
        "/v1/audit-log",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // Every documented operation exists on the server (it may refuse the empty request,
    // but never with "no such route" or "wrong method").
    for (path, operations) in paths {
        let concrete = path
            .replace("{name}", "trial")
            .replace("{slug}", "no-such-tenant");
        for method in operations.as_object().expect("operations").keys() {
            let method: Method = method.to_uppercase().parse().expect("an HTTP method");
            let (status, body) = app
                .call(method.clone(), &concrete, Some(&token), None)
                .await;
            let missing_route = body["code"] == "not_found" || status == 405;
            assert!(
                !missing_route,
                "{method} {concrete} is documented but answers {status}: {body}"
            );
        }
    }

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains(r#"tenancy_control_plane_http_requests_total{method="GET",route="/healthz",status="200"}"#), "{metrics}");
    assert!(
        metrics.contains(r#"route="/v1/plans/{name}""#),
        "route templates, not raw paths: {metrics}"
    );
    assert!(
        metrics.contains("tenancy_control_plane_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stopped_catalog_gives_503_without_internal_detail_and_recovers() {
    let mut app = ControlPlane::start().await;
    let token = app.admin_token().await;
    let port = app.postgres.server.port();
    let data_dir = app.postgres.server.data_dir().to_path_buf();
    app.postgres.server.stop().expect("stop PostgreSQL");

    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_problem(status, &body, 503, "unavailable");
    let (status, body) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
    assert_eq!(status, 503, "{body}");
    let text = body.to_string();
    for leak in [
        "postgres",
        "sqlx",
        "127.0.0.1",
        "connection refused",
        "catalog",
    ] {
        assert!(
            !text.to_lowercase().contains(leak),
            "the answer leaks `{leak}`: {text}"
        );
    }
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "liveness does not depend on the catalog");

    // The same server comes back on the same port: the control plane recovers by itself.
    let _restarted = EmbeddedPostgres::start(PostgresOptions {
        port: Some(port),
        ..PostgresOptions::for_tests(data_dir)
    })
    .expect("restart PostgreSQL");
    eventually(Duration::from_secs(15), "recovery", async || {
        let (status, body) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
        assert!(matches!(status, 200 | 503), "no recovery: {status} {body}");
        if status == 200 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    let (status, _) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
}
