"""schemathesis (v4's own CLI, every check and phase) over every operation of ``/openapi.json`` of a live server,
with an API key: no failure, and no "schema validation mismatch" (generated data that the schema calls valid but
the API mostly refuses, i.e. a schema that does not state what the API enforces).

Each operation gets a bounded number of examples (``INTERPEDIA_SCHEMATHESIS_EXAMPLES``, default 3) from a fixed
seed, so a failure reproduces. ``schemathesis.toml`` beside this file lists the few operations whose bodies have a
rule JSON Schema cannot state (it says why): for them only the check that schema-valid data is accepted, and the
mismatch warning, are off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir
from ingest_helpers import no_embedding_on_import, write_np_export  # noqa: F401  (autouse fixture)

from interpedia.config import Settings
from interpedia.ingest import import_path

EXAMPLES = os.environ.get("INTERPEDIA_SCHEMATHESIS_EXAMPLES", "3")
CONFIG = Path(__file__).with_name("schemathesis.toml")

pytestmark = pytest.mark.slow


@pytest.fixture
def app(settings: Settings) -> Any:
    """The app without rate limits: a 429 would stop the fuzzer before the handlers behind it."""
    from interpedia.web.app import create_app

    return create_app(settings.model_copy(update={"rate_limit_enabled": False}))


def test_schemathesis_finds_nothing(live_server: str, factory: Any, api_key: str, tmp_path: Path) -> None:
    import_path(
        write_saedashboard_dir(tmp_path / "dash", n_features=6, model_id="fuzz-model", sae_set="res-fz"), factory
    )
    import_path(write_np_export(tmp_path / "np"), factory)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{live_server}/openapi.json",
        "--header",
        f"x-api-key: {api_key}",
        "--max-examples",
        EXAMPLES,
        "--seed",
        "20261203",
        "--workers",
        "1",
        "--request-timeout",
        "60",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert "Schema validation mismatch" not in out, out[-6000:]
    assert run.returncode == 0, out[-12000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected and tested, out[-3000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 80, "every operation of /openapi.json is tested"
