"""A local stand-in for the Supabase Management API (the tests' and ``make demo``'s), held to the published OpenAPI description: every
request the package sends must fit an operation of it (path, method, JSON body), and every response is
generated from the description's schemas and validated against them before it is sent. A request or a
response that does not fit is recorded in ``violations`` (and answered 500), and tests assert there are
none.

It keeps the projects' state in memory: reads, partial updates (PATCH merges the fields given), the
functions with their bodies, injected 429s (``Retry-After``), a token without some scopes (403)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_FILE = Path(__file__).parent / "supabase" / "management-api.openapi.json"
SPEC = json.loads(SPEC_FILE.read_text())
_REGISTRY = Registry().with_resource("spec.json", Resource.from_contents(SPEC, default_specification=DRAFT4))
TOKEN = "sbp_0123456789abcdef0123456789abcdef01234567"  # noqa: S105 - the stand-in's own
SOURCE_REF, TARGET_REF = "bhvthreesixtysourcea", "bhvthreesixtytargetb"
PROJECT_SECRETS = {"Google client secret": "google-oauth-canary-secret-7f3a",
                   "PostgREST JWT secret": "jwt-canary-secret-with-at-least-32-characters-91c2"}
SMTP_PASS_DIGEST = hashlib.sha256(b"the smtp password").hexdigest()
THIRD_PARTY_ISSUER = "https://login.bhv360-partner.example"
SSO_ENTITY_ID = "https://sso.bhv360.nl/saml"
SSO_METADATA = (f'<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{SSO_ENTITY_ID}">'
                "<IDPSSODescriptor/></EntityDescriptor>")
FUNCTION_BODY = b"ESZIP2.3 notify-team: Deno.serve(() => new Response('ok'))" * 50
ROUTES = [(re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$"), template) for template in SPEC["paths"]]
SECTIONS = {  # what the package reads, by section: the path under /v1/projects/{ref} and the response schema
    "project": "", "auth": "/config/auth", "third_party_auth": "/config/auth/third-party-auth",
    "sso_providers": "/config/auth/sso/providers", "postgrest": "/postgrest", "storage": "/config/storage",
    "realtime": "/config/realtime", "pooler": "/config/database/pooler", "postgres": "/config/database/postgres",
    "network_restrictions": "/network-restrictions", "ssl_enforcement": "/ssl-enforcement",
    "custom_hostname": "/custom-hostname", "secrets": "/secrets",
}


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def generated(schema: dict) -> Any:
    """An instance of ``schema`` built from the description alone: examples, first enum values, the
    required properties, minimal numbers and strings."""
    schema = _resolve(schema)
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    for combinator in ("allOf", "oneOf", "anyOf"):
        if combinator in schema:
            return generated(schema[combinator][0])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = schema.get("required", [])
        return {name: generated(inner) for name, inner in schema.get("properties", {}).items() if name in required}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "string":
        return {"date-time": "2026-12-01T00:00:00Z", "email": "ops@example.com",
                "uri": "https://example.com"}.get(schema.get("format"), "x" * max(1, schema.get("minLength", 1)))
    return None


def problems(schema: dict, instance: Any) -> list[str]:
    anchored = json.loads(json.dumps(schema).replace('"#/components/', '"spec.json#/components/'))
    validator = OAS30Validator(anchored, registry=_REGISTRY)
    return [f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message[:160]}"
            for error in validator.iter_errors(instance)]


def operation(method: str, path: str) -> tuple[str, dict, list[str]] | None:
    for pattern, template in ROUTES:
        match = pattern.match(path)
        if match and method.lower() in SPEC["paths"][template]:
            return template, SPEC["paths"][template][method.lower()], list(match.groups())
    return None


def _response_schema(op: dict, status: int) -> dict | None:
    content = op["responses"].get(str(status), {}).get("content", {})
    return content.get("application/json", {}).get("schema")


def _domains(names: list[str]) -> list[dict[str, str]]:
    """An SSO provider's domains as the API lists them, each with an id of its own."""
    return [{"id": str(uuid.uuid4()), "domain": name} for name in names]


def new_project(ref: str) -> dict[str, Any]:
    """A project's state, each section generated from its response schema."""
    state = {}
    for section, relative in SECTIONS.items():
        schema = _response_schema(SPEC["paths"]["/v1/projects/{ref}" + relative]["get"], 200)
        state[section] = generated(schema)
    state["project"]["ref"] = ref
    state["functions"] = {}
    state["saml_enabled"] = True  # False: the API answers 404 to its SSO provider calls
    return state


class ManagementStandIn:
    def __init__(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.throttled: dict[tuple[str, str], int] = {}  # (method, template) -> 429s left to answer
        self.denied_scopes: set[str] = set()
        self.fail_after_writes: int | None = None  # answer 500 to every write after this many
        self._writes = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, content_type, headers = stand_in.answer(
                    method, url.path, parse_qs(url.query), self.headers, body)
                self._send(status, payload, content_type, headers)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_PATCH(self):  # noqa: N802
                self._handle("PATCH")

            def do_PUT(self):  # noqa: N802
                self._handle("PUT")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def do_DELETE(self):  # noqa: N802
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ManagementStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_project(self, ref: str) -> dict[str, Any]:
        self.projects[ref] = new_project(ref)
        return self.projects[ref]

    def add_function(self, ref: str, slug: str, body: bytes, **metadata: Any) -> None:
        meta = generated({"$ref": "#/components/schemas/FunctionResponse"})
        meta.update({"id": f"fn-{slug}", "slug": slug, "name": slug, "status": "ACTIVE", "version": 1,
                     "created_at": 1764547200000, "updated_at": 1764547200000, "verify_jwt": True,
                     "entrypoint_path": "index.ts", "ezbr_sha256": hashlib.sha256(body).hexdigest(), **metadata})
        self.projects[ref]["functions"][slug] = {"meta": meta, "body": body}

    def add_third_party_auth(self, ref: str, issuer: str) -> dict[str, Any]:
        item = {**generated({"$ref": "#/components/schemas/ThirdPartyAuth"}), "id": str(uuid.uuid4()), "type": "oidc",
                "oidc_issuer_url": issuer, "inserted_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z"}
        self.projects[ref]["third_party_auth"].append(item)
        return item

    def add_sso_provider(self, ref: str, settings: dict[str, Any]) -> dict[str, Any]:
        """A SAML provider as the API makes one: its entity id read from the metadata."""
        found = re.search(r'entityID="([^"]+)"', settings.get("metadata_xml", ""))
        saml = {"id": str(uuid.uuid4()), "entity_id": found[1] if found else settings.get("metadata_url", ""),
                **{name: settings[name] for name in ("metadata_xml", "metadata_url", "attribute_mapping",
                                                     "name_id_format") if name in settings}}
        provider = {"id": str(uuid.uuid4()), "saml": saml, "created_at": "2026-12-01T00:00:00Z",
                    "updated_at": "2026-12-01T00:00:00Z",
                    "domains": _domains(settings.get("domains", []))}
        self.projects[ref]["sso_providers"]["items"].append(provider)
        return provider

    def connection_json(self, ref: str, token: str = TOKEN) -> str:
        return json.dumps({"conn_type": "generic", "host": self.url, "password": token,
                           "extra": {"project_ref": ref}})

    # --- one request ---------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict, headers: Any, body: bytes):
        found = operation(method, path)
        if found is None:
            return self._violation(f"{method} {path}: no such operation in the description")
        template, op, params = found
        self.requests.append((method, template))
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, b'{"message": "Unauthorized"}', "application/json", {}
        scopes = [badge["name"].removeprefix("OAuth scope: ") for badge in op.get("x-badges", [])
                  if badge["name"].startswith("OAuth scope: ")]
        if set(scopes) & self.denied_scopes:
            return 403, b'{"message": "Forbidden"}', "application/json", {}
        if self.throttled.get((method, template)):
            self.throttled[(method, template)] -= 1
            return 429, b'{"message": "Too many requests"}', "application/json", {"Retry-After": "0"}
        for parameter in op.get("parameters", []):
            if parameter["in"] == "query" and parameter.get("required") and parameter["name"] not in query:
                return self._violation(f"{method} {template}: query parameter {parameter['name']} is missing")
        payload = None
        request_body = op.get("requestBody", {}).get("content", {})
        content_type = (headers.get("Content-Type") or "").split(";")[0]
        if body and request_body and content_type not in request_body:
            return self._violation(f"{method} {template}: content type {content_type!r} is not one of "
                                   f"{sorted(request_body)}")
        if content_type == "application/json" and body:
            payload = json.loads(body)
            wrong = problems(request_body["application/json"]["schema"], payload)
            if wrong:
                return self._violation(f"{method} {template}: request does not fit: {'; '.join(wrong[:3])}")
        ref = params[0]
        if ref not in self.projects:
            return 404, b'{"message": "project not found"}', "application/json", {}
        if method != "GET":
            self._writes += 1
            if self.fail_after_writes is not None and self._writes > self.fail_after_writes:
                return 500, b'{"message": "injected failure"}', "application/json", {}
        return self._route(method, template, op, params, payload, query, body)

    def _route(self, method: str, template: str, op: dict, params: list[str], payload: Any, query: dict,
               raw: bytes):
        state = self.projects[params[0]]
        relative = template.removeprefix("/v1/projects/{ref}")
        if relative.startswith("/config/auth/sso/providers") and not state["saml_enabled"]:
            return 404, b'{"message": "SAML 2.0 support is not enabled for this project"}', "application/json", {}
        section = next((name for name, path in SECTIONS.items() if path == relative), None)
        if relative == "/functions/{function_slug}/body":
            function = state["functions"].get(params[1])
            if function is None:
                return 404, b'{"message": "no such function"}', "application/json", {}
            return 200, function["body"], "application/octet-stream", {}
        if relative == "/functions" and method == "GET":
            return self._json(op, 200, [state["functions"][slug]["meta"] for slug in sorted(state["functions"])])
        if relative in ("/functions", "/functions/{function_slug}") and method in ("POST", "PATCH"):
            slug = params[1] if len(params) > 1 else query["slug"][0]
            if method == "PATCH" and slug not in state["functions"]:
                return 404, b'{"message": "no such function"}', "application/json", {}
            settings = {name: values[0] for name, values in query.items() if name != "slug"}
            for name in ("verify_jwt", "import_map"):
                if name in settings:
                    settings[name] = settings[name] == "true"
            self.add_function(params[0], slug, raw, **settings)
            return self._json(op, 201 if method == "POST" else 200, state["functions"][slug]["meta"])
        if relative == "/config/auth/third-party-auth" and method == "POST":
            return self._json(op, 201, self.add_third_party_auth(params[0], payload["oidc_issuer_url"]))
        if relative == "/config/auth/sso/providers" and method == "POST":
            return self._json(op, 201, self.add_sso_provider(params[0], payload))
        if relative == "/config/auth/sso/providers/{provider_id}" and method == "PUT":
            provider = next((item for item in state["sso_providers"]["items"] if item["id"] == params[1]), None)
            if provider is None:
                return 404, b'{"message": "no such provider"}', "application/json", {}
            provider["saml"].update({name: value for name, value in payload.items() if name != "domains"})
            if "domains" in payload:
                provider["domains"] = _domains(payload["domains"])
            return self._json(op, 200, provider)
        if relative == "/ssl-enforcement" and method == "PUT":
            state["ssl_enforcement"] = {"currentConfig": payload["requestedConfig"], "appliedSuccessfully": True}
            return self._json(op, 200, state["ssl_enforcement"])
        if relative == "/network-restrictions/apply":
            state["network_restrictions"]["config"] = payload
            return self._json(op, 201, state["network_restrictions"])
        if relative == "/config/database/pooler" and method == "PATCH":
            primary = next(entry for entry in state["pooler"] if entry.get("database_type") == "PRIMARY")
            primary.update(payload)
            return self._json(op, 200, {name: primary[name] for name in payload})
        if relative == "/config/realtime" and method == "PATCH":
            state["realtime"].update(payload)
            return 204, b"", "application/json", {}
        if section is None:
            return self._violation(f"{method} {template}: the stand-in does not serve this operation")
        if method == "GET":
            return self._json(op, 200, state[section])
        if method in ("PATCH", "PUT") and isinstance(state[section], dict) and isinstance(payload, dict):
            state[section].update(payload)  # partial update: only the fields given change
            return self._json(op, 200, state[section])
        return self._violation(f"{method} {template}: the stand-in does not serve this operation")

    def _json(self, op: dict, status: int, value: Any):
        schema = _response_schema(op, status)
        wrong = problems(schema, value) if schema else []
        if wrong:
            return self._violation(f"response does not fit the description: {'; '.join(wrong[:3])}")
        return status, json.dumps(value).encode(), "application/json", {}

    def _violation(self, problem: str):
        self.violations.append(problem)
        return 500, json.dumps({"message": f"stand-in: {problem}"}).encode(), "application/json", {}


def seed(stand_in: ManagementStandIn, ref: str) -> dict[str, Any]:
    """BHV360's project: Google sign-in, SMTP, a send-email hook, redirect URLs, a secret, a function, a
    third-party auth issuer and a SAML provider."""
    state = stand_in.add_project(ref)
    state["auth"].update(site_url="https://app.bhv360.nl", uri_allow_list="https://app.bhv360.nl/**",
                         disable_signup=True, external_google_enabled=True, external_google_client_id="google-id",
                         external_google_secret=PROJECT_SECRETS["Google client secret"], external_github_secret=None,
                         smtp_host="smtp.bhv360.nl", smtp_pass=SMTP_PASS_DIGEST,
                         hook_send_email_enabled=True, hook_send_email_uri="https://hooks.bhv360.nl/mail",
                         hook_send_email_secrets=hashlib.sha256(b"v1,whsec_hook").hexdigest(), jwt_exp=3600)
    state["postgrest"].update(db_schema="public,graphql_public", max_rows=1000,
                              jwt_secret=PROJECT_SECRETS["PostgREST JWT secret"])
    state["secrets"] = [{"name": "RESEND_API_KEY", "value": hashlib.sha256(b"re_key").hexdigest()}]
    stand_in.add_function(ref, "notify-team", FUNCTION_BODY)
    stand_in.add_third_party_auth(ref, THIRD_PARTY_ISSUER)
    stand_in.add_sso_provider(ref, {"type": "saml", "metadata_xml": SSO_METADATA, "domains": ["bhv360.nl"],
                                    "attribute_mapping": {"keys": {"email": {"name": "mail"}}}})
    return state

