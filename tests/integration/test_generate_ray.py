"""``--ray``: shards on Ray workers (a local Ray cluster) give exactly the single-process dashboards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parts import require_module

require_module("torch")
require_module("ray")

from generate_helpers import CTX, Tiny, tiny_inputs  # noqa: E402

from interpedia.generate import GenerateConfig, GenerateRun  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_inputs(tmp_path_factory)


def _features(out: Path) -> list[dict[str, Any]]:
    return [f for path in sorted(out.glob("batch-*.json")) for f in json.loads(path.read_text())["features"]]


@pytest.mark.slow
def test_ray_local_cluster_equals_single_process(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    base = GenerateConfig(
        model=str(tiny.model),
        sae=str(tiny.sae("jumprelu")),
        dataset=str(tiny.jsonl),
        context_size=CTX,
        n_prompts=40,
        top_k=5,
        batch_size=8,
        shard_prompts=8,
    )
    single = GenerateRun(base.with_(out=str(tmp_path / "single")), progress=False).run().run
    ray_run = GenerateRun(base.with_(out=str(tmp_path / "ray"), ray=True, ray_workers=2), progress=False).run().run
    assert ray_run["ray"]["workers"] == 2 and ray_run["shards"]["total"] == 5
    assert ray_run["dead_features"] == single["dead_features"]
    assert _features(tmp_path / "ray") == _features(tmp_path / "single")
