//! What every operation of the OpenAPI document must say, added in one pass
//! over the finished document instead of by hand in each handler: the
//! bearer security requirement and its 401/403 on every `/api/v1` operation,
//! the error answers any request body can get (400, 408, 413, 415), 409 on
//! every write, 400/404 for path ids, 400 for query strings, and the
//! pattern of every path parameter (from `rekey_core::ids`).

use rekey_core::ids;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Components, Schema};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Ref, RefOr};
use utoipa::Modify;

/// Connect tokens: 32 random bytes, base64url without padding
/// (`rekey_oauth::random_token`).
pub const CONNECT_TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]{43}$";

/// Provider ids and aliases are catalog slugs of at most this many characters.
const PROVIDER_ID_MAX: usize = 64;

/// The error answers operations refer to, as `#/components/responses/NAME`.
const ERROR_RESPONSES: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "Malformed input: body, query string, path id or header (`malformed_json`, `invalid_body`, `invalid_query`, `invalid_id`, `invalid_field`, …).",
    ),
    (
        "401",
        "Unauthorized",
        "No API key, or an unknown or revoked one (`unauthorized`).",
    ),
    (
        "403",
        "Forbidden",
        "The API key lacks the scope this operation needs (`missing_scope`).",
    ),
    (
        "404",
        "NotFound",
        "No such record in the caller's tenant (`connection_not_found`, …).",
    ),
    (
        "408",
        "RequestTimeout",
        "The request body did not arrive within the server's body timeout (`request_timeout`).",
    ),
    (
        "409",
        "Conflict",
        "The record changed meanwhile or is in a state that forbids this (`version_conflict`, `already_exists`, `connection_unusable`, …).",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The request body is larger than 64 KiB (`payload_too_large`).",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "A request body without `Content-Type: application/json` (`unsupported_media_type`).",
    ),
    (
        "default",
        "Error",
        "Any other error, e.g. 500 `internal` or 503 `unavailable`; always the error shape.",
    ),
];

pub struct ApiContract;

impl Modify for ApiContract {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Components::new);
        for (_, name, description) in ERROR_RESPONSES {
            components
                .responses
                .entry(name.to_string())
                .or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build(),
                    )
                });
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/v1/");
            for (method, op) in operations(item) {
                for p in op.parameters.iter_mut().flatten() {
                    if p.parameter_in == ParameterIn::Path {
                        describe_path_parameter(path, p);
                    }
                }
                if !api {
                    // The HTML pages (Connect, OAuth callback) and /healthz,
                    // /readyz, /metrics take no API key and answer their own way.
                    continue;
                }
                let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
                let security = op.security.get_or_insert_with(Vec::new);
                if !security.contains(&bearer) {
                    security.push(bearer);
                }
                let params = op.parameters.as_deref().unwrap_or_default();
                let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let has_params = !params.is_empty();
                let has_body = op.request_body.is_some();
                let write = method != "get";
                let mut add = vec!["401", "403", "default"];
                if has_params || has_body {
                    add.push("400");
                }
                if has_path {
                    add.push("404");
                }
                if write {
                    add.push("409");
                }
                if has_body {
                    add.extend(["408", "413", "415"]);
                }
                for status in add {
                    ensure_response(op, status);
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

fn ensure_response(op: &mut Operation, status: &str) {
    if op.responses.responses.contains_key(status) {
        return;
    }
    if let Some((_, name, _)) = ERROR_RESPONSES.iter().find(|(s, _, _)| *s == status) {
        op.responses.responses.insert(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(*name)),
        );
    }
}

/// The pattern (and a description) of a path parameter, from the collection
/// it names: `/connections/{id}` takes `con_…` ids, and so on.
pub fn path_parameter_pattern(path: &str, name: &str) -> Option<(String, String)> {
    let placeholder = format!("{{{name}}}");
    let segments: Vec<&str> = path.split('/').collect();
    let at = segments.iter().position(|s| *s == placeholder)?;
    let collection = segments.get(at.checked_sub(1)?)?;
    let id = |prefix: &str| {
        Some((
            ids::id_pattern(prefix),
            format!("A `{prefix}_…` id: `{prefix}_` and a UUID (v7) as 32 lowercase hex digits."),
        ))
    };
    match *collection {
        "connections" => id(ids::CONNECTION),
        "api-keys" => id(ids::API_KEY),
        "integrations" => id(ids::INTEGRATION),
        "webhooks" => id(ids::WEBHOOK),
        "deliveries" => id(ids::DELIVERY),
        "rotations" => id(ids::ROTATION),
        "evidence" => id(ids::EVIDENCE),
        "campaigns" => id(ids::CAMPAIGN),
        // Campaign items and links are named by their connection.
        "items" | "links" => id(ids::CONNECTION),
        "providers" => Some((
            ids::slug_pattern(PROVIDER_ID_MAX),
            "A provider id or alias from the catalog.".to_string(),
        )),
        "connect" => Some((
            CONNECT_TOKEN_PATTERN.to_string(),
            "The connect session's single-use token, as in its `url`.".to_string(),
        )),
        _ => None,
    }
}

fn describe_path_parameter(path: &str, p: &mut Parameter) {
    let Some((pattern, description)) = path_parameter_pattern(path, &p.name) else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
        o.pattern = Some(pattern);
    }
    p.description.get_or_insert(description);
}
