//! Database servers: `GET /v1/servers`, `POST /v1/servers`, `PATCH /v1/servers/{name}`
//! (capacity: max tenants and the routers' connection budget, applied without restarts).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use provisioner::wire::Server;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tenancy_http::Path;

use crate::error::ApiResult;
use crate::extract::{CurrentAdmin, Json};
use crate::servers::NewServerRequest;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/servers", get(list).post(create))
        .route("/v1/servers/{name}", patch(update))
}

#[derive(Debug, Serialize)]
struct ServerList {
    items: Vec<Server>,
}

async fn list(State(state): State<AppState>, _admin: CurrentAdmin) -> ApiResult<Json<ServerList>> {
    Ok(Json(ServerList {
        items: catalog::servers::list(&state.platform.db)
            .await?
            .into_iter()
            .map(Server::from)
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServer {
    name: String,
    host: String,
    port: i64,
    admin_user: String,
    admin_password: String,
    max_tenants: i64,
    connection_budget: i64,
}

async fn create(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Json(body): Json<CreateServer>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    let server = crate::servers::register(
        &state.platform,
        &admin.actor(),
        NewServerRequest {
            name: body.name,
            host: body.host,
            port: body.port,
            admin_user: body.admin_user,
            admin_password: SecretString::from(body.admin_password),
            max_tenants: body.max_tenants,
            connection_budget: body.connection_budget,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(server.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateServer {
    max_tenants: Option<i64>,
    connection_budget: Option<i64>,
}

async fn update(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(name): Path<String>,
    Json(body): Json<UpdateServer>,
) -> ApiResult<Json<Server>> {
    let server = crate::servers::set_capacity(
        &state.platform,
        &admin.actor(),
        &name,
        crate::servers::CapacityChange {
            max_tenants: body.max_tenants,
            connection_budget: body.connection_budget,
        },
    )
    .await?;
    Ok(Json(server.into()))
}
