"""Who is calling the API server: OIDC bearer tokens checked here (discovery + JWKS, signature,
``iss``, ``aud``, ``exp``/``nbf``, required groups/claims), TLS client certificates (mTLS), or an
explicit insecure development token. Each caller maps to a tenant: without a tenant map, an
OIDC caller is the tenant its claim names, a certificate ``mtls:<attribute>`` (so the two ways
in never collide) and the development token ``dev``; with a map, the map's tenant that lists
the caller, and a caller it does not list is refused."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from pydantic import Field, field_validator, model_validator

from .client import Endpoint
from .config import StrictModel
from .errors import BackendUnavailable, Forbidden, Unauthorized
from .tenants import MTLS_PREFIX, TenantMap
from .tlsfiles import ca_problem, problems

log = logging.getLogger("interlink.auth")


class OIDCConfig(StrictModel):
    """How bearer tokens are checked."""

    issuer: str = Field(description="Issuer URL; must equal the tokens' `iss` claim.")
    audience: str | list[str] = Field(description="Accepted `aud` value(s).")
    ca_file: Path | None = Field(default=None, description="CA bundle to trust for the issuer.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256"])
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    groups_claim: str = "groups"
    required_groups: list[str] = Field(
        default_factory=list, description="The token must carry at least one of these groups."
    )
    required_claims: dict[str, str] = Field(
        default_factory=dict, description="Claims that must have exactly these values."
    )
    tenant_claim: str = Field(default="sub", description="The claim that names the tenant.")
    jwks_refresh_seconds: int = Field(default=600, ge=10)
    insecure_http_issuer: bool = Field(
        default=False,
        description="Accept an http:// issuer (development only: keys would travel in clear).",
    )

    @model_validator(mode="after")
    def _https(self) -> OIDCConfig:
        if not self.issuer.startswith("https://") and not self.insecure_http_issuer:
            raise ValueError(
                f"issuer must be an https:// URL, not {self.issuer!r}: the signing "
                "keys are fetched from it (for a development issuer, set "
                "insecure_http_issuer: true)"
            )
        return self


TENANT_ATTRIBUTES = {"CN": "commonName", "O": "organizationName", "OU": "organizationalUnitName"}
"""``auth.mtls.tenant_from`` values and the certificate subject attributes they name."""


class MTLSConfig(StrictModel):
    """Client certificates: who presents a certificate signed by ``client_ca`` is known."""

    client_ca: Path
    tenant_from: str = Field(
        default="CN", description="Subject attribute that names the tenant (CN, O or OU)."
    )

    @field_validator("tenant_from")
    @classmethod
    def _known_attribute(cls, value: str) -> str:
        if value not in TENANT_ATTRIBUTES:
            raise ValueError(
                f"{value!r} is not a subject attribute we read: use CN, O or OU "
                "(the certificate subject's common name, organization or organizational unit)"
            )
        return value


class AuthConfig(StrictModel):
    """Authentication of callers; at least one method must be configured."""

    oidc: OIDCConfig | None = None
    mtls: MTLSConfig | None = None
    insecure_dev_token: str | None = Field(
        default=None,
        description="A fixed token accepted as tenant 'dev'. For local demos only.",
        min_length=8,
    )

    @model_validator(mode="after")
    def _one_method(self) -> AuthConfig:
        if not (self.oidc or self.mtls or self.insecure_dev_token):
            raise ValueError(
                "no authentication configured: set auth.oidc (issuer + audience), auth.mtls "
                "(client_ca), or for a local demo auth.insecure_dev_token"
            )
        return self

    def file_problems(self) -> list[str]:
        """Missing or unreadable CA files (checked at start-up and by ``interlink doctor``)."""
        return problems(
            ca_problem(self.oidc.ca_file if self.oidc else None, "auth.oidc.ca_file"),
            ca_problem(self.mtls.client_ca if self.mtls else None, "auth.mtls.client_ca"),
        )


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    tenant: str
    subject: str
    method: str
    groups: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, compare=False)


class JWKSCache:
    """The issuer's signing keys, fetched through its discovery document and refreshed when a
    token names a key id we do not have (at most every ``min_refresh`` seconds)."""

    def __init__(self, cfg: OIDCConfig, min_refresh: float = 30.0) -> None:
        self.cfg = cfg
        self.min_refresh = min_refresh
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()
        self._issuer = Endpoint.parse(cfg.issuer, ca_file=cfg.ca_file)

    async def _fetch(self) -> None:
        base = self.cfg.issuer.rstrip("/")
        try:  # a connection of its own: keys are fetched rarely (start, rotation)
            async with self._issuer.session(10.0) as http:
                async with http.get(base + "/.well-known/openid-configuration") as resp:
                    disc = await resp.json(content_type=None)
                if disc.get("issuer", "").rstrip("/") != base:
                    raise BackendUnavailable(
                        f"the OIDC discovery document names issuer {disc.get('issuer')!r}, but "
                        f"auth.oidc.issuer is {self.cfg.issuer!r}: make them equal"
                    )
                async with http.get(disc["jwks_uri"]) as resp:
                    jwks = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as exc:
            raise BackendUnavailable(
                f"cannot read the OIDC issuer's keys from {base}: {exc.__class__.__name__}: {exc}"
            ) from None
        keys: dict[str, jwt.PyJWK] = {}
        for raw in jwks.get("keys", []):
            try:
                key = jwt.PyJWK(raw)
            except jwt.PyJWKError:
                continue
            keys[raw.get("kid", "")] = key
        self._keys = keys
        self._fetched = time.monotonic()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, refreshing the set if it is unknown or stale."""
        stale = time.monotonic() - self._fetched > self.cfg.jwks_refresh_seconds
        if kid in self._keys and not stale:
            return self._keys[kid]
        async with self._lock:
            recent = time.monotonic() - self._fetched < self.min_refresh
            if (kid not in self._keys and (not recent or not self._keys)) or stale:
                await self._fetch()
        return self._keys.get(kid)


def _bearer_error(message: str) -> Unauthorized:
    return Unauthorized(message)


class Authenticator:
    """Turns request credentials into an :class:`Identity` or a 401/403 that says why."""

    def __init__(self, cfg: AuthConfig, tenants: TenantMap | None = None) -> None:
        self.cfg = cfg
        self.tenants = tenants
        self.jwks = JWKSCache(cfg.oidc) if cfg.oidc else None
        if cfg.insecure_dev_token:
            log.warning(
                "INSECURE: auth.insecure_dev_token is set; anyone with that token is tenant "
                "'dev'. Use it for local demos only, never on a shared network."
            )

    async def identify(
        self, authorization: str | None, peer_cert: dict[str, Any] | None
    ) -> Identity:
        """Authenticate a request from its ``Authorization`` header and TLS client certificate."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <token>'")
            return self._mapped(await self._token(token.strip()))
        if peer_cert and self.cfg.mtls:
            return self._mapped(self._certificate(peer_cert))
        methods = []
        if self.cfg.oidc or self.cfg.insecure_dev_token:
            methods.append("an 'Authorization: Bearer <token>' header")
        if self.cfg.mtls:
            methods.append("a TLS client certificate")
        raise Unauthorized("no credentials: send " + " or ".join(methods))

    def _mapped(self, who: Identity) -> Identity:
        """The caller as the tenant map names it (unchanged without a map); a caller the map
        does not list is refused, with the key to add."""
        if self.tenants is None:
            return who
        value = who.tenant.removeprefix(MTLS_PREFIX) if who.method == "mtls" else who.tenant
        tenant = self.tenants.tenant_for(who.method, value)
        if tenant is None:
            key = {"oidc": "oidc: [...]", "mtls": "mtls: [...]"}.get(who.method, "dev_token: true")
            raise Forbidden(
                f"{who.method} caller {value!r} is not a tenant of this site: list it under "
                f"tenants.<name>.identities ({key}) in the tenant map (tenants_file)"
            )
        return replace(who, tenant=tenant)

    def _certificate(self, cert: dict[str, Any]) -> Identity:
        assert self.cfg.mtls
        wanted = TENANT_ATTRIBUTES[self.cfg.mtls.tenant_from]
        subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
        tenant = subject.get(wanted)
        if not tenant:
            raise Forbidden(
                f"the client certificate has no {self.cfg.mtls.tenant_from} in its subject, "
                "which auth.mtls.tenant_from uses as the tenant"
            )
        subject_name = subject.get("commonName", tenant)
        return Identity(tenant=MTLS_PREFIX + tenant, subject=subject_name, method="mtls")

    async def _token(self, token: str) -> Identity:
        dev = self.cfg.insecure_dev_token
        if dev and hmac.compare_digest(token.encode(), dev.encode()):
            return Identity(tenant="dev", subject="dev", method="dev-token")
        cfg = self.cfg.oidc
        if cfg is None or self.jwks is None:
            raise Unauthorized("the bearer token is not the configured development token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthorized("the bearer token is not a JWT") from None
        kid = header.get("kid", "")
        key = await self.jwks.key(kid)
        if key is None:
            raise Unauthorized(
                f"the token is signed with key id {kid!r}, which the issuer "
                f"{cfg.issuer} does not publish"
            )
        audience = [cfg.audience] if isinstance(cfg.audience, str) else cfg.audience
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=cfg.algorithms,
                audience=audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired: get a new one from the issuer") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(
                f"the token's audience is not {' or '.join(audience)}: request a token for "
                "this API server's audience"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(
                f"the token was issued by another issuer; expected {cfg.issuer}"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is invalid: {exc}") from None
        groups = claims.get(cfg.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        if cfg.required_groups and not set(cfg.required_groups) & set(groups):
            raise Forbidden(
                f"the token's {cfg.groups_claim!r} claim has none of the required groups "
                f"({', '.join(cfg.required_groups)})"
            )
        for name, value in cfg.required_claims.items():
            if str(claims.get(name)) != value:
                raise Forbidden(f"the token's {name!r} claim must be {value!r}")
        tenant = claims.get(cfg.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Forbidden(
                f"the token has no {cfg.tenant_claim!r} claim, which names the tenant "
                "(auth.oidc.tenant_claim)"
            )
        if tenant.startswith(MTLS_PREFIX) or (tenant == "dev" and self.cfg.insecure_dev_token):
            raise Forbidden(
                f"the token's {cfg.tenant_claim!r} claim {tenant!r} would name the tenant of "
                "another way in (client certificates, the development token); such values are "
                "refused"
            )
        return Identity(
            tenant=tenant,
            subject=str(claims.get("sub", tenant)),
            method="oidc",
            groups=tuple(str(g) for g in groups),
            claims=claims,
        )
