"""Start-up checks of the SLURM plugin with a tenant map."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from interlink_core.errors import ConfigError
from interlink_core.sdk import load_plugin


def test_a_tenant_map_without_a_shared_filesystem_is_refused_at_start(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(yaml.safe_dump({"tenants": {"a": {"unix_user": "root"}}}))
    settings = {
        "state_dir": str(tmp_path / "state"),
        "work_dir": str(tmp_path / "jobs"),
        "tenants_file": str(tenants),
        "shared_filesystem": False,
    }
    with pytest.raises(ConfigError, match="tenants_file with shared_filesystem: false"):
        load_plugin("slurm", None, settings)
