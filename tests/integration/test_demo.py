"""The demo pipeline at toy size: corpus -> tokenizer -> model -> SAE -> generate --into-db -> pages."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from interpedia.cli import main
from interpedia.demo.builder import DemoBuilder, DemoConfig
from interpedia.demo.summary import summarize_dictionaries

pytestmark = pytest.mark.slow

SENTENCES = [
    "In the beginning God created the heaven and the earth.",
    "The list.append method adds an item to the end of the list.",
    "And the LORD spake unto Moses, saying, Speak unto the children of Israel.",
    "Use a dictionary when you need to map keys to values in Python.",
    "And it came to pass, when the king heard the words of the book of the law.",
    "The import statement loads a module and binds its name in the local namespace.",
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small English corpus (user-supplied corpus path, as `--corpus` takes)."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(" ".join(SENTENCES[(i + j) % 6] for j in range(4)) for i in range(300)))
    return path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_toy_demo_builds_serves_and_caches(
    corpus: Path, tmp_path: Path, settings: Any, factory: Any, client: Any
) -> None:
    cfg = DemoConfig.toy(str(corpus))
    report = DemoBuilder(cfg, settings, factory).build()
    assert report["sae"]["l0"] > 0 and report["dashboards"]["features_written"] > 0
    assert (tmp_path / "home/demo/model/tl_config.json").exists()
    assert (tmp_path / "home/demo/sae/cfg.json").exists()
    # the dashboards are in the database and served like any other source
    page = client.post("/api/features-offset", json={"modelId": cfg.model_id, "layer": cfg.source_id, "offset": 0})
    assert page.status_code == 200 and page.json()
    live = [f for f in page.json() if (f["maxActApprox"] or 0) > 0]
    doc = client.get(f"/api/feature/{cfg.model_id}/{cfg.source_id}/{live[0]['index']}").json()
    assert doc["activations"] and doc["pos_str"]
    # every live feature has a readable label (offline explainer, no LLM needed)
    assert report["explanations"]["written"] >= len(live)
    assert doc["explanations"] and doc["explanations"][0]["typeName"] == "interpedia_top-tokens"
    # the source page's UMAP map covers every feature, labelled with those explanations
    assert report["umap"]["features"] == cfg.sae.d_sae
    points = client.post("/api/umap", json={"modelId": cfg.model_id, "layers": [cfg.source_id]}).json()
    assert len(points[cfg.source_id]) == cfg.sae.d_sae
    assert sum(1 for p in points[cfg.source_id] if p["description"]) >= len(live)
    # a transcoder per layer, saved for SAELens and circuit-tracer, with dashboards and labels (source set tc-demo)
    _check_transcoders(cfg, report, tmp_path / "home/demo/transcoders", client)
    # featured attribution graphs through those transcoders, served on the model's graph page
    _check_graphs(cfg, report, client)
    # the build's summary: the SAE's live fraction, each transcoder's L0, explained variance and dead fraction
    _check_summary(cfg, summarize_dictionaries(report, cfg.sae.d_sae, cfg.transcoder.d_transcoder))
    # a second build reuses every cached step
    started = time.perf_counter()
    DemoBuilder(cfg, settings, factory).build()
    assert time.perf_counter() - started < 10
    # the CLI's build (cached) prints that summary
    out = CliRunner().invoke(main, ["demo", "--toy", "--no-serve", "--corpus", str(corpus)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    sae_line = next(line for line in out.output.splitlines() if line.startswith("SAE: "))
    fire = rf"L0 [\d.]+, explained variance -?[\d.]+, \d+ of {cfg.sae.d_sae} features \([\d.]+%\) fire"
    assert re.search(fire, sae_line), sae_line
    for layer in range(cfg.lm.n_layers):
        line = next(line for line in out.output.splitlines() if line.startswith(f"transcoder layer {layer}: "))
        assert re.search(r"L0 [\d.]+, explained variance of the MLP output -?[\d.]+, [\d.]+% dead on held-out", line)
    # The hub path (--pretrained) takes names (gpt2-small, gpt2-small-res-jb/...); local directories stand in.
    home = tmp_path / "home"
    report = DemoBuilder(cfg, settings, factory).build_pretrained(str(home / "demo/model"), str(home / "demo/sae"))
    assert report["pretrained-dashboards"]["features_written"] > 0


def _check_summary(cfg: DemoConfig, summary: dict[str, Any]) -> None:
    sae = summary["sae"]
    # TopK: at most k features per token
    assert 0 < sae["l0"] <= cfg.sae.k and 0 < sae["explained_variance"] <= 1
    assert 0 < sae["live_on_dashboards"] <= cfg.sae.d_sae
    assert sae["live_fraction"] == pytest.approx(sae["live_on_dashboards"] / cfg.sae.d_sae, abs=1e-4)
    assert sorted(summary["transcoders"]) == [str(layer) for layer in range(cfg.lm.n_layers)]
    for tc in summary["transcoders"].values():
        # BatchTopK trains k per token on average; the JumpReLU threshold keeps it near k
        assert 0 < tc["l0"] < 4 * cfg.transcoder.k and 0 < tc["explained_variance"] <= 1
        assert 0 <= tc["dead_fraction"] < 1 and 0 < tc["live_fraction"] <= 1


def _check_transcoders(cfg: DemoConfig, report: dict[str, Any], root: Path, client: Any) -> None:
    import torch
    from sae_lens import SAE
    from safetensors.torch import load_file

    from interpedia.generate.model import HookedModel

    hooked = HookedModel.load(str(root.parent / "model"))
    tok = hooked.tokenizer
    tokens = torch.tensor([[tok.bos_token_id, *tok(SENTENCES[0], add_special_tokens=False)["input_ids"]]])
    _, cache = hooked.model.run_with_cache(tokens)
    for layer, source_id in enumerate(cfg.transcoder_source_ids()):
        stats = report["transcoders"]["layers"][str(layer)]
        assert stats["l0"] > 0 and 0 <= stats["dead_fraction"] < 1 and stats["explained_variance"] > 0
        tc = SAE.load_from_disk(str(root / "saelens" / f"layer_{layer}"))
        assert tc.cfg.architecture() == "jumprelu_transcoder" and tc.cfg.d_sae == cfg.transcoder.d_transcoder
        assert tc.cfg.metadata.hook_name == f"blocks.{layer}.ln2.hook_normalized"
        assert tc.cfg.metadata.hook_name_out == f"blocks.{layer}.hook_mlp_out"
        # circuit-tracer's file: W_enc transposed, the JumpReLU threshold under its module's name; the same
        # activations as SAELens's encode
        ct = load_file(str(root / "circuit-tracer" / f"layer_{layer}.safetensors"))
        assert ct["W_enc"].shape == (cfg.transcoder.d_transcoder, cfg.lm.d_model)
        x = cache[f"blocks.{layer}.ln2.hook_normalized"][0]
        pre = x @ ct["W_enc"].T + ct["b_enc"]
        with torch.no_grad():
            expected = tc.encode(x)
        assert torch.allclose(pre * (pre > ct["activation_function.threshold"]), expected, atol=1e-5)
        assert (expected > 0).any()
        # dashboards and labels like the SAE's
        written = report[f"tc-dashboards-{layer}"]
        assert written["features_written"] > 0
        assert written["features_written"] + written["dead"] == cfg.transcoder.d_transcoder
        page = client.post("/api/features-offset", json={"modelId": cfg.model_id, "layer": source_id, "offset": 0})
        live = [f for f in page.json() if (f["maxActApprox"] or 0) > 0]
        assert live and report[f"tc-explanations-{layer}"]["written"] >= len(live)
        doc = client.get(f"/api/feature/{cfg.model_id}/{source_id}/{live[0]['index']}").json()
        assert doc["activations"] and doc["explanations"] and doc["pos_str"]
    assert (root / "circuit-tracer" / "config.yaml").exists()


def _check_graphs(cfg: DemoConfig, report: dict[str, Any], client: Any) -> None:
    made = report["graphs"]["graphs"]
    assert [g["prompt"] for g in made] == list(cfg.graph_prompts)
    listing = client.get(f"/{cfg.model_id}/graph.json").json()
    featured = {g["slug"] for g in listing["featured"]}
    assert {g["slug"] for g in made} <= featured
    for g in made:
        assert g["feature_nodes"] > 0 and g["target"].startswith("Output")
        data = client.get(f"/{cfg.model_id}/graph.json", params={"slug": g["slug"]}).json()
        assert data["sourceSet"] == cfg.transcoder_set
        # the feature nodes are features of the tc-demo dashboards on this instance (a node per position, so
        # fewer features than nodes; one dead on the dashboard text has no page), labelled
        assert 0 < len(data["features"]) <= g["feature_nodes"]
        assert {key.split("/")[0] for key in data["features"]} <= set(cfg.transcoder_source_ids())
        assert any(info["explanation"] for info in data["features"].values())
    page = client.get(f"/{cfg.model_id}/graph", params={"slug": made[0]["slug"]})
    assert page.status_code == 200 and made[0]["slug"] in page.text
