"""The test world's OIDC issuer (tests/world/oidc_issuer.py) as a process a fault test may kill
and start again with the same keys, certificate and port, with tokens of a short lifetime.

    python -m tests.helpers.issuer_process --dir D --token-minutes 1   # first start
    python -m tests.helpers.issuer_process --dir D --again             # after a kill
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.helpers.world import REPO, Issuer, stop, tls, wait_ready
from tests.world.oidc_issuer import free_port, prepare, serve


def start_issuer_process(root: Path, token_minutes: int = 1, again: bool = False) -> Issuer:
    """Start the issuer under ``root`` (``again``: with the keys and port of the last start)
    and wait until its discovery document answers."""
    root.mkdir(parents=True, exist_ok=True)
    info_file = root / "issuer.json"  # written by the issuer once it serves
    info_file.unlink(missing_ok=True)
    args = ["--again"] if again else ["--token-minutes", str(token_minutes)]
    log = root / "issuer.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.issuer_process", "--dir", str(root), *args],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("OIDC issuer did not start:\n" + log.read_text())
        time.sleep(0.1)
    info = json.loads(info_file.read_text())
    wait_ready(
        info["issuer"] + "/.well-known/openid-configuration", proc, log, verify=tls(info["ca_file"])
    )
    return Issuer(info=info, proc=proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--token-minutes", type=int, default=1)
    parser.add_argument("--again", action="store_true")
    args = parser.parse_args()
    saved = args.dir / "issuer.saved.json"
    if args.again:
        info = json.loads(saved.read_text())
    else:
        info = prepare(args.dir, free_port())
        settings = Path(str(info["config_dir"])) / "settings.yaml"
        conf = yaml.safe_load(settings.read_text())
        conf["oauth"]["token_expiry_minutes"] = args.token_minutes
        settings.write_text(yaml.safe_dump(conf))
        saved.write_text(json.dumps(info))
    serve(args.dir, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
