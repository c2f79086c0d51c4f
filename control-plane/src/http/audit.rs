//! `GET /v1/audit-log`: who did what, newest first, with cursor pagination.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentAdmin, Json, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audit-log", get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<catalog::audit::Entry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: CurrentAdmin,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "`limit` must be between 1 and 500".to_owned(),
        ));
    }
    let before = query
        .cursor
        .map(|cursor| {
            cursor.parse::<i64>().map_err(|_| {
                ApiError::bad_request("`cursor` is not a cursor this API gave out".to_owned())
            })
        })
        .transpose()?;
    let items = catalog::audit::list(&state.platform.db, limit, before).await?;
    let next_cursor = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| items.last().map(|entry| entry.id.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}
