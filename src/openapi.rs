//! The OpenAPI 3.1 description of the HTTP API. Paths are written here; every
//! body shape is generated from the Rust types the server answers with, so
//! the document cannot drift from what is sent.

use dossier_schema::{ApiErrorBody, Dossier, Health, Record, SearchResponse, SubjectExport, Suggestions};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::server::{ExportRequest, MAX_PAGE, MAX_PER_PAGE, MAX_QUERY, RunQueued, RunRequest, WhoAmI};
use crate::state::{AuditEntry, RunReport};

fn param(name: &str, required: bool, desc: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": required, "description": desc, "schema": schema })
}

fn path_param(name: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": desc, "schema": { "type": "string" } })
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

/// The document served at `/api/openapi.json`.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let search = g.subschema_for::<SearchResponse>().to_value();
    let dossier = g.subschema_for::<Dossier>().to_value();
    let record = g.subschema_for::<Record>().to_value();
    let suggest = g.subschema_for::<Suggestions>().to_value();
    let health = g.subschema_for::<Health>().to_value();
    let runs = g.subschema_for::<Vec<RunReport>>().to_value();
    let error = g.subschema_for::<ApiErrorBody>().to_value();
    let whoami = g.subschema_for::<WhoAmI>().to_value();
    let audit = g.subschema_for::<Vec<AuditEntry>>().to_value();
    let export = g.subschema_for::<SubjectExport>().to_value();
    let export_req = g.subschema_for::<ExportRequest>().to_value();
    let run_req = g.subschema_for::<RunRequest>().to_value();
    let run_queued = g.subschema_for::<RunQueued>().to_value();
    let schemas = g.take_definitions(true);
    let err = |desc: &str| ok(desc, error.clone());
    let denied = err("No key, or a key that is not valid (revoked, never issued)");
    let admin = err("The key's role is not an administrator");
    let open: Value = json!([]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dossier",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Customer dossiers across silos: search by name, number, email or contract words."
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/api/health": { "get": {
                "summary": "Liveness (needs no key)",
                "security": open,
                "responses": { "200": ok("The server answers", health) }
            }},
            "/api/whoami": { "get": {
                "summary": "The caller's key name, role, visible sources, masking and admin right",
                "responses": { "200": ok("The caller", whoami), "401": denied.clone() }
            }},
            "/api/admin/audit": { "get": {
                "summary": "The audit log, newest first (administrators)",
                "parameters": [
                    param("who", false, "Only this key name", json!({ "type": "string" })),
                    param("customer", false, "Only this customer id", json!({ "type": "string" })),
                    param("action", false, "Only this action (search, suggest, dossier, record, export-subject)", json!({ "type": "string" })),
                    param("since", false, "At or after this time (RFC 3339 or YYYY-MM-DD, UTC)", json!({ "type": "string" })),
                    param("until", false, "Before this time", json!({ "type": "string" })),
                    param("limit", false, "Most entries", json!({ "type": "integer", "minimum": 1, "maximum": 10000, "default": 100 })),
                ],
                "responses": { "200": ok("Entries", audit), "400": err("A parameter out of range"), "401": denied.clone(), "403": admin.clone() }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics in OpenMetrics text: requests and latency by route, index runs by status, the last run's items per source and outcome, its duration and finish time, customers, index size (administrators)",
                "responses": {
                    "200": { "description": "OpenMetrics text", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } },
                    "401": denied.clone(), "403": admin.clone()
                }
            }},
            "/api/admin/runs": { "post": {
                "summary": "Queue an index run of one source or of every source (administrators; audited)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": run_req } } },
                "responses": {
                    "202": ok("Queued, or already waiting", run_queued),
                    "400": err("A body that is not the JSON described"),
                    "401": denied.clone(), "403": admin.clone(), "404": err("No such source"),
                    "503": err("The server was started without its runner")
                }
            }},
            "/api/admin/export-subject": { "post": {
                "summary": "Everything held about one customer, for a subject-access request (administrators; audited)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": export_req } } },
                "responses": {
                    "200": ok("The export: profile, links with evidence, every record in full, provenance", export),
                    "400": err("A body that is not the JSON described, or larger than 16 KiB"),
                    "401": denied.clone(), "403": admin.clone(), "404": err("No such customer")
                }
            }},
            "/api/search": { "get": {
                "summary": "Ranked customer dossiers for a query",
                "description": "The query may hold names (typos, nicknames, either order), emails, phone numbers and \
                    order/account numbers in any format, words and \"phrases\" with AND/OR/NOT, and the filters \
                    source:, kind:, status: and date:YYYY[-MM[-DD]][..YYYY[-MM[-DD]]]. Syntax that cannot be read is \
                    searched as plain words, with a notice.",
                "parameters": [
                    param("q", true, &format!("The query, at most {MAX_QUERY} bytes"), json!({ "type": "string", "maxLength": MAX_QUERY })),
                    param("page", false, "0-based page over customers", json!({ "type": "integer", "minimum": 0, "maximum": MAX_PAGE, "default": 0 })),
                    param("per_page", false, "Dossiers per page", json!({ "type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 10 })),
                ],
                "responses": {
                    "200": ok("A page of dossiers, best first; `total` counts customers", search),
                    "400": err("No query, a query too long, or a page size out of range"),
                    "408": err("The search took longer than the server allows"),
                }
            }},
            "/api/suggest": { "get": {
                "summary": "Typeahead: customers whose name, company, email or number starts with what was typed",
                "parameters": [
                    param("q", true, "What has been typed so far (fewer than 2 characters gives no suggestions)", json!({ "type": "string", "maxLength": MAX_QUERY })),
                    param("limit", false, "Most suggestions", json!({ "type": "integer", "minimum": 1, "maximum": 20, "default": 8 })),
                ],
                "responses": { "200": ok("Suggestions", suggest), "400": err("A query too long or a limit out of range") }
            }},
            "/api/customers/{id}": { "get": {
                "summary": "One customer's dossier; an id merged into another redirects to it",
                "parameters": [ path_param("id", "A customer id as search results give it") ],
                "responses": { "200": ok("The dossier", dossier), "404": err("No such customer") }
            }},
            "/api/records/{key}": { "get": {
                "summary": "One record in full, with its provenance",
                "parameters": [ path_param("key", "A record key, `source:locator` (the rest of the path, slashes included)") ],
                "responses": { "200": ok("The record", record), "404": err("No such record") }
            }},
            "/api/runs": { "get": {
                "summary": "The last index runs with their per-source counts and per-item errors",
                "responses": { "200": ok("Runs, newest first", runs), "401": denied.clone(), "403": admin.clone() }
            }},
            "/api/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1" } }
            }}
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "An API key made with `dossier keys add NAME --role ROLE`" } }
        }
    })
}
