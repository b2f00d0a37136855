"""The run record (``run.json``) round-trips, and old or new files with other keys still load."""

from __future__ import annotations

from interpedia.store.runs import RunCatalogue, RunRecord, RunSae, RunTokens


def _record() -> RunRecord:
    return RunRecord(
        output_key="abc123",
        fingerprint="f" * 16,
        config={"model": "/m", "sae": "/s", "fold_decoder_norm": True},
        catalogue=RunCatalogue(model_id="tiny", source_id="1-res-x", layer="1", source_set="res-x"),
        sae=RunSae(spec="/s", architecture="topk", d_sae=64, hook_name="blocks.1.hook_resid_pre"),
        tokens=RunTokens(context_size=32, prepend_bos=True, excluded_token_ids=[0], extra={"kind": "jsonl"}),
        features_written=60,
        dead_features=[3, 7],
        extra={"timings": {"total_seconds": 1.5}},
    )


def test_round_trip_keeps_every_field() -> None:
    record = _record()
    doc = record.to_dict()
    assert doc["tokens"]["kind"] == "jsonl" and doc["n_dead_features"] == 2 and doc["timings"]["total_seconds"] == 1.5
    assert RunRecord.from_dict(doc) == record
    assert RunRecord.from_dict(doc).to_dict() == doc


def test_unknown_and_missing_keys_load() -> None:
    # An older run.json: no sae section, the SAE only in config; a newer one: a key this version does not know.
    old = {"output_key": "k", "config": {"model": "/m", "sae": "/s"}, "tokens": {"prepend_bos": False}}
    record = RunRecord.from_dict({**old, "future_field": {"x": 1}})
    assert record.sae_spec == "/s" and record.model_spec == "/m" and record.tokens.prepend_bos is False
    assert record.tokens.bos_excluded_from_statistics is True
    assert record.to_dict()["future_field"] == {"x": 1}
