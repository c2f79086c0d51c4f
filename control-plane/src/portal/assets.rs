//! The portal's assets, embedded in the binary: nothing is fetched from anywhere else.
//! htmx is pinned (its version is in its name, so it may be cached for good).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Name, content type, cache lifetime, bytes.
const ASSETS: &[(&str, &str, &str, &[u8])] = &[
    (
        "htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        "public, max-age=31536000, immutable",
        include_bytes!("../../assets/htmx-2.0.11.min.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        "public, max-age=300",
        include_bytes!("../../assets/portal.css"),
    ),
];

pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, ..)| *asset == name) {
        Some((_, content_type, cache, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, *cache),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
