//! The tenant API for a tenant's own users, over HTTP against the real router and
//! PostgreSQL: sign-in, refresh rotation and reuse detection, lockout, users, roles and
//! permissions checked on every route, the audit log, the plan's user cap, and isolation
//! between tenants.

use reqwest::Method;
use serde_json::{Value, json};
use tenancy_tests::{ControlPlane, TenantRouter, assert_problem};

mod events;
mod isolation;
mod orders;
mod resources;
mod seed;
mod session;
mod sign_in;

const ADMIN_PASSWORD: &str = "a long enough password";
const USER_AGENT: &str = "tenancy-tests/1.0";

/// A platform with tenants (first admin `owner@<slug>.example`) and a router whose client
/// sends a user agent.
struct Platform {
    app: ControlPlane,
    admin: String,
    router: TenantRouter,
    /// The router's OpenAPI document: every answer a test sees must be documented, and
    /// its body must match the documented schema.
    openapi: Value,
    /// Compiled response schemas, by JSON pointer.
    validators:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl Platform {
    async fn start(slugs: &[&str], router_env: &[(&str, &str)]) -> Self {
        let app = ControlPlane::start().await;
        let admin = app.admin_token().await;
        app.add_server(&admin, "main", &app.postgres.server, 50)
            .await;
        for slug in slugs {
            let (status, body) = app.create_tenant(&admin, slug).await;
            assert_eq!(status, 201, "{body}");
        }
        let mut router = app.start_router(router_env).await;
        router.client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            .expect("a client");
        let (status, openapi) = router.call(Method::GET, "/openapi.json", None, None).await;
        assert_eq!(status, 200);
        Self {
            app,
            admin,
            router,
            openapi,
            validators: std::sync::Mutex::default(),
        }
    }

    /// `POST /v1/auth/login` naming the tenant by `X-Tenant`.
    async fn login(&self, slug: &str, email: &str, password: &str) -> (u16, Value) {
        self.send(
            Method::POST,
            "/v1/auth/login",
            None,
            &[("x-tenant", slug)],
            Some(json!({ "email": email, "password": password })),
        )
        .await
    }

    /// Signs in; the tokens.
    async fn sign_in(&self, slug: &str, email: &str, password: &str) -> Value {
        let (status, body) = self.login(slug, email, password).await;
        assert_eq!(status, 200, "sign-in of {email}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        body
    }

    /// The first admin's access token.
    async fn owner(&self, slug: &str) -> String {
        let tokens = self
            .sign_in(slug, &format!("owner@{slug}.example"), ADMIN_PASSWORD)
            .await;
        access(&tokens)
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.send(
            Method::POST,
            "/v1/auth/refresh",
            None,
            &[],
            Some(json!({ "refresh_token": refresh_token })),
        )
        .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send(method, path, Some(token), &[], body).await
    }

    /// The OpenAPI operation of this request's route, and its JSON pointer (RFC 6901, in a
    /// URI fragment: braces percent-encoded).
    #[track_caller]
    fn operation(&self, method: &Method, path: &str) -> (String, &Value) {
        let path = path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let (template, operations) = self.openapi["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .find(|(template, _)| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| part.starts_with('{') || part == segment)
            })
            .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"));
        let method_name = method.as_str().to_lowercase();
        let operation = &operations[&method_name];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let pointer = format!(
            "#/paths/{}/{method_name}",
            template
                .replace('~', "~0")
                .replace('/', "~1")
                .replace('{', "%7B")
                .replace('}', "%7D")
        );
        (pointer, operation)
    }

    /// The OpenAPI entry of this request's route's `status`, and its JSON pointer.
    #[track_caller]
    fn response_entry(&self, method: &Method, path: &str, status: u16) -> (String, &Value) {
        let (operation_pointer, operation) = self.operation(method, path);
        let entry = &operation["responses"][status.to_string()];
        assert!(
            entry.is_object(),
            "{method} {path} answered {status}, which its OpenAPI entry does not list"
        );
        (format!("{operation_pointer}/responses/{status}"), entry)
    }

    /// Asserts that an answer is documented and that its body is what the OpenAPI
    /// document says: the schema of its media type, or no body where none is described.
    #[track_caller]
    fn assert_conforms(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        text: &str,
    ) {
        let problems = self.nonconformities(method, path, status, content_type, text);
        assert!(
            problems.is_empty(),
            "{method} {path} → {status}: the answer is not what its OpenAPI entry says:\n{}\n{text}",
            problems.join("\n")
        );
    }

    /// How an answer differs from its OpenAPI entry (it must be documented at all).
    #[track_caller]
    fn nonconformities(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        text: &str,
    ) -> Vec<String> {
        let (pointer, entry) = self.response_entry(method, path, status);
        let Some(content) = entry.get("content").and_then(Value::as_object) else {
            return if text.is_empty() {
                Vec::new()
            } else {
                vec!["a body the document does not describe".to_owned()]
            };
        };
        let Some(media) = content_type.and_then(|value| value.split(';').next()) else {
            return vec!["no Content-Type".to_owned()];
        };
        if !content.contains_key(media) {
            return vec![format!(
                "a {media} body; the document describes {:?}",
                content.keys().collect::<Vec<_>>()
            )];
        }
        if !media.ends_with("json") {
            return Vec::new();
        }
        let body: Value = match serde_json::from_str(text) {
            Ok(body) => body,
            Err(error) => return vec![format!("not JSON: {error}")],
        };
        let schema_pointer = format!(
            "{pointer}/content/{}/schema",
            media.replace('~', "~0").replace('/', "~1")
        );
        self.schema_errors(&schema_pointer, &body)
    }

    /// How `body` differs from the schema at `pointer` in the OpenAPI document.
    fn schema_errors(&self, pointer: &str, body: &Value) -> Vec<String> {
        let validator = {
            let mut cache = self.validators.lock().expect("the validator cache");
            cache
                .entry(pointer.to_owned())
                .or_insert_with(|| {
                    let mut document = self.openapi.clone();
                    document["$ref"] = Value::String(pointer.to_owned());
                    std::sync::Arc::new(
                        jsonschema::options()
                            .with_draft(jsonschema::Draft::Draft202012)
                            .should_validate_formats(true)
                            .build(&document)
                            .unwrap_or_else(|error| panic!("{pointer}: not a schema: {error}")),
                    )
                })
                .clone()
        };
        validator
            .iter_errors(body)
            .map(|error| format!("at {}: {error}", error.instance_path()))
            .collect()
    }

    /// Asserts that a body the router accepted is one its OpenAPI entry describes.
    #[track_caller]
    fn assert_request_documented(&self, method: &Method, path: &str, body: &Value) {
        let (operation, _) = self.operation(method, path);
        let request = format!("{operation}/requestBody/content/application~1json/schema");
        let errors = self.schema_errors(&request, body);
        assert!(
            errors.is_empty(),
            "{method} {path}: the router accepted a body its OpenAPI entry does not describe:\n{}\n{body:#}",
            errors.join("\n")
        );
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .router
            .client
            .request(method.clone(), format!("{}{path}", self.router.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("send the request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("read the body");
        self.assert_conforms(&method, path, status, content_type.as_deref(), &text);
        if let Some(body) = &body
            && (200..300).contains(&status)
        {
            self.assert_request_documented(&method, path, body);
        }
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a role; its id.
    async fn role(&self, token: &str, name: &str, permissions: &[&str]) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/roles",
                token,
                Some(json!({ "name": name, "permissions": permissions })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        id(&body)
    }

    /// Creates a user holding `roles`; its id.
    async fn user(&self, token: &str, email: &str, password: &str, roles: &[&str]) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/users",
                token,
                Some(json!({ "email": email, "password": password, "roles": roles })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        id(&body)
    }

    /// Every audit entry of the tenant, oldest first.
    async fn audit_log(&self, token: &str) -> Vec<Value> {
        let (status, body) = self
            .call(Method::GET, "/v1/audit-log?limit=500", token, None)
            .await;
        assert_eq!(status, 200, "{body}");
        let mut items = body["items"].as_array().expect("items").clone();
        items.reverse();
        items
    }
}

fn access(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

fn refresh_token(tokens: &Value) -> String {
    tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

fn id(body: &Value) -> String {
    body["id"].as_str().expect("an id").to_owned()
}

/// Asserts a 403 `forbidden` that names the permission.
#[track_caller]
fn assert_forbidden(status: u16, body: &Value, permission: &str, route: &str) {
    assert_eq!(status, 403, "{route}: {body}");
    assert_eq!(body["code"], "forbidden", "{route}: {body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains(permission)),
        "{route}: the problem names `{permission}`: {body}"
    );
}
