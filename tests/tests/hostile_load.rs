//! Hostile load against the real binaries: login storms, slow clients, oversized headers,
//! and bad text in every input of every route. Each must get a bounded, 4xx (or 503 with
//! Retry-After) answer, and the services must go on serving everyone else.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tenancy_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, ControlPlane, tenantctl_admin_create};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A counter's value in an OpenMetrics text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The most memory a process has held (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_storm_verifies_at_most_five_passwords_in_bounded_memory() {
    let app = ControlPlane::start().await;
    let other = tenantctl_admin_create(&app.database_url, "other@example.com", ADMIN_PASSWORD);
    assert!(other.status.success(), "{other:?}");
    let before = peak_rss_mib(app.process.child.id());

    let storm: Vec<_> = (0..200)
        .map(|n| {
            let client = app.client.clone();
            let url = app.url("/v1/auth/login");
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(
                        &json!({ "email": ADMIN_EMAIL, "password": format!("wrong password {n}") }),
                    )
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body: Value = response.json().await.expect("a problem document");
                (
                    status,
                    retry_after,
                    body["code"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in storm {
        answers.push(task.await.expect("join"));
    }
    for (status, retry_after, code) in &answers {
        assert!(
            (*status == 401 && code == "invalid_credentials")
                || (*status == 503 && code == "busy" && *retry_after),
            "{status} {code}"
        );
    }
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let verified = metric(
        &metrics,
        "tenancy_control_plane_password_checks_total{outcome=\"verified\"}",
    );
    assert!(
        (1.0..=5.0).contains(&verified),
        "{verified} passwords verified for 200 attempts"
    );
    let peak = peak_rss_mib(app.process.child.id());
    println!(
        "200 parallel wrong-password logins: {verified} verified, {} refused as busy, peak RSS {before:.0} MiB before, {peak:.0} MiB after",
        answers.iter().filter(|(status, ..)| *status == 503).count()
    );
    assert!(peak < 160.0, "peak RSS {peak:.0} MiB");

    // The account is locked: the right password gets the answer an unknown e-mail gets.
    let login = |email: &'static str| {
        app.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": email, "password": ADMIN_PASSWORD })),
        )
    };
    let (status, locked) = login(ADMIN_EMAIL).await;
    let (_, unknown) = login("nobody@example.com").await;
    assert_eq!(status, 401);
    assert_eq!(locked, unknown);
    // Other admins are not locked out.
    let (status, body) = login("other@example.com").await;
    assert_eq!(status, 200, "{body}");
}

/// Opens `count` connections that send a request's headers one byte a second (for at
/// most `seconds`), and returns them.
async fn slow_clients(
    address: &str,
    count: usize,
    seconds: u64,
) -> Vec<tokio::task::JoinHandle<bool>> {
    let mut clients = Vec::new();
    for _ in 0..count {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        clients.push(tokio::spawn(async move {
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .is_err()
            {
                return true;
            }
            for _ in 0..seconds {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stream.write_all(b"a").await.is_err() {
                    return true; // Cut off by the server.
                }
            }
            // Cut off means: the server closed it (read sees the end, or an error).
            let mut buffer = [0u8; 256];
            matches!(
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await,
                Ok(Ok(0) | Err(_))
            )
        }));
    }
    clients
}

/// A request with a header block of `bytes`, answered with this status.
async fn status_with_header_of(url: &str, bytes: usize) -> u16 {
    reqwest::Client::new()
        .get(url)
        .header("x-big", "a".repeat(bytes))
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_do_not_starve_others_and_big_headers_are_refused() {
    let env = [("TENANCY_HEADER_READ_TIMEOUT", "2s")];
    let app = ControlPlane::start_with(&env).await;
    let router = app.start_router(&env).await;
    for base in [app.base_url.clone(), router.base_url.clone()] {
        let address = base.trim_start_matches("http://").to_owned();
        let slow = slow_clients(&address, 100, 6).await;
        // A normal request meanwhile answers at once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = Instant::now();
        let response = reqwest::get(format!("{base}/healthz"))
            .await
            .expect("healthz");
        let took = started.elapsed();
        assert_eq!(response.status(), 200);
        println!("{base}: /healthz in {took:?} with 100 slow clients");
        assert!(took < Duration::from_secs(1), "{base}: {took:?}");
        // The slow ones are cut off after the header read timeout.
        let mut cut = 0;
        for client in slow {
            cut += usize::from(client.await.expect("join"));
        }
        assert_eq!(cut, 100, "{base}: every slow client was disconnected");
        // Headers beyond the bound: 431, and the service goes on.
        assert_eq!(
            status_with_header_of(&format!("{base}/healthz"), 64 * 1024).await,
            431
        );
        assert_eq!(
            status_with_header_of(&format!("{base}/healthz"), 4 * 1024).await,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = ControlPlane::start_with(&[
        ("TENANCY_MAX_CONNECTIONS", "10"),
        ("TENANCY_HEADER_READ_TIMEOUT", "2s"),
    ])
    .await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    // Ten connections that never send a byte take every slot.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(&address).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered once a slot is free");
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    println!("the 11th connection was served after {took:?}");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(6),
        "served only once the idle connections were cut off: {took:?}"
    );
}

/// A plausible value for a field, so that only the field under test is bad.
fn sample(name: &str, schema: &Value, spec: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return sample_object(&spec["components"]["schemas"][name], spec);
    }
    match schema["type"].as_str() {
        Some("integer") => json!(schema["minimum"].as_i64().unwrap_or(1).max(1)),
        Some("boolean") => json!(true),
        Some("array") => json!(["customers.read"]),
        Some("object") => sample_object(schema, spec),
        _ => json!(match name {
            "email" => "fuzz@example.com",
            "password" => "not the password at all",
            "admin_email" => "owner@fuzz.example",
            "admin_password" => "a long enough password",
            "slug" => "fuzz-tenant",
            "plan" => "standard",
            "host" => "127.0.0.1",
            "admin_user" => "postgres",
            "code" => "FUZZ-1",
            _ => "fuzz",
        }),
    }
}

fn sample_object(schema: &Value, spec: &Value) -> Value {
    let mut object = serde_json::Map::new();
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            object.insert(name.clone(), sample(name, property, spec));
        }
    }
    Value::Object(object)
}

/// The string fields of a body schema, as paths into the sample (`limits` nested).
fn string_fields(schema: &Value, spec: &Value, at: &[String], found: &mut Vec<Vec<String>>) {
    let schema = match schema["$ref"].as_str() {
        Some(reference) => {
            &spec["components"]["schemas"][reference.rsplit('/').next().unwrap_or_default()]
        }
        None => schema,
    };
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let mut path = at.to_vec();
            path.push(name.clone());
            if property["type"] == "string" || property["type"] == "array" {
                found.push(path.clone());
            }
            string_fields(property, spec, &path, found);
        }
    }
}

fn set(body: &mut Value, path: &[String], value: Value) {
    let mut target = body;
    for key in &path[..path.len() - 1] {
        target = &mut target[key.as_str()];
    }
    let old = &target[path[path.len() - 1].as_str()];
    let value = if old.is_array() {
        json!([value])
    } else {
        value
    };
    target[path[path.len() - 1].as_str()] = value;
}

struct Service<'a> {
    base: String,
    token: &'a str,
    spec: Value,
    /// Values for path parameters that name something that exists.
    path_values: Vec<(&'static str, String)>,
}

/// Sends every bad variant of every input of every documented operation; returns what
/// did not get a 4xx problem document.
async fn fuzz(service: &Service<'_>) -> (usize, Vec<String>) {
    let long = "a".repeat(10_000);
    let client = reqwest::Client::new();
    let mut sent = 0;
    let mut wrong = Vec::new();
    let paths = service.spec["paths"].as_object().expect("paths");
    for (template, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let mut path = template.clone();
            for (name, value) in &service.path_values {
                path = path.replace(&format!("{{{name}}}"), value);
            }
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let body_schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let sample_body =
                (!body_schema.is_null()).then(|| sample("", body_schema, &service.spec));
            let mut requests: Vec<(String, Option<Vec<u8>>, String)> = Vec::new();
            // Path parameters.
            for parameter in parameters.iter().filter(|p| p["in"] == "path") {
                let name = parameter["name"].as_str().unwrap_or_default();
                for bad in ["%00", "%FF%FE", long.as_str()] {
                    let (_, good) = service
                        .path_values
                        .iter()
                        .find(|(known, _)| *known == name)
                        .expect("a value for every path parameter");
                    requests.push((
                        path.replacen(good.as_str(), bad, 1),
                        sample_body
                            .as_ref()
                            .map(|body| body.to_string().into_bytes()),
                        format!("path {name}={}", &bad[..bad.len().min(8)]),
                    ));
                }
            }
            // Query parameters.
            for parameter in parameters.iter().filter(|p| p["in"] == "query") {
                let name = parameter["name"].as_str().unwrap_or_default();
                for bad in ["%00", "%FF%FE", long.as_str()] {
                    requests.push((
                        format!("{path}?{name}={bad}"),
                        None,
                        format!("query {name}={}", &bad[..bad.len().min(8)]),
                    ));
                }
            }
            // Body fields.
            if let Some(sample_body) = &sample_body {
                let mut fields = Vec::new();
                string_fields(body_schema, &service.spec, &[], &mut fields);
                for field in fields {
                    for bad in ["nul\u{0}inside", long.as_str()] {
                        let mut body = sample_body.clone();
                        set(&mut body, &field, json!(bad));
                        requests.push((
                            path.clone(),
                            Some(body.to_string().into_bytes()),
                            format!("body {} = {}", field.join("."), &bad[..bad.len().min(8)]),
                        ));
                    }
                    let raw =
                        format!("{{\"{}\":\"bad \u{0}\"}}", field[0]).replace('\u{0}', "\u{1}");
                    let mut raw = raw.into_bytes();
                    let at = raw.iter().position(|byte| *byte == 1).expect("marker");
                    raw[at] = 0xFF;
                    requests.push((
                        path.clone(),
                        Some(raw),
                        format!("body {} invalid UTF-8", field[0]),
                    ));
                }
            }
            for (url_path, body, what) in requests {
                let mut request = client
                    .request(method.clone(), format!("{}{url_path}", service.base))
                    .bearer_auth(service.token);
                if let Some(body) = body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body);
                }
                let response = request.send().await.expect("an answer");
                sent += 1;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if !(400..500).contains(&status) || !body["code"].is_string() {
                    wrong.push(format!("{method} {template} [{what}]: {status} {body}"));
                }
            }
        }
    }
    (sent, wrong)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_text_in_every_input_of_every_route_gets_a_4xx_problem_document() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 50)
        .await;
    let (status, _) = app.create_tenant(&admin, "acme").await;
    assert_eq!(status, 201);
    let router = app.start_router(&[]).await;
    let tenant = app
        .tenant_token(&admin, "acme", &["customers.read", "customers.write"])
        .await;
    let (status, customer) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&tenant),
            Some(json!({ "code": "C-1", "name": "First" })),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    let control_spec: Value = reqwest::get(app.url("/openapi.json"))
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    let router_spec: Value = reqwest::get(format!("{}/openapi.json", router.base_url))
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    let services = [
        Service {
            base: app.base_url.clone(),
            token: &admin,
            spec: control_spec,
            path_values: vec![("slug", "acme".to_owned()), ("name", "standard".to_owned())],
        },
        Service {
            base: router.base_url.clone(),
            token: &tenant,
            spec: router_spec,
            path_values: vec![("id", customer["id"].as_str().expect("id").to_owned())],
        },
    ];
    let mut all_wrong = Vec::new();
    for service in &services {
        let (sent, wrong) = fuzz(service).await;
        println!(
            "{}: {sent} requests with bad text, {} not a 4xx problem",
            service.base,
            wrong.len()
        );
        all_wrong.extend(wrong);
    }
    assert!(all_wrong.is_empty(), "{:#?}", all_wrong);
    // Nothing was half-made meanwhile: the tenant and its one customer are as they were.
    let (status, body) = app.tenant(&admin, "acme").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));
    let (_, page) = router
        .call(Method::GET, "/v1/customers", Some(&tenant), None)
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
}
