"""Inputs and plumbing shared by the generation benches: a tiny model, an SAE, tokens, and SAEDashboard's venv.

The model is the issue's size (2 layers, d_model 128, 4 heads x 32, d_mlp 512, n_ctx 128, vocab 4096 from a
BPE trained on real offline English: the Python documentation sources Debian ships). Its weights are
random; the SAE is a standard (ReLU) SAE whose biases are calibrated on the model's own activations so
that feature densities spread log-uniformly from 1e-4 to 5e-2 (about 2% of features are dead), as in
a trained SAE. Timing does not depend on training; ``--model``/``--sae`` take real ones instead.

SAEDashboard runs in its own virtualenv (``bench/.venv-saedashboard``, git-ignored by a ``.gitignore`` it
carries), installed from ``bench/saedashboard-requirements.txt``: every package pinned to an exact version (the
file says how the set was resolved: TransformerLens 2.x, numpy 1.x). A venv built from another version of that
file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SD_VENV = BENCH_DIR / ".venv-saedashboard"
SD_PYTHON = SD_VENV / "bin" / "python"
SD_REQUIREMENTS = BENCH_DIR / "saedashboard-requirements.txt"
SD_MARKER = SD_VENV / "requirements.sha256"  # the hash of the requirements the venv was built from
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
HOOK = "blocks.1.hook_resid_pre"
MODEL_NAME = "bench-tiny-2l"

log = logging.getLogger("bench")


def _requirements_hash() -> str:
    return hashlib.sha256(SD_REQUIREMENTS.read_bytes()).hexdigest()


def ensure_saedashboard_venv() -> Path:
    """SAEDashboard's venv, built from the pinned requirements when missing or built from others (a few minutes,
    once); returns its python."""
    wanted = _requirements_hash()
    if SD_PYTHON.exists() and SD_MARKER.exists() and SD_MARKER.read_text().strip() == wanted and _sd_importable():
        return SD_PYTHON
    log.info("building %s from %s (a few minutes, once)", SD_VENV, SD_REQUIREMENTS.name)
    shutil.rmtree(SD_VENV, ignore_errors=True)
    subprocess.run([sys.executable if not MAIN_PYTHON.exists() else "python3", "-m", "venv", str(SD_VENV)], check=True)
    (SD_VENV / ".gitignore").write_text("*\n")
    # --no-deps: the file is the whole resolved set; nothing else may come in (decode-clt's torchvision/torchaudio
    # are left out on purpose, see the file)
    pip = [str(SD_VENV / "bin" / "pip"), "install", "--quiet", "--no-deps", "-r", str(SD_REQUIREMENTS)]
    subprocess.run(pip, check=True)
    if not _sd_importable():
        raise RuntimeError(f"sae-dashboard does not import in {SD_VENV}")
    SD_MARKER.write_text(wanted + "\n")
    return SD_PYTHON


def saedashboard_versions() -> dict[str, str]:
    """Versions of the packages that decide SAEDashboard's numbers, as installed in its venv."""
    probe = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "('sae-dashboard', 'sae-lens', 'transformer-lens', 'torch', 'numpy', 'transformers')}))"
    )
    out = subprocess.run([str(SD_PYTHON), "-c", probe], capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def _sd_importable() -> bool:
    probe = "import sae_dashboard.neuronpedia.neuronpedia_runner, transformer_lens, sae_lens"
    return subprocess.run([str(SD_PYTHON), "-c", probe], capture_output=True).returncode == 0


def _corpus(max_chars: int) -> list[str]:
    """Paragraphs of the Python documentation (real English prose, offline)."""
    if not DOC_SOURCES.exists():
        raise RuntimeError(f"{DOC_SOURCES} is missing: apt-get install python3.11-doc")
    docs, total = [], 0
    for path in sorted(DOC_SOURCES.rglob("*.rst.txt")):
        for para in path.read_text(errors="replace").split("\n\n"):
            text = " ".join(para.split())
            if len(text) > 80 and not text.startswith(".."):
                docs.append(text)
                total += len(text)
        if total >= max_chars:
            break
    return docs


def build_fixture(
    work: Path, *, n_prompts: int = 800, d_sae: int = 4096, ctx: int = 128, seed: int = 0
) -> dict[str, Any]:
    """Model dir, SAE dir, token rows (HF dataset with ``input_ids`` + ``tokens.npy``) under ``work``."""
    import numpy as np

    marker = work / "fixture.json"
    wanted = {"n_prompts": n_prompts, "d_sae": d_sae, "ctx": ctx, "seed": seed, "version": 3}
    if marker.exists() and json.loads(marker.read_text()).get("params") == wanted:
        return dict(json.loads(marker.read_text()))
    import torch
    from datasets import Dataset
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    started = time.perf_counter()
    torch.manual_seed(seed)
    work.mkdir(parents=True, exist_ok=True)
    docs = _corpus(4_000_000)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        docs,
        trainers.BpeTrainer(
            vocab_size=4096,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    model_dir = work / "model"
    hf_tok.save_pretrained(str(model_dir))
    kwargs = {
        "n_layers": 2,
        "d_model": 128,
        "n_heads": 4,
        "d_head": 32,
        "d_mlp": 512,
        "n_ctx": ctx,
        "d_vocab": len(hf_tok),
        "act_fn": "gelu",
        "normalization_type": "LN",
        "model_name": MODEL_NAME,
        "seed": seed,
    }
    model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(model_dir / "model.safetensors"))
    (model_dir / "tl_config.json").write_text(json.dumps(kwargs))

    # Rows: BOS + ctx-1 tokens of the documents joined by EOS (what `interpedia generate` makes from text).
    bos = int(hf_tok.bos_token_id)
    stream: list[int] = []
    for ids in hf_tok(docs[-20000:], add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(bos)
        if len(stream) > n_prompts * ctx:
            break
    body = np.asarray(stream[: n_prompts * (ctx - 1)], dtype=np.int32).reshape(n_prompts, ctx - 1)
    rows = np.concatenate([np.full((n_prompts, 1), bos, dtype=np.int32), body], axis=1)
    np.save(work / "tokens.npy", rows)
    Dataset.from_dict({"input_ids": rows.tolist()}).save_to_disk(str(work / "dataset"))

    # A standard SAE calibrated to realistic densities on the model's own activations.
    with torch.no_grad():
        sample = torch.from_numpy(rows[:64]).long()
        _, cache = model.run_with_cache(sample, names_filter=[HOOK], stop_at_layer=2)
        x = cache[HOOK].reshape(-1, kwargs["d_model"])
        d_in = kwargs["d_model"]
        meta = SAEMetadata(
            model_name=MODEL_NAME, hook_name=HOOK, context_size=ctx, prepend_bos=True, dataset_path="local-python-docs"
        )
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", metadata=meta))
        w_enc = torch.randn(d_in, d_sae) / d_in**0.5
        b_dec = x.mean(0)
        pre = (x - b_dec) @ w_enc
        rate = torch.exp(torch.empty(d_sae).uniform_(np.log(1e-4), np.log(5e-2)))
        thresh = (
            torch.quantile(pre, (1 - rate).clamp(max=1.0), dim=0).diagonal()
            if d_sae <= 512
            else torch.stack([torch.quantile(pre[:, f], 1 - rate[f]) for f in range(d_sae)])
        )
        # just below the calibration quantile: a sample token sitting exactly at 0 would fire or not on float
        # noise (different GEMM layouts round differently), which no comparison of two tools can settle
        b_enc = -thresh - 1e-3
        b_enc[torch.rand(d_sae) < 0.02] = -1e3
        w_dec = w_enc.T / w_enc.T.norm(dim=1, keepdim=True) * torch.empty(d_sae, 1).uniform_(0.5, 1.5)
        sae.W_enc.copy_(w_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_dec.copy_(b_dec)
    sae_dir = work / "sae"
    sae.save_model(str(sae_dir))
    info = {
        "params": wanted,
        "model": str(model_dir),
        "sae": str(sae_dir),
        "dataset": str(work / "dataset"),
        "tokens": str(work / "tokens.npy"),
        "n_tokens": int(rows.size),
        "hook": HOOK,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


def matched_statistics() -> dict[str, int]:
    """How many examples ``interpedia generate`` keeps by default (top activations, intervals, samples each):
    SAEDashboard is given the same numbers, so both tools do the same work."""
    from interpedia.generate.config import GenerateConfig

    d = GenerateConfig(model="", sae="", dataset="")
    return {"top_k": d.top_k, "n_quantiles": d.n_quantiles, "quantile_samples": d.quantile_samples}


def saedashboard_command(python: Path, fx: dict[str, Any], out: Path, batches: int | None = None) -> list[str]:
    """SAEDashboard's runner over the fixture (the first ``batches`` batch files of 128 features, or all)."""
    stats = matched_statistics()
    cmd = [
        str(python),
        str(BENCH_DIR / "_saedashboard_side.py"),
        "--model",
        fx["model"],
        "--sae",
        fx["sae"],
        "--tokens",
        fx["tokens"],
        "--out",
        str(out),
        "--top-k",
        str(stats["top_k"]),
        "--n-quantiles",
        str(stats["n_quantiles"]),
        "--quantile-samples",
        str(stats["quantile_samples"]),
    ]
    if batches:
        cmd += ["--end-batch", str(batches - 1)]
    return cmd


def interpedia_command(fx: dict[str, Any], out: Path, *, all_positions: bool) -> list[str]:
    """``interpedia generate`` over the fixture as a user runs it (default mode, or ``--all-positions``)."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "interpedia"),
        "generate",
        "--model",
        fx["model"],
        "--sae",
        fx["sae"],
        "--dataset",
        fx["dataset"],
        "--out",
        str(out),
        "--context-size",
        str(fx["params"]["ctx"]),
        "--n-prompts",
        str(fx["params"]["n_prompts"]),
        "--no-progress",
    ]
    return cmd + (["--all-positions"] if all_positions else [])


def run_json(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float | None = None
) -> tuple[dict[str, Any], float]:
    """Run a command whose last stdout line is JSON; returns (that JSON, wall seconds of the whole process)."""
    full_env = {
        **os.environ,
        "TQDM_DISABLE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(env or {}),
    }
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), wall
