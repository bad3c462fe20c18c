"""Tenants on SLURM: each tenant's jobs run as its Unix user, in a pod directory only that user
can read, with the sbatch options the tenant map allows it (docs/tenants.md)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from interlink_core.errors import BadRequest, ConfigError, Forbidden
from interlink_core.jobfiles import EVENTS_FILE
from interlink_core.models import JSON
from interlink_core.tenants import Tenant, TenantMap, UnixAccount

from .config import SlurmConfig
from .script import FLAGS_ANNOTATION, user_flags

CHOICES = {"--account": "accounts", "--qos": "qos", "--partition": "partitions"}
"""sbatch options whose values a tenant's lists name, and the list's key."""


def tenant_settings(cfg: SlurmConfig, name: str, tenant: Tenant) -> SlurmConfig:
    """The plugin's settings for one tenant's pods: its flag allow-list (plus ``--account``,
    ``--qos`` and ``--partition`` when it has lists of them) and its first account as the
    default account."""
    policy = tenant.slurm
    allowed = list(cfg.allowed_flags if policy.allowed_flags is None else policy.allowed_flags)
    lists = {"--account": policy.accounts, "--qos": policy.qos, "--partition": policy.partitions}
    allowed += [flag for flag, values in lists.items() if values and flag not in allowed]
    key = "allowed_flags" if policy.allowed_flags is None else f"tenants.{name}.slurm.allowed_flags"
    account = policy.accounts[0] if policy.accounts else cfg.account
    settings = cfg.model_copy(update={"allowed_flags": allowed, "account": account})
    settings.flags_key = key
    return settings


def check_choices(pod: JSON, cfg: SlurmConfig, name: str, tenant: Tenant) -> None:
    """The pod's ``--account``/``--qos``/``--partition`` are among the tenant's (a 400 naming
    the option and the key that would allow it otherwise). ``--account`` needs a list."""
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(FLAGS_ANNOTATION)
    if annotation is None:
        return
    policy = tenant.slurm
    lists = {"--account": policy.accounts, "--qos": policy.qos, "--partition": policy.partitions}
    for flag in user_flags(str(annotation), cfg.allowed_flags, cfg.flags_key):
        option, _, value = flag.partition("=")
        values = lists.get(option)
        if option not in lists or (values is None and option != "--account"):
            continue
        if value not in (values or []):
            key = f"tenants.{name}.slurm.{CHOICES[option]}"
            offered = ", ".join(values or []) or "none"
            raise BadRequest(
                f"metadata.annotations[{FLAGS_ANNOTATION!r}]: {option}={value} is not allowed "
                f"for tenant {name!r} (allowed: {offered}); the site admin may add it to {key}"
            )


def resolve_tenant(tenants: TenantMap, name: str | None) -> Tenant:
    """The tenant a create is for; a 403 without the header or for a tenant not in the map."""
    if not name:
        raise Forbidden(
            "this plugin has a tenant map (tenants_file) and the request names no tenant "
            "(InterLink-Tenant header): send pods through the interLink API server"
        )
    return tenants.get(name, "the plugin's tenants_file")


def submit_argv(cfg: SlurmConfig, account: UnixAccount, argv: list[str]) -> list[str]:
    """``sbatch``'s command line for a tenant: ``--uid``/``--gid`` when the plugin runs as
    root (``submit_as: sbatch-uid``), else through sudo as the tenant's user."""
    if cfg.submit_as == "sudo":
        return [*sudo_prefix(cfg, account), *argv]
    return [argv[0], f"--uid={account.uid}", f"--gid={account.gid}", *argv[1:]]


def cancel_argv(cfg: SlurmConfig, account: UnixAccount | None, argv: list[str]) -> list[str]:
    """``scancel``'s command line: as the tenant's user through sudo, or as is."""
    if cfg.submit_as == "sudo" and account is not None:
        return [*sudo_prefix(cfg, account), *argv]
    return argv


def sudo_prefix(cfg: SlurmConfig, account: UnixAccount) -> list[str]:
    """``sudo -n -u USER -g GROUP --`` (never prompts: a missing rule fails at once)."""
    return [cfg.sudo, "-n", "-u", account.user, "-g", account.group, "--"]


def handover_argv(cfg: SlurmConfig, account: UnixAccount, pod_dir: Path) -> list[str]:
    """``submit_as: sudo``: give the pod directory to the tenant, group the plugin's (the
    plugin is not root; see :func:`share_with_plugin`)."""
    return [cfg.sudo, "-n", "chown", "-R", f"{account.uid}:{os.getgid()}", str(pod_dir)]


def reclaim_argv(cfg: SlurmConfig, pod_dir: Path) -> list[str]:
    """``submit_as: sudo``: take a tenant's pod directory back (to remove it)."""
    return [cfg.sudo, "-n", "chown", "-R", f"{os.getuid()}:{os.getgid()}", str(pod_dir)]


def share_with_plugin(pod_dir: Path) -> None:
    """``submit_as: sudo``, before the hand-over: the pod directory 2770 (setgid), so that
    what the job writes there stays in the plugin's group, which reads the status files and
    logs and writes ``grace``; other users (tenants) are kept out. The plugin's Events file
    stays readable to it."""
    pod_dir.chmod(0o2770)
    events = pod_dir / EVENTS_FILE
    if events.is_file() and not events.is_symlink():
        events.chmod(0o640)


def sudo_refusal(account: UnixAccount, command: str, stderr: str) -> str | None:
    """The error for a ``sudo -n`` that would not run ``command`` as the tenant's user
    (``None`` when the failure is not sudo's)."""
    text = stderr.strip()
    if not text.startswith("sudo:"):
        return None
    return (
        f"sudo refused to run {command} as {account.user} (group {account.group}): {text}; "
        "the plugin's user needs the sudo rule of docs/tenants.md (\"Without root: a sudo "
        f"rule\") for this user: put {account.user} in the rule's Runas group, or add it there"
    )


def umask_problem() -> str | None:
    """``submit_as: sudo``: the jobs inherit the plugin's umask (with sudo's 022), and the
    plugin reads their logs through its group: a umask without group read is refused."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    mask = next((int(line.split()[1], 8) for line in lines if line.startswith("Umask:")), 0)
    if not mask & 0o050:
        return None
    return (
        f"submit_as: sudo: the plugin's umask {mask:04o} keeps its group out of the jobs' "
        "logs and status files (the jobs inherit it): run the plugin with umask 027 "
        "(systemd: UMask=0027)"
    )


def own_tree(pod_dir: Path, account: UnixAccount) -> None:
    """Give a pod directory and everything in it to the tenant; the directory itself 0700
    (the plugin, root, still reads the status files and logs)."""
    for base, dirs, files in os.walk(pod_dir):
        for name in [*dirs, *files]:
            os.chown(os.path.join(base, name), account.uid, account.gid, follow_symlinks=False)
    os.chown(pod_dir, account.uid, account.gid)
    pod_dir.chmod(0o700)


def check_work_dir(cfg: SlurmConfig) -> None:
    """With a tenant map the jobs must reach their pod directories: ``work_dir`` is set,
    outside the plugin's owner-only ``state_dir``, and every directory above it lets other
    users through (``x`` for others); made 0711 itself (no listing)."""
    if cfg.work_dir is None:
        raise ConfigError(
            "work_dir: with a tenant map (tenants_file) set work_dir to a directory outside "
            "state_dir (state_dir is readable by the plugin's user only; the tenants' jobs must "
            "reach their pod directories), e.g. /var/spool/interlink/jobs"
        )
    jobs = cfg.jobs_path.resolve()
    if jobs == cfg.state_path.resolve() or cfg.state_path.resolve() in jobs.parents:
        raise ConfigError(
            f"work_dir: {cfg.work_dir} is inside state_dir, which only the plugin's user may "
            "enter: choose a directory outside it"
        )
    jobs.mkdir(parents=True, exist_ok=True)
    jobs.chmod(0o711)
    for parent in jobs.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ConfigError(
                f"work_dir: {parent} (above {jobs}) does not let other users through, so the "
                f"tenants' jobs cannot reach their pod directories: chmod o+x {parent}, or "
                "choose another work_dir"
            )
