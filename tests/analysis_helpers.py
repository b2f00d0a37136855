"""Sources with real SAE weights for the UMAP / cossim / SAEBench tests: dashboards imported, SAEs on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from factories import write_saedashboard_dir
from generate_helpers import make_sae_dir
from sqlalchemy import select

from interpedia.db import transaction
from interpedia.db.tables import Explanation, Feature, Source

MODEL = "tiny-test"
N_FEATURES = 48
CORE_EVAL = Path(__file__).parent / "data" / "saebench_core_eval.json"
EXPLAINED = {0: "the word cat", 5: "cats and kittens", 7: "closing brackets", 11: "legal language"}


@dataclass
class Site:
    """Two sources of one model, each with an SAE directory of matching size."""

    sae0: Path
    sae1: Path


def run_cli(*args: str) -> Any:
    """``interpedia ARGS`` in process."""
    from interpedia.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def build_site(factory: Any, root: Path, *, record_weights: bool = True) -> Site:
    """Import 48-feature dashboards for ``0-res-test`` and ``1-res-test``, write their SAEs, label a few features."""
    for layer in (0, 1):
        path = write_saedashboard_dir(
            root / f"sd{layer}", n_features=N_FEATURES, per_batch=24, layer=layer, seed=layer, dead=(3,)
        )
        result = run_cli("import", str(path))
        assert result.exit_code == 0, result.output
    site = Site(
        sae0=make_sae_dir(root / "sae0", "standard", seed=1, d_sae=N_FEATURES),
        sae1=make_sae_dir(root / "sae1", "standard", seed=2, d_sae=N_FEATURES),
    )
    with transaction(factory) as session:
        src0 = session.scalar(select(Source).where(Source.name == "0-res-test"))
        src1 = session.scalar(select(Source).where(Source.name == "1-res-test"))
        assert src0 is not None and src1 is not None
        if record_weights:
            src0.weights_path, src1.weights_path = str(site.sae0), str(site.sae1)
        for index, text in EXPLAINED.items():
            fid = session.scalar(select(Feature.id).where(Feature.source_id == src0.id, Feature.index == index))
            session.add(Explanation(feature_id=fid, description=text, type_name="test"))
    return site


def core_eval(**changes: Any) -> dict[str, Any]:
    """The hand-written SAEBench core eval fixture, with top-level fields replaced."""
    doc = json.loads(CORE_EVAL.read_text())
    doc.update(changes)
    return doc
