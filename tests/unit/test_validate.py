"""Validation of untrusted import data: what is accepted, and error messages that say where the problem is."""

from __future__ import annotations

import json
import math

import pytest

from interpedia.ingest.validate import (
    BadInput,
    activation_record,
    as_float,
    as_float_list,
    as_int,
    as_str_list,
    explanation_record,
    loads,
)


def test_message_names_file_feature_and_field() -> None:
    err = BadInput("must be a finite number, got nan", file="batch-3.json", feature=17, field="frac_nonzero")
    assert str(err) == "batch-3.json: feature 17: field 'frac_nonzero': must be a finite number, got nan"


def test_located_fills_in_missing_place_but_keeps_the_inner_field() -> None:
    inner = BadInput("expected a number, got 'x'", field="activations[2].values")
    outer = inner.located(file="batch-0.json", feature=4)
    assert str(outer) == "batch-0.json: feature 4: field 'activations[2].values': expected a number, got 'x'"


def test_malformed_json_names_the_file() -> None:
    with pytest.raises(BadInput, match=r"^batch-1\.json: malformed JSON"):
        loads(b'{"features": [', file="batch-1.json")


def test_nan_and_infinity_literals_parse_so_validation_can_name_the_field() -> None:
    doc = loads(json.dumps({"a": float("nan"), "b": float("inf"), "c": -float("inf")}))
    assert math.isnan(doc["a"]) and doc["b"] == math.inf and doc["c"] == -math.inf
    with pytest.raises(BadInput, match=r"field 'values'.*finite.*position 1"):
        as_float_list([0.5, doc["a"], 1.0], "values")
    with pytest.raises(BadInput, match=r"field 'frac_nonzero'.*finite"):
        as_float(doc["b"], "frac_nonzero")


@pytest.mark.parametrize(
    "value", [["0.5", "0.25"], [0.5, "x"], [0.1, 0.2, 0.3, 0.4, "0.5"], "0.5,0.25", [[0.5], [0.25]], [0.5, None], 3]
)
def test_float_list_refuses_non_numbers(value: object) -> None:
    with pytest.raises(BadInput, match=r"field 'values'"):
        as_float_list(value, "values", allow_none=False)


def test_float_list_accepts_ints_and_floats() -> None:
    assert as_float_list([1, 2.5, 0], "values") == [1.0, 2.5, 0.0]


@pytest.mark.parametrize("value", ["abc", 1.5, True, None, [3], "1e3"])
def test_int_refuses_non_integers(value: object) -> None:
    with pytest.raises(BadInput, match=r"field 'feature_index': expected an integer"):
        as_int(value, "feature_index")


def test_int_accepts_numeric_strings_and_enforces_minimum() -> None:
    assert as_int("12", "index") == 12 and as_int(7.0, "index") == 7
    with pytest.raises(BadInput, match=r"field 'index': must be >= 0, got -3"):
        as_int(-3, "index", minimum=0)


def test_token_list_must_hold_strings() -> None:
    with pytest.raises(BadInput, match=r"field 'tokens'.*got 5"):
        as_str_list(5, "tokens")
    with pytest.raises(BadInput, match=r"field 'tokens'.*position 1"):
        as_str_list(["a", 2], "tokens")


def test_activation_with_mismatched_lengths_is_refused() -> None:
    with pytest.raises(BadInput, match=r"field 'activations\[0\]\.values': has 3 tokens but 2 values"):
        activation_record(["a", "b", "c"], [0.5, 1.0], prefix="activations[0]")


def test_activation_record_keeps_bins_and_computes_max() -> None:
    rec = activation_record(
        ["a", "b", "c"], [0.5, 2.0, -1.0], bin_min=-1, bin_max=2.0, bin_contains=0.00123, qualifying_token_index=1
    )
    assert (rec.max_value, rec.max_value_token_index, rec.min_value) == (2.0, 1, -1.0)
    assert (rec.bin_min, rec.bin_max, rec.bin_contains, rec.qualifying_token_index) == (-1.0, 2.0, 0.00123, 1)


def test_empty_explanation_is_refused() -> None:
    with pytest.raises(BadInput, match=r"field 'description': is empty"):
        explanation_record("   ", field="description")
