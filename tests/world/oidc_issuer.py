"""A real OIDC issuer for the test world: nanoidp (discovery, JWKS, RS256 tokens, client-credentials
and password grants) served over HTTPS on loopback.

    python tests/world/oidc_issuer.py --dir /tmp/issuer --port 0

writes ``<dir>/issuer.json`` (issuer URL, CA file, signing key path, clients) once it answers, and
serves until killed. The signing key is ours (nanoidp's ``external_keys``) so that tests can also
mint tokens the issuer would never issue (expired, not yet valid, wrong audience).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "interlink-test"
CLIENTS = {"vk-cluster-a": "secret-a-0123456789", "vk-cluster-b": "secret-b-0123456789"}
USERS = {"alice": ("alice-pass-123", ["interlink-users"]), "bob": ("bob-pass-123", ["other"])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(root: Path, port: int) -> dict[str, object]:
    """Write keys, certificates and nanoidp's configuration under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (root / "signing.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (root / "signing.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    cert.private_key_pem.write_to_path(str(root / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(root / "tls.pem"))
    issuer = f"https://127.0.0.1:{port}"
    conf = root / "nanoidp"
    conf.mkdir(exist_ok=True)
    settings = {
        "config_version": 1,
        "server": {"host": "127.0.0.1", "port": port},
        "oauth": {
            "issuer": issuer,
            "audience": AUDIENCE,
            "token_expiry_minutes": 60,
            "clients": [
                {"client_id": cid, "client_secret": sec, "description": "test VK"}
                for cid, sec in CLIENTS.items()
            ],
        },
        "jwt": {
            "keys_dir": str(conf / "keys"),
            "external_keys": {
                "private_key": str(root / "signing.key"),
                "public_key": str(root / "signing.pub"),
                "kid": "test-key-1",
            },
        },
    }
    users = {
        "config_version": 1,
        "users": {
            name: {
                "password": pw,
                "email": f"{name}@example.org",
                "groups": groups,
                "roles": ["USER"],
                "tenant": "default",
            }
            for name, (pw, groups) in USERS.items()
        },
    }
    (conf / "settings.yaml").write_text(yaml.safe_dump(settings))
    (conf / "users.yaml").write_text(yaml.safe_dump(users))
    info = {
        "issuer": issuer,
        "port": port,
        "audience": AUDIENCE,
        "ca_file": str(root / "ca.pem"),
        "signing_key": str(root / "signing.key"),
        "kid": "test-key-1",
        "clients": CLIENTS,
        "users": {n: pw for n, (pw, _) in USERS.items()},
        "config_dir": str(conf),
    }
    return info


def serve(root: Path, info: dict[str, object]) -> None:
    """Serve nanoidp over HTTPS until the process is killed."""
    from nanoidp.app import create_app
    from werkzeug.serving import make_server

    app = create_app(config_dir=str(info["config_dir"]))
    server = make_server(
        "127.0.0.1",
        int(str(info["port"])),
        app,
        threaded=True,
        ssl_context=(str(root / "tls.pem"), str(root / "tls.key")),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (root / "issuer.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    while thread.is_alive():
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    port = args.port or free_port()
    info = prepare(args.dir, port)
    serve(args.dir, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
