"""A value ``/v1/activation/single`` returns for a text equals the value ``interpedia generate`` stored for the same
text and position: same decoder-norm folding, same BOS handling, for every SAE architecture."""

from __future__ import annotations

from typing import Any

import pytest
from inference_helpers import GEN_CTX, MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from sqlalchemy import select

from interpedia.db.tables import Activation, Feature, Source
from interpedia.store.activations import list_activations

ARCHS = ("standard", "gated", "jumprelu", "topk")


def _generate(factory: Any, tiny: TinyInference, arch: str, tmp_path: Any, fold: bool) -> str:
    from interpedia.generate import GenerateConfig
    from interpedia.generate import GenerateRun as Run

    set_name = f"gen{arch}{'f' if fold else 'u'}"
    cfg = GenerateConfig(
        model=str(tiny.model),
        sae=str(tiny.saes[arch]),
        dataset=str(tiny.dataset),
        into_db=True,
        context_size=GEN_CTX,
        n_prompts=len(tiny.docs),
        concat=False,
        model_id=MODEL_ID,
        source_set=set_name,
        layer="1",
        work_dir=str(tmp_path / f"work-{set_name}"),
        fold_decoder_norm=fold,
        batch_size=8,
        shard_prompts=16,
    )
    Run(cfg, factory=factory, progress=False).run()
    return f"1-{set_name}"


@pytest.mark.parametrize("arch", ARCHS)
def test_live_activation_equals_the_stored_dashboard_value(
    arch: str, factory: Any, client: Any, tiny_inf: TinyInference, tmp_path: Any
) -> None:  # noqa: F811
    register(factory, tiny_inf)
    source_id = _generate(factory, tiny_inf, arch, tmp_path, fold=True)
    # Which document is which: the tokens inference reports for each (BOS dropped, as in a stored example).
    by_tokens: dict[tuple[str, ...], str] = {}
    for doc in tiny_inf.docs:
        r = client.post(
            "/v1/activation/single", json={"model": MODEL_ID, "prompt": doc, "source": source_id, "index": "0"}
        )
        assert r.status_code == 200, r.text
        by_tokens[tuple(r.json()["tokens"])] = doc
    compared = 0
    with factory() as session:
        source = session.scalar(select(Source).where(Source.model_id == MODEL_ID, Source.name == source_id))
        features = list(
            session.scalars(
                select(Feature)
                .where(Feature.source_id == source.id, Feature.max_act_approx > 0)
                .order_by(Feature.index)
            )
        )
        assert len(features) >= 5
        for feature in features[:8]:
            for example in list_activations(session, MODEL_ID, source_id, feature)[:6]:
                doc = by_tokens[tuple(example["tokens"])]  # every stored window is a whole document
                r = client.post(
                    "/v1/activation/single",
                    json={"model": MODEL_ID, "prompt": doc, "source": source_id, "index": str(feature.index)},
                )
                live = r.json()["activation"]
                assert r.json()["tokens"] == example["tokens"]
                assert live["values"] == pytest.approx(example["values"], rel=1e-4, abs=1e-4)
                assert live["max_value"] == pytest.approx(example["maxValue"], rel=1e-4, abs=1e-4)
                compared += 1
        assert session.scalar(select(Activation.id).limit(1)) is not None
    assert compared >= 10


def test_unfolded_generate_run_is_read_unfolded(
    factory: Any,
    client: Any,
    tiny_inf: TinyInference,  # noqa: F811
    tmp_path: Any,
) -> None:
    """A run made with ``fold_decoder_norm=False`` stores other numbers; inference follows the run's setting."""
    register(factory, tiny_inf)
    folded = _generate(factory, tiny_inf, "standard", tmp_path, fold=True)
    unfolded = _generate(factory, tiny_inf, "standard", tmp_path, fold=False)
    with factory() as session:
        source = session.scalar(select(Source).where(Source.model_id == MODEL_ID, Source.name == unfolded))
        feature = session.scalar(
            select(Feature)
            .where(Feature.source_id == source.id, Feature.max_act_approx > 0)
            .order_by(Feature.index)
            .limit(1)
        )
        index = feature.index
        example = list_activations(session, MODEL_ID, unfolded, feature)[0]
    doc = next(
        d
        for d in tiny_inf.docs
        if client.post(
            "/v1/activation/single", json={"model": MODEL_ID, "prompt": d, "source": unfolded, "index": str(index)}
        ).json()["tokens"]
        == example["tokens"]
    )
    live = {
        s_id: client.post(
            "/v1/activation/single", json={"model": MODEL_ID, "prompt": doc, "source": s_id, "index": str(index)}
        ).json()["activation"]["values"]
        for s_id in (folded, unfolded)
    }
    assert live[unfolded] == pytest.approx(example["values"], rel=1e-4, abs=1e-4)
    assert max(live[folded]) > 0 and live[folded] != pytest.approx(live[unfolded], rel=1e-3)
