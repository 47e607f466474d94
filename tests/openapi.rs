//! `GET /v1/openapi.json` against the routes actually served: the document
//! lists exactly the (method, path) pairs the router declares (read from
//! the `.route(...)` calls in src/server/, since axum does not expose its
//! route table), and a real server answers every documented pair (never
//! the 404 fallback or a 405) and refuses the undocumented methods of
//! documented paths with 405.

mod util;

use std::collections::BTreeSet;

use serde_json::Value;
use util::Dir;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// (METHOD, path) of every `.route("PATH", get(..).post(..))` in src/server.
fn declared_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let rest = &text[at + ".route(".len()..];
            let open = rest.find('"').expect("route path literal");
            let close = open + 1 + rest[open + 1..].find('"').unwrap();
            let route_path = &rest[open + 1..close];
            // The route's handlers: up to the next router call.
            let tail = &rest[close..];
            let end = [".route(", ".merge(", ".fallback(", "\n}"]
                .iter()
                .filter_map(|m| tail.find(m))
                .min()
                .unwrap_or(tail.len());
            let handlers = &tail[..end];
            let mut found = false;
            for m in METHODS {
                let needle = format!("{m}(");
                // `get(` or `axum::routing::get(`, not `foo_get(` or `x::get(`.
                let hit = handlers.match_indices(&needle).any(|(i, _)| {
                    let before = &handlers[..i];
                    before.ends_with("routing::")
                        || before
                            .chars()
                            .next_back()
                            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                });
                if hit {
                    routes.insert((m.to_uppercase(), route_path.to_string()));
                    found = true;
                }
            }
            assert!(
                found,
                "{}: no method for route {route_path}",
                path.display()
            );
        }
    }
    routes
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn fill(path: &str) -> String {
    path.replace("{m}", "m-none")
        .replace("{name}", "nobody")
        .replace("{id}", "01890000-0000-7000-8000-000000000000")
        .replace("{seq}", "1")
        .replace("{step}", "accept")
}

#[test]
fn openapi_document_matches_the_served_routes() {
    let file: Value = serde_json::from_str(include_str!("../src/server/openapi.json")).unwrap();
    assert_eq!(file["openapi"], "3.1.0");
    let declared = declared_routes();
    let documented = documented(&file);
    let missing: Vec<_> = declared.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "OpenAPI document out of date.\nserved but not documented: {missing:?}\ndocumented but not served: {extra:?}"
    );
    assert!(
        declared.len() >= 25,
        "route scan found too little: {declared:?}"
    );

    // The server serves the same document, and answers every pair.
    let dir = Dir::local();
    let (url, _token) = dir.server();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let served: Value = agent
        .get(format!("{url}/v1/openapi.json"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(served, file);
    let call = |method: &str, path: &str| {
        let full = format!("{url}{}", fill(path));
        let mut resp = match method {
            "GET" => agent.get(&full).call(),
            "POST" => agent.post(&full).send_empty(),
            "PUT" => agent.put(&full).send_empty(),
            "DELETE" => agent.delete(&full).call(),
            _ => agent.patch(&full).send_empty(),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, body)
    };
    for (method, path) in &documented {
        if path.ends_with("/stream") {
            continue; // would stay open; its 401 without a token is below
        }
        let (status, body) = call(method, path);
        assert!(
            status != 405 && !(status == 404 && body.contains("\"not_found\"")),
            "{method} {path}: not served ({status} {body})"
        );
    }
    let (status, _) = call("GET", "/v1/missions/{m}/events/stream");
    assert_eq!(status, 401, "the stream route is served and needs a token");
    // Undocumented methods on documented paths are not served.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if !documented.contains(&(m.to_string(), path.clone())) {
                let (status, body) = call(m, path);
                assert_eq!(status, 405, "{m} {path}: {body}");
            }
        }
    }
}
