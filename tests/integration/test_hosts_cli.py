"""``interpedia hosts add/list/remove`` and the host map on both databases: what is refused, and by name; what a page
offers when a host serves a model whose weights are not on the web machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from interpedia.cli import main
from interpedia.db import transaction
from interpedia.inference.availability import inference_availability, model_availability
from interpedia.store.catalogue import ensure_model, ensure_source, get_model, get_source
from interpedia.store.hosts import read_host_map

DEAD = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.fixture
def catalogue(settings: Any, factory: Any, tmp_path: Path) -> Any:
    """Model ``gpu-model`` whose weights are on another machine (paths missing here), sources 0-res and 1-res."""
    missing = tmp_path / "on-the-gpu-machine"
    with transaction(factory) as session:
        ensure_model(session, "gpu-model", layers=2, tlens_id=str(missing / "model"), inference_enabled=True)
        for name in ("0-res", "1-res"):
            ensure_source(
                session, "gpu-model", name, weights_path=str(missing / name), hook_name="x", inference_enabled=True
            )
        ensure_source(session, "gpu-model", "0-tc", weights_path=str(missing / "tc"), layer_num=0)
    return factory


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["hosts", *args], catch_exceptions=False)


def test_add_list_remove(catalogue: Any) -> None:
    assert "no inference hosts" in _run("list").output
    one = _run("add", DEAD + "/v1/", "--model", "gpu-model", "--source", "1-res", "--no-check")
    assert one.exit_code == 0, one.output
    assert f"{DEAD} serves inference for gpu-model (1-res)" in one.output  # /v1 and the slash dropped
    graphs = _run("add", "http://gpu-2:5002", "--model", "gpu-model", "--graph", "--source-set", "tc", "--no-check")
    assert graphs.exit_code == 0 and "serves graph for gpu-model (tc)" in graphs.output
    with catalogue() as session:
        hosts = read_host_map(session)
    assert [(h.url, h.kind, h.sources) for h in hosts] == [
        ("http://gpu-2:5002", "graph", ("tc",)),
        (DEAD, "inference", ("1-res",)),
    ]
    listed = _run("list").output
    assert f"{DEAD}  gpu-model  inference  1-res" in listed and "graph  tc" in listed
    taken = _run("add", DEAD, "--model", "gpu-model", "--no-check")
    assert taken.exit_code == 1 and "already serves inference for model gpu-model" in taken.output
    gone = _run("remove", hosts[0].id)
    assert gone.exit_code == 0 and "removed host" in gone.output and "http://gpu-2:5002" in gone.output
    assert _run("remove", DEAD, "--model", "other").exit_code == 1
    assert _run("remove", DEAD).exit_code == 0
    with catalogue() as session:
        assert read_host_map(session) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["add", "gpu-1:5002", "--model", "gpu-model", "--no-check"], "host URL must look like http://gpu-1:5002"),
        (["add", DEAD, "--model", "nope", "--no-check"], "model 'nope' not found"),
        (["add", DEAD, "--model", "gpu-model", "--source", "9-res", "--no-check"], "source gpu-model/9-res not found"),
        (["add", DEAD, "--model", "gpu-model", "--graph", "--source-set", "nope", "--no-check"], "nope"),
        (["add", DEAD, "--model", "gpu-model", "--source-set", "tc"], "add --graph"),
        (["add", DEAD, "--model", "gpu-model"], f"inference host {DEAD} is not answering: connection refused"),
        (["remove", "nothing-like-it"], "no host 'nothing-like-it' in the host map"),
    ],
)
def test_refused_by_name(catalogue: Any, args: list[str], said: str) -> None:
    result = _run(*args)
    assert result.exit_code != 0 and said in result.output
    with catalogue() as session:
        assert read_host_map(session) == []  # nothing half-added


def test_a_hosted_model_is_available_without_local_weights(catalogue: Any, settings: Any) -> None:
    from interpedia.inference.routing import InferenceRouter

    router = InferenceRouter(settings, catalogue, local=lambda: pytest.fail("no local inference expected"))
    with catalogue() as session:
        model, source = get_model(session, "gpu-model"), get_source(session, "gpu-model", "1-res")
        other = get_source(session, "gpu-model", "0-res")
        status = inference_availability(session, settings, model, source, router)
        assert not status["available"] and "were not found" in status["reason"]
    assert _run("add", DEAD, "--model", "gpu-model", "--source", "1-res", "--no-check").exit_code == 0
    router.forget()
    with catalogue() as session:
        assert model_availability(session, settings, model, router)["available"]
        assert inference_availability(session, settings, model, source, router)["available"]
        # a source no host serves still needs its weights here
        assert not inference_availability(session, settings, model, other, router)["available"]
