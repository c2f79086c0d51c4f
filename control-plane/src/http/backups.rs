//! `GET /v1/tenants/{slug}/backups` (complete backups, newest first) and
//! `POST /v1/tenants/{slug}/backups` (take one now: 202 with the running backup; it runs in
//! the background, and is listed once complete).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use provisioner::wire::Backup;
use serde::Serialize;
use tenancy_http::Path;

use crate::backups::Trigger;
use crate::error::ApiResult;
use crate::extract::{CurrentAdmin, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tenants/{slug}/backups", get(list).post(create))
}

#[derive(Serialize)]
struct Page {
    items: Vec<Backup>,
}

async fn list(
    State(state): State<AppState>,
    _admin: CurrentAdmin,
    Path(slug): Path<String>,
) -> ApiResult<Json<Page>> {
    let tenant = crate::tenants::get(&state.platform, &slug).await?;
    let items = crate::backups::list(&state.platform, Some(&tenant.slug)).await?;
    Ok(Json(Page {
        items: items.into_iter().map(Backup::from).collect(),
    }))
}

async fn create(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    let tenant = crate::tenants::get(&state.platform, &slug).await?;
    let pending = crate::backups::begin(
        &state.platform,
        &tenant.slug,
        Trigger::Manual,
        &admin.actor().name,
    )
    .await?;
    let row = Backup::from(pending.row().clone());
    // Its own task: the client need not wait, and leaving does not cut the backup short.
    state.platform.spawn(async move {
        let _ = pending.run().await;
    });
    let location = format!("/v1/tenants/{}/backups", tenant.slug);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(row),
    )
        .into_response())
}
