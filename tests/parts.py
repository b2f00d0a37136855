"""Missing parts (a browser, a package, a backend): a skip on a developer's machine, a failure in CI.

``CI=true`` (what ``.ci/run`` and most CI services set) turns every "this part is missing" into a failure, so a
green run means the whole suite ran; locally a missing part is a skip that says what to install.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (locally) or fail (in CI) because a part the test needs is missing."""
    if IN_CI:
        pytest.fail(f"CI=true and a part is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str) -> ModuleType:
    """The module, or a skip/failure naming it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"cannot import {name} ({exc}); make test installs it")
        raise  # unreachable: missing() raises


def check_backends(backends: list[str]) -> None:
    """In CI the suite runs on every backend: a list that leaves one out stops the run."""
    left_out = {"sqlite", "postgres"} - set(backends)
    if IN_CI and left_out:
        raise pytest.UsageError(
            f"CI=true but INTERPEDIA_TEST_BACKENDS={','.join(backends)} leaves out {', '.join(sorted(left_out))}: "
            "in CI every test runs on both backends"
        )
