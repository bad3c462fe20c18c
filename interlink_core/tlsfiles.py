"""Start-up checks of the files a configuration names (certificates, CAs, token files): each
problem is one line naming the key and the fix. Kept out of the config models so that shipped
example configurations validate on machines without those files."""

from __future__ import annotations

import ssl
from pathlib import Path


def file_problem(path: Path | None, key: str, what: str) -> str | None:
    """``key`` names a file that is not there or cannot be read."""
    if path is None:
        return None
    full = path.expanduser()
    if not full.is_file():
        return f"{key}: {path} does not exist; give the path of {what}"
    try:
        with full.open("rb"):
            pass
    except OSError as exc:
        return f"{key}: cannot read {path} ({exc.strerror}); let the service user read it"
    return None


def ca_problem(path: Path | None, key: str) -> str | None:
    """``key`` names a CA bundle that is missing or does not parse as PEM certificates."""
    missing = file_problem(path, key, "a CA certificate (PEM)")
    if missing or path is None:
        return missing
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path.expanduser()))
    except (ssl.SSLError, ValueError) as exc:
        return (
            f"{key}: {path} is not a CA certificate in PEM form ({exc}); give the CA's "
            "certificate (-----BEGIN CERTIFICATE-----)"
        )
    return None


def cert_pair_problem(cert: Path | None, key_file: Path | None, key: str) -> str | None:
    """``key``.cert / ``key``.key are missing, or are not a certificate and its private key."""
    for path, name, what in (
        (cert, "cert", "a certificate (PEM)"),
        (key_file, "key", "its private key (PEM)"),
    ):
        problem = file_problem(path, f"{key}.{name}", what)
        if problem:
            return problem
    if cert is None or key_file is None:
        return None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(cert.expanduser()), str(key_file.expanduser())
        )
    except (ssl.SSLError, ValueError) as exc:
        return (
            f"{key}: {cert} and {key_file} are not a PEM certificate and its private key "
            f"({exc}); give the matching pair"
        )
    return None


def problems(*found: str | None) -> list[str]:
    """The problems found, in order."""
    return [p for p in found if p]
