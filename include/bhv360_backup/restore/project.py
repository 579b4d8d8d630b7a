"""A config backup's Supabase project applied to a project: every setting the Management API can set,
the Edge Functions deployed from their stored bodies, then everything read back and compared.

What the API cannot set is a manual step in the report, named: secret values it never returned (its
digests of ``smtp_pass``, hook secrets and the project's secrets), secrets a backup without encryption
did not keep, the custom domain (DNS), PostgREST's JWT secret. Third-party auth integrations and SSO
providers the target lacks are created; one the target has and the backup does not stays (removing a
way to sign in is an operator's decision) and fails the read-back, named.
A write that fails part-way says which sections were applied and which were not; a rerun applies
what still differs, so it converges.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.repository.config import (
    DIGEST_FIELD,
    changed_fields,
    fingerprint,
    project_fields,
    secret_digests,
    split_secrets,
)

if TYPE_CHECKING:  # the wiring hands the client in: a restore never reaches into the sources
    from bhv360_backup.sources.supabase_management import ManagementAPI

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setter:
    """How one section is set: the call, the token scope it needs, and the fields a read shows that no
    call sets (they are the platform's)."""

    section: str
    method: str
    path: str
    scope: str
    read_only: frozenset[str] = frozenset()


SETTERS = (
    Setter("auth", "PATCH", "/config/auth", "auth:write",
           frozenset({"custom_oauth_max_providers", "nimbus_oauth_email_optional", "saml_allow_encrypted_assertions"})),
    Setter("postgrest", "PATCH", "/postgrest", "rest:write", frozenset({"jwt_secret"})),
    Setter("storage", "PATCH", "/config/storage", "storage:write",
           frozenset({"capabilities", "databasePoolMode", "migrationVersion"})),
    Setter("realtime", "PATCH", "/config/realtime", "realtime:write"),
    Setter("pooler", "PATCH", "/config/database/pooler", "database:write"),
    Setter("postgres", "PUT", "/config/database/postgres", "database:write"),
    Setter("ssl_enforcement", "PUT", "/ssl-enforcement", "database:write"),
    Setter("network_restrictions", "POST", "/network-restrictions/apply", "projects:write"),
)


@dataclass(frozen=True)
class Integration:
    """A section that is a list of things created one call each (a way to sign in), each known by a key
    of its own: what it is, not the id the project gave it."""

    section: str
    path: str
    items: Callable[[Any], list[dict[str, Any]]]
    key: Callable[[Mapping[str, Any]], str]
    view: Callable[[Mapping[str, Any]], dict[str, Any]]  # what the create call sets, in its shape
    updatable: bool  # differing items with the same key are updated in place (else left to an operator)
    scope: str = "auth:write"


def _third_party_view(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in ("oidc_issuer_url", "jwks_url", "custom_jwks") if item.get(name) is not None}


def _sso_view(item: Mapping[str, Any]) -> dict[str, Any]:
    saml = item.get("saml") or {}
    metadata = {"metadata_url": saml["metadata_url"]} if saml.get("metadata_url") else \
        {"metadata_xml": saml.get("metadata_xml", "")}  # the API takes one of the two; it fetches the XML of a URL
    return {"type": "saml", **metadata,
            **{name: saml[name] for name in ("attribute_mapping", "name_id_format") if saml.get(name) is not None},
            "domains": sorted(domain["domain"] for domain in item.get("domains") or [] if domain.get("domain"))}


INTEGRATIONS = (
    Integration("third_party_auth", "/config/auth/third-party-auth", list,
                lambda item: item.get("oidc_issuer_url") or item.get("jwks_url") or fingerprint(item.get("custom_jwks")),
                _third_party_view, updatable=False),
    Integration("sso_providers", "/config/auth/sso/providers", lambda data: list(data.get("items") or []),
                lambda item: (item.get("saml") or {}).get("entity_id") or item["id"], _sso_view, updatable=True),
)
MANUAL_SECTIONS = ("custom_hostname", "secrets")
_AS_SEEN_ON_THE_TARGET = {"added": "missing on the target", "removed": "only on the target", "changed": "differs"}
FUNCTION_SETTINGS = ("name", "verify_jwt", "entrypoint_path", "import_map", "import_map_path")
FUNCTION_WRITE_SCOPE = "edge_functions:write"


def settable(section: str, data: Any) -> dict[str, Any]:
    """The part of a read that the section's setter sets, in the setter's own shape."""
    if section == "pooler":
        primary = next((entry for entry in data if entry.get("database_type") == "PRIMARY"), data[0] if data else {})
        return {name: primary[name] for name in ("default_pool_size", "pool_mode") if name in primary}
    if section == "ssl_enforcement":
        return {"requestedConfig": {"database": data["currentConfig"]["database"]}}
    if section == "network_restrictions":
        config = data.get("config") or {}
        return {name: sorted(config.get(name) or []) for name in ("dbAllowedCidrs", "dbAllowedCidrsV6")}
    setter = next(setter for setter in SETTERS if setter.section == section)
    return {name: value for name, value in data.items() if name not in setter.read_only and not DIGEST_FIELD.match(name)}


def _digests(auth: Mapping[str, Any]) -> dict[str, Any]:
    """The auth fields a read gives only as digests: never set by the apply, compared for the operator."""
    return {name: value for name, value in auth.items() if DIGEST_FIELD.match(name)}


def _function_view(function: Mapping[str, Any], body_sha256: str) -> dict[str, Any]:
    return {**{name: function.get(name) for name in FUNCTION_SETTINGS}, "body_sha256": body_sha256}


@dataclass
class ProjectState:
    """A project as the comparison sees it: what the setters set, the functions, and the rest (manual)."""

    settable: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, Any] = field(default_factory=dict)
    manual: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> tuple[dict[str, str], dict[str, str]]:
        """Fingerprints of the settings the apply answers for, and of those left to an operator."""
        return (project_fields({**self.settable, "functions": self.functions}), project_fields(self.manual))


def _state(sections: Mapping[str, Any], functions: dict[str, Any]) -> ProjectState:
    return ProjectState(
        settable={**{setter.section: settable(setter.section, sections[setter.section]) for setter in SETTERS},
                  **{kind.section: {kind.key(item): kind.view(item) for item in kind.items(sections[kind.section])}
                     for kind in INTEGRATIONS}},
        functions=functions,
        manual={**{name: sections[name] for name in MANUAL_SECTIONS}, "auth_digests": _digests(sections["auth"])},
    )


def backup_state(section: Mapping[str, Any]) -> ProjectState:
    """The state a config backup's ``project`` section records (secret values as their markers)."""
    return _state(section, {f["slug"]: _function_view(f, f["body"]["sha256"]) for f in section["functions"]})


def read_state(api: ManagementAPI) -> ProjectState:
    """A live project's state, secret values turned into their markers as a backup stores them."""
    sections = {name: split_secrets(name, api.read(name))[0] for name in
                [part.section for part in (*SETTERS, *INTEGRATIONS)] + list(MANUAL_SECTIONS)}
    sections["secrets"] = secret_digests(sections["secrets"])
    functions = {}
    for function in api.read("functions"):
        digest = hashlib.sha256()
        for chunk in api.function_body(function["slug"]):
            digest.update(chunk)
        functions[function["slug"]] = _function_view(function, digest.hexdigest())
    return _state(sections, functions)


def differences(backup: ProjectState, target: ProjectState) -> tuple[dict[str, str], dict[str, str]]:
    """``(settings the apply sets, settings left to an operator)`` that differ, field by field."""
    (want, want_manual), (have, have_manual) = backup.fields(), target.fields()
    return changed_fields(have, want), changed_fields(have_manual, want_manual)


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)
    functions_deployed: list[str] = field(default_factory=list)
    manual_steps: list[str] = field(default_factory=list)
    left_to_operator: list[str] = field(default_factory=list)  # secrets the backup holds no value for
    differences_after: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _body(setter: Setter, wanted: Mapping[str, Any], current: Mapping[str, Any], secrets: Mapping[str, Any],
          report: ApplyReport) -> dict[str, Any]:
    """The fields of a section that differ, with secret values from the backup's encrypted artifact; a
    secret the backup holds no value for (a digest, or not kept) is left out and named as a manual step."""
    body = {}
    for name, value in wanted.items():
        if current.get(name) == value:
            continue
        if isinstance(value, dict) and "secret" in value:
            if value["secret"] == "unset":
                body[name] = None
            elif name in secrets:
                body[name] = secrets[name]
            else:
                report.left_to_operator.append(f"{setter.section}.{name}")
                report.manual_steps.append(f"{setter.section}.{name}: set it by hand (the backup holds no value for it)")
            continue
        body[name] = value
    return body


def apply_project(section: Mapping[str, Any], secrets: Mapping[str, Mapping[str, Any]], api: ManagementAPI,
                  body_of: Callable[[str], Iterable[bytes]], *, manual_steps: Sequence[str] = ()) -> ApplyReport:
    """Set every section that differs on ``api``'s project, deploy the functions that differ from
    ``body_of(artifact)``, read everything back; raise naming each field that still differs.
    ``manual_steps``: those the backup recorded, carried into the report."""
    backup = backup_state(section)
    target = read_state(api)
    report = ApplyReport()
    settings_diff, manual_diff = differences(backup, target)
    report.manual_steps += [f"{field}: differs on the target ({change}); set it by hand" for field, change in
                            manual_diff.items()]
    report.manual_steps += manual_steps
    if section["postgrest"].get("jwt_secret", {}).get("secret") == "set":
        report.manual_steps.append("postgrest.jwt_secret: the new project has its own JWT secret; set the old one "
                                   "by hand (Project Settings > JWT) only if clients must keep their keys")
    pending = [setter for setter in SETTERS if any(field.startswith(f"{setter.section}.") or
                                                   field.startswith(f"{setter.section}[") for field in settings_diff)]
    for index, setter in enumerate(pending):
        body = _body(setter, backup.settable[setter.section], target.settable[setter.section],
                     secrets.get(setter.section, {}), report)
        if body and setter.method != "PATCH":  # PUT and apply replace the whole setting: send all of it
            body = {**backup.settable[setter.section], **body}
        if not body:
            continue
        try:
            api.request(setter.method, setter.path, setter.scope, json=body)
        except BackupError as error:
            report.not_applied += [other.section for other in pending[index:]]
            raise BackupError(f"applying the project configuration stopped at {setter.section} ({first_line(error)}): "
                              f"applied {', '.join(report.applied) or 'nothing'}; not applied "
                              f"{', '.join(report.not_applied)}. Run the restore again to apply the rest") from None
        report.applied.append(setter.section)
    for slug, function in sorted(backup.functions.items()):
        if target.functions.get(slug) != function:
            _deploy(api, slug, next(f for f in section["functions"] if f["slug"] == slug), body_of,
                    exists=slug in target.functions)
            report.functions_deployed.append(slug)
    for kind in INTEGRATIONS:  # last: a provider the target cannot take yet (SAML off) stops nothing else
        _add_integrations(api, kind, backup.settable[kind.section], target.settable[kind.section], report)
    after_diff, _ = differences(backup, read_state(api))
    report.differences_after = {field: change for field, change in after_diff.items()
                                if field not in report.left_to_operator}
    if report.differences_after:
        raise BackupError("the target project does not equal the backup after applying it: "
                          + ", ".join(f"{field} ({_AS_SEEN_ON_THE_TARGET[change]})"
                                      for field, change in report.differences_after.items()))
    return report


def _add_integrations(api: ManagementAPI, kind: Integration, wanted: Mapping[str, dict], current: Mapping[str, dict],
                      report: ApplyReport) -> None:
    """Create the integrations the target lacks, update those that differ where the API can; name the
    rest as manual steps (an integration only the target has is never removed here)."""
    ids: dict[str, str] | None = None
    for key, view in sorted(wanted.items()):
        if current.get(key) == view:
            continue
        try:
            if key not in current:
                api.request("POST", kind.path, kind.scope, json=view)
            elif kind.updatable:
                ids = ids if ids is not None else {kind.key(item): item["id"] for item in kind.items(api.read(kind.section))}
                api.request("PUT", f"{kind.path}/{ids[key]}", kind.scope,
                            json={name: value for name, value in view.items() if name != "type"})
            else:
                report.manual_steps.append(f"{kind.section}.{key}: differs on the target; delete it there and add "
                                           "it again as the backup has it")
                continue
        except BackupError as error:
            report.not_applied.append(f"{kind.section}.{key}")
            deployed = f" and deployed {', '.join(report.functions_deployed)}" if report.functions_deployed else ""
            raise BackupError(f"applying the project configuration stopped at {kind.section} {key} "
                              f"({first_line(error)}): applied {', '.join(report.applied) or 'nothing'}{deployed}. "
                              "Run the restore again to apply the rest") from None
        report.applied.append(f"{kind.section}.{key}")
    for key in sorted(set(current) - set(wanted)):
        report.manual_steps.append(f"{kind.section}.{key}: only the target has it; remove it there by hand if it "
                                   "should not be a way to sign in")


def _deploy(api: ManagementAPI, slug: str, function: Mapping[str, Any], body_of: Callable[[str], Iterable[bytes]], *,
            exists: bool) -> None:
    """Deploy a function's stored body (its bundle, as the API served it) under its slug and settings:
    an update where the project has the function (``exists``), else a new one."""
    params = {name: str(function[name]).lower() if isinstance(function[name], bool) else function[name]
              for name in FUNCTION_SETTINGS if function.get(name) is not None}
    headers = {"Content-Type": "application/vnd.denoland.eszip"}
    body = b"".join(body_of(function["body"]["artifact"]))  # whole: a retried request sends it again
    if exists:
        api.request("PATCH", f"/functions/{slug}", FUNCTION_WRITE_SCOPE, params=params, headers=headers,
                    content=body)
    else:
        api.request("POST", "/functions", FUNCTION_WRITE_SCOPE, params={"slug": slug, **params}, headers=headers,
                    content=body)
