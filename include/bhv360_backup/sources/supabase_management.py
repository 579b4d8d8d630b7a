"""The Supabase Management API as a source of a hosted project's own configuration: auth, the Data API,
storage, realtime, the pooler, Postgres parameters, network restrictions, SSL enforcement, the custom
hostname, the secrets' names and digests, and the Edge Functions with their bodies.

A careful client: a 429 waits for ``Retry-After`` (or backs off), a 5xx or a dropped connection is
tried again, a 401 names the token and a 403 the scope the token lacks. The token is sent as a bearer
header only, never logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from bhv360_backup.errors import BackupError, ConfigurationError

log = logging.getLogger(__name__)

PROJECT_REF = re.compile(r"^[a-z]{20}$")
MAX_TRIES = 6
MAX_WAIT_SECONDS = 60.0
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class Read:
    """One configuration read: the section it fills, its path under ``/v1/projects/{ref}``, and the
    token scope it needs."""

    section: str
    path: str
    scope: str


SSO_PATH = "/config/auth/sso/providers"


class SamlNotEnabled(BackupError):
    """The project has SAML 2.0 switched off: it has no SSO providers and takes none."""


READS = (
    Read("project", "", "projects:read"),
    Read("auth", "/config/auth", "auth:read"),
    Read("third_party_auth", "/config/auth/third-party-auth", "auth:read"),
    Read("sso_providers", SSO_PATH, "auth:read"),
    Read("postgrest", "/postgrest", "rest:read"),
    Read("storage", "/config/storage", "storage:read"),
    Read("realtime", "/config/realtime", "realtime:read"),
    Read("pooler", "/config/database/pooler", "database:read"),
    Read("postgres", "/config/database/postgres", "database:read"),
    Read("network_restrictions", "/network-restrictions", "projects:read"),
    Read("ssl_enforcement", "/ssl-enforcement", "database:read"),
    Read("custom_hostname", "/custom-hostname", "domains:read"),
    Read("secrets", "/secrets", "secrets:read"),
    Read("functions", "/functions", "edge_functions:read"),
)
FUNCTION_SCOPE = "edge_functions:read"
_READS_BY_SECTION = {read.section: read for read in READS}


class ManagementAPI:
    """One project of the Management API at ``base_url``, read (and written) with a personal access token."""

    def __init__(self, base_url: str, token: str, project_ref: str, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not PROJECT_REF.match(project_ref or ""):
            raise ConfigurationError(f"project ref {project_ref!r} is not a Supabase project ref (20 lowercase letters)")
        self.base_url = base_url.rstrip("/")
        self.project_ref = project_ref
        self._client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"},
                                    timeout=TIMEOUT, transport=transport)
        self._sleep = sleep

    def describe(self) -> str:
        return f"project {self.project_ref} at {self.base_url}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ManagementAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, relative: str) -> str:
        return f"/v1/projects/{self.project_ref}{relative}"

    def request(self, method: str, relative: str, scope: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """One call, tried again on 429, 5xx and dropped connections; 401/403 and other 4xx raise. With
        ``stream`` the body is left unread for the caller (who closes the response)."""
        what = f"{method} {self.path(relative)}"
        for attempt in range(1, MAX_TRIES + 1):
            try:
                response = self._client.send(self._client.build_request(method, self.path(relative), **kwargs),
                                             stream=stream)
            except httpx.TransportError as error:
                if attempt == MAX_TRIES:
                    raise BackupError(f"Management API {what}: {type(error).__name__} after {attempt} tries") from None
                self._sleep(min(2.0 ** attempt, MAX_WAIT_SECONDS))
                continue
            if response.status_code >= 400 and stream:
                response.read()
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == MAX_TRIES:
                    raise BackupError(f"Management API {what}: HTTP {response.status_code} after {attempt} tries")
                wait = _retry_after(response) if response.status_code == 429 else None
                wait = min(wait if wait is not None else 2.0 ** attempt, MAX_WAIT_SECONDS)
                log.info("Management API %s: HTTP %d, trying again in %.1f s", what, response.status_code, wait)
                self._sleep(wait)
                continue
            if response.status_code == 401:
                raise ConfigurationError(f"the Management API refused the token for {what} (401): set a valid personal "
                                         "access token as the password of the connection")
            if response.status_code == 403:
                raise ConfigurationError(f"the token may not {what} (403): it needs the scope {scope} on project "
                                         f"{self.project_ref}")
            if response.status_code == 404 and relative.startswith(SSO_PATH):
                raise SamlNotEnabled(f"Management API {what}: HTTP 404 {_message(response)} (enable SAML 2.0 for "
                                     f"project {self.project_ref}: Authentication, Sign In / Providers)")
            if response.status_code >= 400:
                raise BackupError(f"Management API {what}: HTTP {response.status_code} {_message(response)}")
            return response
        raise AssertionError("unreachable")

    def read(self, section: str) -> Any:
        """One section's configuration as the API returns it (see :data:`READS`); a project without SAML
        (the API answers 404, "SAML 2.0 support is not enabled") has no SSO providers."""
        read = _READS_BY_SECTION[section]
        try:
            return self.request("GET", read.path, read.scope).json()
        except SamlNotEnabled:
            return {"items": [], "saml_enabled": False}

    def function(self, slug: str) -> dict[str, Any]:
        return self.request("GET", f"/functions/{slug}", FUNCTION_SCOPE).json()

    def function_body(self, slug: str) -> Iterator[bytes]:
        """A deployed function's body (its bundle, as the API serves it), streamed."""
        response = self.request("GET", f"/functions/{slug}/body", FUNCTION_SCOPE, stream=True)
        try:
            yield from response.iter_bytes()
        except httpx.HTTPError as error:
            raise BackupError(f"Management API: the body of function {slug} broke off ({type(error).__name__})") from None
        finally:
            response.close()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body))[:200] if isinstance(body, dict) else str(body)[:200]
