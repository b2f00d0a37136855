"""Property-based API fuzzing: schemathesis drives every operation in ``/openapi.json`` of an app with data.

Each operation gets a bounded number of generated requests (``INTERPEDIA_SCHEMATHESIS_EXAMPLES``,
default 10, derandomized so a failure reproduces), sent with a valid API key so that authenticated
routes are exercised past the 401. The one property checked is the one users notice: no request,
however malformed, gets a 5xx (a 503 from a live-model route that has no model would be honest, but
none is expected here either). Every failure is collected with its curl command before the test fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from factories import write_saedashboard_dir
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from ingest_helpers import no_embedding_on_import, write_np_export  # noqa: F401  (autouse fixture)

from interpedia.config import Settings
from interpedia.ingest import import_path
from interpedia.web.app import create_app

EXAMPLES = int(os.environ.get("INTERPEDIA_SCHEMATHESIS_EXAMPLES", "10"))
# Routes that run a live model: without weights they answer 4xx at once; fuzzing them would only load torch.
SKIP_PREFIXES = ("/v1/steer", "/v1/explain", "/v1/score")

pytestmark = pytest.mark.slow


def _operations(schema: Any) -> list[Any]:
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        if not op.path.startswith(SKIP_PREFIXES):
            ops.append(op)
    return ops


def _first_server_error(op: Any, headers: dict[str, str]) -> str | None:
    """Fuzz one operation; the first 5xx found, described with its curl command, or None."""
    seen: list[str] = []

    @given(case=op.as_strategy())
    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        if _is_server_error(response) and not seen:
            seen.append(
                f"{op.method.upper()} {op.path} -> {response.status_code} {response.text[:300]}\n"
                f"    {case.as_curl_command(headers=headers)}"
            )

    run()
    return seen[0] if seen else None


def _is_server_error(response: Any) -> bool:
    """A 5xx other than the deliberate 503 "no weights here" for a model or SAE the fuzzer made itself."""
    if response.status_code < 500:
        return False
    if response.status_code == 503:
        try:
            body = response.json()
        except ValueError:
            return True
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        return not any(m in error for m in ("no weights this server can load", "has no SAE weights for inference"))
    return True


def test_no_generated_request_gets_a_server_error(
    settings: Settings, factory: Any, api_key: str, tmp_path: Path
) -> None:
    import_path(
        write_saedashboard_dir(tmp_path / "dash", n_features=6, model_id="fuzz-model", sae_set="res-fz"), factory
    )
    import_path(write_np_export(tmp_path / "np"), factory)
    # No rate limits here: a 429 would stop the fuzzer from reaching the handlers behind it.
    app = create_app(settings.model_copy(update={"rate_limit_enabled": False}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = _operations(schema)
    assert len(operations) >= 30, "the OpenAPI document lost its operations"
    headers = {"x-api-key": api_key}
    failures = [f for f in (_first_server_error(op, headers) for op in operations) if f]
    assert not failures, "server errors:\n" + "\n".join(failures)
