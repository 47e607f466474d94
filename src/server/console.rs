//! The auditor's console: a single-page web app served by the bus server
//! itself at `/console/`. Its three files (`console/index.html`, `app.js`,
//! `app.css`) are compiled into the binary, so there is no extra process
//! and no build step at run time.
//!
//! The page holds no privilege of its own: it asks for a token, keeps it
//! in the tab (a JS variable, or `sessionStorage` if the user asks), and
//! calls the same JSON API as any agent with `Authorization: Bearer`, so it
//! shows exactly what that token may read. Every response carries a strict
//! Content-Security-Policy: scripts and styles only from these files (no
//! inline script or style), requests only to this server, no framing.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::App;

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// What the console's pages may load and do. `connect-src 'self'` covers
/// the API and the event stream; the favicon is an empty `data:` URL.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's routes, merged into the API router. No token is needed to
/// fetch the page itself: it contains no data.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The files change with the binary; revalidate on every load.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
