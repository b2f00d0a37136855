"""``interpedia import`` and ``interpedia export`` from the command line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from factories import write_saedashboard_dir
from ingest_helpers import (
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    read_jsonl,
    write_np_export,
)

from interpedia.cli import main
from interpedia.config import Settings


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_import_prints_a_summary_and_exits_zero(settings: Settings, factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=6, per_batch=4)
    result = _run("import", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 0-res-test: 6 features, 30 activations, 0 new explanations in 2 batches" in result.stdout
    assert counts(factory)["features"] == 6

    again = _run("import", str(path))
    assert again.exit_code == 0
    assert "0 features, 0 activations" in again.stdout and "(2 already imported)" in again.stdout
    assert counts(factory)["activations"] == 30


def test_import_flags_name_model_source_set_and_layer(settings: Settings, factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=3)
    result = _run("import", str(path), "--model", "gpt2-local", "--source-set", "res-mine", "--layer", "9")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported 9-res-mine: 3 features")


def test_import_of_a_neuronpedia_export(settings: Settings, factory: Any, tmp_path: Path) -> None:
    result = _run("import", str(write_np_export(tmp_path / "export", n_features=3)))
    assert result.exit_code == 0, result.output
    assert "imported 3-res-np: 3 features, 6 activations, 3 new explanations" in result.stdout


def test_missing_or_unrecognised_directory_exits_nonzero(settings: Settings, tmp_path: Path) -> None:
    missing = _run("import", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and "nope: does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = _run("import", str(tmp_path / "empty"))
    assert empty.exit_code == 1
    assert "neither a SAEDashboard output" in empty.stderr


def test_bad_batch_exits_nonzero_with_the_message(settings: Settings, factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=8, per_batch=4)
    doc = json.loads((path / "batch-1.json").read_text())
    doc["features"][1]["activations"][0]["values"][2] = math.inf
    (path / "batch-1.json").write_text(json.dumps(doc))
    result = _run("import", str(path))
    assert result.exit_code == 1
    assert "batch-1.json: feature 5: field 'activations[0].values': must hold finite numbers" in result.stderr
    assert counts(factory)["features"] == 4


def test_export_writes_the_neuronpedia_layout(settings: Settings, factory: Any, tmp_path: Path) -> None:
    assert _run("import", str(write_saedashboard_dir(tmp_path / "sd", n_features=5))).exit_code == 0
    out = tmp_path / "out"
    result = _run("export", str(out))
    assert result.exit_code == 0, result.output
    assert f"exported 1 sources, 5 features, 25 activations, 0 explanations to {out}" in result.stdout
    base = out / "tiny-test" / "0-res-test"
    for name in (
        "model.jsonl",
        "sourceset.jsonl",
        "source.jsonl",
        "features/batch-0.jsonl.gz",
        "activations/batch-0.jsonl.gz",
    ):
        assert (base / name).is_file(), name
    [model] = read_jsonl(base / "model.jsonl")
    assert model["id"] == "tiny-test"
    feats = read_jsonl(base / "features" / "batch-0.jsonl.gz")
    assert [f["index"] for f in feats] == ["0", "1", "2", "3", "4"]
    assert all(f["modelId"] == "tiny-test" and f["layer"] == "0-res-test" for f in feats)
    acts = read_jsonl(base / "activations" / "batch-0.jsonl.gz")
    assert len(acts) == 25 and all(len(a["tokens"]) == len(a["values"]) == 16 for a in acts)

    # What export writes, import reads; into the same database it adds nothing.
    before = counts(factory)
    back = _run("import", str(out))
    assert back.exit_code == 0, back.output
    assert counts(factory) | {"imported_batches": 0} == before | {"imported_batches": 0}


def test_real_command_reports_bad_input_without_a_traceback(database_url: str, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=2)
    doc = json.loads((path / "batch-0.json").read_text())
    doc["features"][0]["feature_index"] = "abc"
    (path / "batch-0.json").write_text(json.dumps(doc))
    script = Path(sys.executable).parent / "interpedia"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "interpedia.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERPEDIA_")}
    env |= {"INTERPEDIA_DATABASE_URL": database_url, "INTERPEDIA_HOME": str(tmp_path / "home")}
    proc = subprocess.run([*cmd, "import", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "batch-0.json: feature 'abc': field 'feature_index': expected an integer" in proc.stderr
