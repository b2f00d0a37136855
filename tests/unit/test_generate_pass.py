"""The streaming pass and the dashboards built from it, checked against brute force on a tiny model + SAE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from parts import require_module

torch = require_module("torch")

from generate_helpers import ARCHITECTURES, CTX, HOOK, Tiny, tiny_inputs  # noqa: E402

from interpedia.generate import GenerateConfig, GenerateRun  # noqa: E402
from interpedia.generate.feature_pass import FeaturePass, merge_states, plan_shards  # noqa: E402
from interpedia.generate.model import HookedModel  # noqa: E402
from interpedia.generate.sae import LoadedSae  # noqa: E402
from interpedia.generate.tokens import TokenSource  # noqa: E402

N_PROMPTS = 48
TOP_K = 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(tiny: Tiny) -> tuple[HookedModel, LoadedSae, np.ndarray]:
    model = HookedModel.load(str(tiny.model))
    sae = LoadedSae.load(str(tiny.sae("standard")))
    tokens = (
        TokenSource(str(tiny.jsonl), model.tokenizer, context_size=CTX, n_prompts=N_PROMPTS, prepend_bos=True)
        .rows()
        .tokens
    )
    return model, sae, tokens


def _dense_acts(fp: FeaturePass, tokens: np.ndarray, n_feat: int) -> torch.Tensor:
    """Brute force: the pass's own encoder over every token, as a dense [n_tokens, d_sae] matrix."""
    out = torch.zeros(tokens.size, n_feat)
    for start in range(0, len(tokens), 8):
        feat, tok, val = fp.encode_minibatch(torch.from_numpy(tokens[start : start + 8].astype(np.int64)))
        out[tok + start * CTX, feat] = val
    return out


@pytest.mark.parametrize("distinct", [True, False], ids=["distinct-prompts", "all-positions"])
def test_topk_and_counts_equal_brute_force(loaded: tuple[HookedModel, LoadedSae, np.ndarray], distinct: bool) -> None:
    model, sae, tokens = loaded
    fp = FeaturePass(
        model,
        sae,
        tokens,
        hook_name=HOOK,
        top_k=TOP_K,
        batch_size=5,
        ignore_ids=model.special_token_ids(),
        distinct_prompts=distinct,
    )
    results = [fp.run_shard(spec) for spec in plan_shards(len(tokens), 13)]
    state = merge_states([r.state for r in results])
    dense = _dense_acts(fp, tokens, sae.d_sae)
    assert bool((dense[0::CTX] == 0).all())  # BOS positions are excluded
    assert torch.equal(state.count, (dense > 0).sum(0))
    if distinct:
        # one example per prompt, at the prompt's maximum (first position on ties), prompts by descending value
        per_prompt = dense.view(len(tokens), CTX, sae.d_sae)
        prompt_max = per_prompt.max(dim=1).values
        prompt_arg = per_prompt.argmax(dim=1)
        rows = torch.argsort(-prompt_max, dim=0, stable=True)[:TOP_K]
        values = torch.gather(prompt_max, 0, rows)
        order = rows * CTX + torch.gather(prompt_arg, 0, rows)
        assert len(set(state.top_pos[0][state.top_pos[0] >= 0].div(CTX, rounding_mode="floor").tolist())) == int(
            (state.top_pos[0] >= 0).sum()
        )
    else:
        order = torch.argsort(-dense, dim=0, stable=True)[:TOP_K]  # ties: earlier position first
        values = torch.gather(dense, 0, order)
    live = values > 0
    assert torch.equal(state.top_val.T[live], values[live])
    assert torch.equal(state.top_pos.T[live], order[live])
    assert bool((state.top_pos.T[~live] == -1).all())
    # the shards' sparse rows hold every positive activation
    assert sum(r.nnz for r in results) == int((dense > 0).sum())


def _run(tiny: Tiny, out: Path, arch: str = "standard", **kw: Any) -> dict[str, Any]:
    cfg = GenerateConfig(
        model=str(tiny.model),
        sae=str(tiny.sae(arch)),
        dataset=str(tiny.jsonl),
        out=str(out),
        context_size=CTX,
        n_prompts=N_PROMPTS,
        top_k=TOP_K,
        batch_size=8,
        shard_prompts=16,
        **kw,
    )
    return GenerateRun(cfg, progress=False).run().run


def _features(out: Path) -> dict[int, dict[str, Any]]:
    feats = {}
    for path in sorted(out.glob("batch-*.json")):
        for f in json.loads(path.read_text())["features"]:
            feats[f["feature_index"]] = f
    return feats


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_gives_dashboards_that_match_brute_force(tiny: Tiny, tmp_path: Path, arch: str) -> None:
    run = _run(tiny, tmp_path / "out", arch)
    model = HookedModel.load(str(tiny.model))
    sae = LoadedSae.load(str(tiny.sae(arch)))
    rows = (
        TokenSource(str(tiny.jsonl), model.tokenizer, context_size=CTX, n_prompts=N_PROMPTS, prepend_bos=True)
        .rows()
        .tokens
    )
    fp = FeaturePass(model, sae, rows, hook_name=HOOK, top_k=TOP_K, batch_size=8, ignore_ids=model.special_token_ids())
    dense = _dense_acts(fp, rows, sae.d_sae)
    counts = (dense > 0).sum(0)
    feats = _features(tmp_path / "out")
    assert sorted(feats) == [i for i in range(sae.d_sae) if counts[i] > 0]
    assert run["dead_features"] == [i for i in range(sae.d_sae) if counts[i] == 0]
    assert {0, 1, 2} <= set(run["dead_features"])  # built to never fire
    assert run["sae"]["architecture"] == arch and run["features_written"] == len(feats)
    n_total = rows.size
    vocab = model.vocab_strings()
    prompts_by_window: dict[tuple[str, ...], list[int]] = {}
    for p in range(len(rows)):
        prompts_by_window.setdefault(tuple(vocab[t] for t in rows[p, 1:]), []).append(p)
    for index in list(feats)[:: max(1, len(feats) // 12)]:
        f, col = feats[index], dense[:, index]
        assert f["frac_nonzero"] == pytest.approx(float(counts[index]) / n_total)
        acts = f["activations"]
        top = [a for a in acts if a["bin_min"] == -1]
        # top examples are distinct prompts: as many as prompts the feature fires in, up to TOP_K
        assert len(top) == min(TOP_K, int((col.view(-1, rows.shape[1]) > 0).any(1).sum()))
        assert len({tuple(a["tokens"]) for a in top}) == len(top)
        assert top[0]["values"][top[0]["qualifying_token_index"]] == pytest.approx(float(col.max()), abs=1e-4)
        assert sum(f["freq_hist_data_bar_heights"]) == int(counts[index])
        assert len(f["freq_hist_data_bar_values"]) == 50 and len(f["pos_str"]) == 10
        for a in acts:
            assert len(a["tokens"]) == len(a["values"]) == CTX - 1
            # the example is the real context: its values are the feature's activations over that prompt
            matches = [
                p
                for p in prompts_by_window.get(tuple(a["tokens"]), [])
                if np.allclose(col[p * CTX + 1 : (p + 1) * CTX].numpy(), a["values"], atol=1e-4)
            ]
            assert matches, "example tokens/values are not a real prompt of this feature"
            q = a["values"][a["qualifying_token_index"]]
            if a["bin_min"] != -1:  # interval samples lie in their (closed) interval
                assert a["bin_min"] - 1e-4 <= q <= a["bin_max"] + 1e-4
                lower, upper = a["bin_min"], a["bin_max"]
                inside = ((col >= lower - 1e-6) & (col <= upper + 1e-6)).sum()
                assert a["bin_contains"] == pytest.approx(float(inside) / n_total, abs=2e-3)


def test_resume_after_a_kill_gives_the_same_output(tiny: Tiny, tmp_path: Path) -> None:
    clean = _run(tiny, tmp_path / "clean")
    cfg = GenerateConfig(
        model=str(tiny.model),
        sae=str(tiny.sae("standard")),
        dataset=str(tiny.jsonl),
        out=str(tmp_path / "resumed"),
        context_size=CTX,
        n_prompts=N_PROMPTS,
        top_k=TOP_K,
        batch_size=8,
        shard_prompts=16,
    )
    with pytest.raises(InterruptedError):
        GenerateRun(cfg, progress=False, stop_after_shards=1).run()
    shards = list((tmp_path / "resumed" / ".interpedia-work").glob("*/shards/shard-*"))
    assert len(shards) == 1 and not list((tmp_path / "resumed").glob("batch-*.json"))
    resumed = GenerateRun(cfg, progress=False).run().run
    assert resumed["shards"] == {"total": 3, "resumed": 1}
    assert resumed["tokens_in_this_run"] == 2 * 16 * CTX
    assert _features(tmp_path / "resumed") == _features(tmp_path / "clean")
    assert resumed["dead_features"] == clean["dead_features"]
    assert not (tmp_path / "resumed" / ".interpedia-work" / resumed["fingerprint"]).exists()


def test_run_json_records_the_run(tiny: Tiny, tmp_path: Path) -> None:
    run = _run(tiny, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "run.json").read_text())
    assert on_disk["fingerprint"] == run["fingerprint"]
    for key in (
        "config",
        "versions",
        "tokens",
        "pass_seconds",
        "tokens_per_second",
        "features_written",
        "dead_features",
        "timings",
        "definitions",
        "peak_rss_mb",
    ):
        assert key in on_disk, key
    assert on_disk["tokens"]["prepend_bos"] is True and on_disk["tokens"]["bos_excluded_from_statistics"] is True
    assert on_disk["tokens"]["n_tokens"] == N_PROMPTS * CTX
    assert {"torch", "transformer_lens", "sae-lens"} <= set(on_disk["versions"])
    assert "not folded" in on_disk["definitions"]["logit_lens"]
    assert on_disk["catalogue"] == {
        "model_id": "tiny-gen",
        "source_id": "1-res-standard",
        "layer": "1",
        "source_set": "res-standard",
    }
    doc = json.loads((tmp_path / "out" / "batch-0.json").read_text())
    assert (doc["model_id"], doc["layer"], doc["sae_set"]) == ("tiny-gen", 1, "res-standard")
    skipped = json.loads((tmp_path / "out" / "skipped_indexes.json").read_text())
    assert skipped["skipped_indexes"] == on_disk["dead_features"]
