//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use crate::routes::{functions, health, invoke, records, schedules, tenants, variables};

#[derive(OpenApi)]
#[openapi(
    info(title = "Eddy", description = "Serverless WebAssembly processors: deploy, invoke, runs."),
    paths(
        health::healthz, health::readyz, health::metrics,
        functions::deploy, functions::patch, functions::list, functions::get, functions::rollback, functions::delete,
        invoke::invoke, invoke::batch,
        records::invocation, records::run, records::dead_letters, records::redrive, records::callback_dead_letters, records::status,
        tenants::create, tenants::get, tenants::set_quota, tenants::create_key, tenants::list_keys, tenants::revoke_key,
        variables::list_tenant, variables::set_tenant, variables::delete_tenant,
        variables::list_function, variables::set_function, variables::delete_function, variables::reseal,
        schedules::list, schedules::get, schedules::put, schedules::delete,
    ),
    components(schemas(crate::ErrorBody)),
    modifiers(&Security),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
