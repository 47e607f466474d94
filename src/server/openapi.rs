//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the HTTP API,
//! kept as a JSON document in the source tree (`src/server/openapi.json`)
//! and compiled in. `tests/openapi.rs` checks it against the routes the
//! router declares and the server answers: nothing missing, nothing extra.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub(crate) const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Serve the document (no token: it describes the API, holds no data).
pub(crate) async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
