//! What every service's OpenAPI document shares: the bearer scheme and the answers any `/api/` call can give.

use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::Modify;

/// Declares the bearer token every `/api/` call presents (a client's, from `client add`).
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the answers every `/api/` operation can give besides its own: 401 (the token was missing or
/// wrong), 403 (the client lacks the operation's scope), 413 (a body over 64 KiB), 503 (the database or a
/// dependency is unavailable, or the request timed out) and 500.
pub struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let common = [
            ("401", "Missing, unknown or revoked bearer token"),
            ("403", "The client's credential lacks this operation's scope (`forbidden`, naming it)"),
            ("413", "Body over 64 KiB"),
            ("500", "Internal error"),
            ("503", "The database or a dependency is unavailable, or the request took too long; retry"),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                for (code, description) in common {
                    operation.responses.responses.entry(code.to_owned()).or_insert_with(|| {
                        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/json", content)
                                .build(),
                        )
                    });
                }
            }
        }
    }
}
