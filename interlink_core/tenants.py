"""The tenant map: who each tenant is (OIDC subjects, certificate names), which Unix user its
jobs run as, what it may ask its batch system for and how much it may run at once.

One YAML file, read by the API server (``tenants_file`` in its configuration: identities and
quotas) and by the plugins (``tenants_file`` in theirs: Unix users, SLURM and HTCondor
policy). Without a map every caller is its own tenant and every job runs as the plugin's user
(see docs/tenants.md)."""

from __future__ import annotations

import grp
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from .config import StrictModel, load_config
from .errors import Forbidden, InterLinkError
from .models import JSON
from .podspec import parse_quantity

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\$?$")
MTLS_PREFIX = "mtls:"
"""Tenants named by a client certificate carry this prefix (without a map), so a certificate
CN ``alice`` and an OIDC subject ``alice`` are two tenants."""


class Identities(StrictModel):
    """The callers that are this tenant, by the way they come in."""

    oidc: list[str] = Field(
        default_factory=list,
        description="Values of the token claim auth.oidc.tenant_claim (default `sub`).",
    )
    mtls: list[str] = Field(
        default_factory=list,
        description="Values of the client certificate's subject attribute auth.mtls.tenant_from.",
    )
    dev_token: bool = Field(
        default=False, description="Callers with auth.insecure_dev_token (demos only)."
    )


class SlurmPolicy(StrictModel):
    """What a tenant's pods may ask SLURM for."""

    accounts: list[str] = Field(
        default_factory=list,
        description="Accounts the pod annotation may name with --account; the first is set "
        "on every job of the tenant that names none. Empty: --account is refused.",
    )
    qos: list[str] | None = Field(
        default=None, description="QOS values --qos may name (unset: any the flags allow)."
    )
    partitions: list[str] | None = Field(
        default=None,
        description="Partitions --partition may name (unset: any the flags allow).",
    )
    allowed_flags: list[str] | None = Field(
        default=None,
        description="sbatch options this tenant's pod annotations may use (unset: the "
        "plugin's allowed_flags). --account, --qos and --partition are checked against the "
        "lists above in any case.",
    )


class Quota(StrictModel):
    """How much a tenant may hold at once at the API server."""

    max_pods: int | None = Field(default=None, ge=0, description="Pods at once.")
    max_cpus: float | None = Field(
        default=None, ge=0, description="CPUs at once (the pods' effective CPU requests/limits)."
    )


class QuotaExceeded(InterLinkError):
    """A tenant holds as much as its quota allows (429; the pod is not created)."""

    status_code = 429


def check_quota(name: str, quota: Quota, pods: int, cpus: float, pod_cpus: float) -> None:
    """Refuse one more pod (of ``pod_cpus`` CPUs) for a tenant holding ``pods`` pods and
    ``cpus`` CPUs when it would exceed its quota; the message names the key and its value."""
    if quota.max_pods is not None and pods + 1 > quota.max_pods:
        raise QuotaExceeded(
            f"tenant {name!r} already holds {pods} pods, its quota "
            f"(tenants.{name}.quota.max_pods) is {quota.max_pods}: delete pods or ask the "
            "site admin to raise it"
        )
    if quota.max_cpus is not None and cpus + pod_cpus > quota.max_cpus:
        raise QuotaExceeded(
            f"tenant {name!r} holds {cpus:g} CPUs and this pod asks for {pod_cpus:g}, over its "
            f"quota (tenants.{name}.quota.max_cpus) of {quota.max_cpus:g}: delete pods or ask "
            "the site admin to raise it"
        )


def pod_cpus(pod: JSON) -> float:
    """The CPUs a pod holds, by Kubernetes' rule: the larger of its largest init container and
    the sum of its containers (limits, else requests); a bad quantity counts as 0 here (the
    plugin refuses it, naming the field)."""

    def cpu(c: JSON) -> float:
        res = c.get("resources") or {}
        for kind in ("limits", "requests"):
            value = (res.get(kind) or {}).get("cpu")
            if value is not None:
                try:
                    return float(parse_quantity(value))
                except (ValueError, ArithmeticError, InterLinkError):
                    return 0.0
        return 0.0

    spec = pod.get("spec") or {}
    main = sum(cpu(c) for c in spec.get("containers") or [] if isinstance(c, dict))
    init = [cpu(c) for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    return max([main, *init])


class Tenant(StrictModel):
    """One tenant of the site."""

    unix_user: str = Field(description="The Unix user its jobs run as.")
    unix_group: str | None = Field(
        default=None, description="The Unix group its jobs run as (default: the user's own)."
    )
    identities: Identities | None = Field(
        default=None,
        description="Who is this tenant (default: the OIDC subject equal to its name).",
    )
    slurm: SlurmPolicy = Field(default_factory=SlurmPolicy)
    htcondor_accounting_group: str | None = Field(
        default=None, description="HTCondor accounting group of its jobs (AccountingGroup)."
    )
    quota: Quota = Field(default_factory=Quota)

    @field_validator("unix_user", "unix_group")
    @classmethod
    def _unix_name(cls, value: str | None) -> str | None:
        if value is not None and not UNIX_NAME.match(value):
            raise ValueError(f"{value!r} is not a Unix user or group name")
        return value


@dataclass(frozen=True)
class UnixAccount:
    """A tenant's Unix user and group, looked up."""

    user: str
    group: str
    uid: int
    gid: int


class TenantMap(StrictModel):
    """The site's tenants, by name (the name travels to the plugin as ``InterLink-Tenant``)."""

    tenants: dict[str, Tenant] = Field(description="Tenant name → its settings.")

    @field_validator("tenants")
    @classmethod
    def _names(cls, value: dict[str, Tenant]) -> dict[str, Tenant]:
        for name in value:
            if not TENANT_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a usable tenant name (letters, digits and '._@-', "
                    "starting with a letter or digit)"
                )
        return value

    @model_validator(mode="after")
    def _one_tenant_per_identity(self) -> TenantMap:
        seen: dict[tuple[str, str], str] = {}
        for name, tenant in self.tenants.items():
            for key in self.identities_of(name, tenant):
                if key in seen:
                    raise ValueError(
                        f"tenants.{name}: {key[0]} identity {key[1]!r} is already tenant "
                        f"{seen[key]!r}; an identity belongs to one tenant"
                    )
                seen[key] = name
        return self

    @staticmethod
    def identities_of(name: str, tenant: Tenant) -> list[tuple[str, str]]:
        """``(method, value)`` pairs that are this tenant."""
        ids = tenant.identities or Identities(oidc=[name])
        keys = [("oidc", v) for v in ids.oidc] + [("mtls", v) for v in ids.mtls]
        return keys + ([("dev-token", "dev")] if ids.dev_token else [])

    def tenant_for(self, method: str, value: str) -> str | None:
        """The name of the tenant this caller is, if the map names it."""
        for name, tenant in self.tenants.items():
            if (method, value) in self.identities_of(name, tenant):
                return name
        return None

    def get(self, name: str, source: str = "tenants_file") -> Tenant:
        """The tenant called ``name``; a 403 naming the tenant and the key to add otherwise."""
        tenant = self.tenants.get(name)
        if tenant is None:
            raise Forbidden(
                f"tenant {name!r} is not in this site's tenant map: add tenants.{name} "
                f"(with its unix_user) to the file that {source} names"
            )
        return tenant

    def quota_of(self, name: str) -> Quota | None:
        """The quota of a tenant of the map (``None`` for a name it does not have)."""
        tenant = self.tenants.get(name)
        return tenant.quota if tenant is not None else None

    def unix_problems(self) -> list[str]:
        """Unix users and groups of the map that do not exist here, one line each."""
        found = []
        for name, tenant in self.tenants.items():
            try:
                unix_account(tenant)
            except LookupError as exc:
                found.append(f"tenants.{name}: {exc}")
        return found


def unix_account(tenant: Tenant) -> UnixAccount:
    """Look up a tenant's user and group; :class:`LookupError` names the missing one."""
    try:
        user = pwd.getpwnam(tenant.unix_user)
    except KeyError:
        raise LookupError(f"unix_user {tenant.unix_user!r} does not exist on this host") from None
    if tenant.unix_group is None:
        try:
            group_name = grp.getgrgid(user.pw_gid).gr_name
        except KeyError:
            group_name = str(user.pw_gid)
        return UnixAccount(tenant.unix_user, group_name, user.pw_uid, user.pw_gid)
    try:
        group = grp.getgrnam(tenant.unix_group)
    except KeyError:
        raise LookupError(f"unix_group {tenant.unix_group!r} does not exist on this host") from None
    return UnixAccount(tenant.unix_user, tenant.unix_group, user.pw_uid, group.gr_gid)


def load_tenants(path: Path | None) -> TenantMap | None:
    """The tenant map in ``path`` (``None`` without one); a :class:`ConfigError` names every
    bad key."""
    if path is None:
        return None
    return load_config(TenantMap, path.expanduser())


__all__ = [
    "MTLS_PREFIX",
    "Identities",
    "Quota",
    "QuotaExceeded",
    "SlurmPolicy",
    "Tenant",
    "TenantMap",
    "UnixAccount",
    "check_quota",
    "load_tenants",
    "pod_cpus",
    "unix_account",
]
