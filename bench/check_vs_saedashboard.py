"""Do interpedia's dashboards say what SAEDashboard's say? Same model, SAE and token rows; compared per feature.

    .venv/bin/python bench/check_vs_saedashboard.py [--batches N] [--mode both|default|all-positions]

Runs SAEDashboard (its pinned venv, ``bench/_saedashboard_side.py``; top-k, intervals and samples per interval
set to interpedia's defaults) on the first ``--batches`` batch files of features (128 each; default: all of
them) and ``interpedia generate`` on the same inputs (the fixture of the timing bench) in its default mode and
with ``--all-positions``, then compares, for every feature both wrote, with the tolerances printed below:

- top activations: with ``--all-positions`` (SAEDashboard's choice: the top positions over all prompts, a
  prompt as often as it has top positions) the top-k values (SAEDashboard rounds to 3 decimals) and the
  examples themselves (same prompt and token) where values are not tied. In the default mode (distinct prompts,
  each at its maximum) SAEDashboard's top positions, each prompt kept once (at its first, highest position),
  must be the first of interpedia's examples, same values and same prompt and token; interpedia then shows more
  prompts (up to top-k) where SAEDashboard showed a prompt again;
- logit lens: the top/bottom 10 token strings exactly, their values within rounding;
- density: ``frac_nonzero`` (SAEDashboard quantises it to 1e-5 through a title string);
- intervals: bounds and ``bin_contains``; the activation histogram's bins.

Exits non-zero when a check fails. Interval *samples* are random in both tools; only their membership in
their interval is checked (by the unit tests). ``--from-bench`` compares the outputs the timing bench left.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import setup_logging, table, write_results  # noqa: E402
from _generate_fixture import (  # noqa: E402
    build_fixture,
    ensure_saedashboard_venv,
    interpedia_command,
    matched_statistics,
    run_json,
    saedashboard_command,
    saedashboard_versions,
)

log = logging.getLogger("bench")

TOL = {
    "top_values": 2e-3,  # SAEDashboard rounds example values to 3 decimals (0.7.2); ours to 4
    "logit_values": 2e-3,  # 3-decimal rounding on their side, 5 on ours
    "frac_nonzero": 1.5e-5,  # theirs is quantised to 1e-5 (a percentage with 3 decimals in a title)
    "bin_bounds": 1.5e-3,  # their interval bounds come from a title, 3 decimals
    "bin_contains": 1.5e-5,  # quantised like frac_nonzero
    "hist_values": 2e-3,  # bar centres, 3 decimals on their side
}


def _features(path: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for file in sorted(path.glob("batch-*.json")):
        for f in json.loads(file.read_text())["features"]:
            out[f["feature_index"]] = f
    return out


def _top(f: dict[str, Any]) -> list[tuple[float, tuple[str, ...], int]]:
    acts = [a for a in f["activations"] if a["bin_min"] == -1]
    return [(a["values"][a["qualifying_token_index"]], tuple(a["tokens"]), a["qualifying_token_index"]) for a in acts]


MODES = ("default", "all-positions")


def _distinct(top: list[tuple[float, tuple[str, ...], int]]) -> list[tuple[float, tuple[str, ...], int]]:
    """Top positions with each prompt kept once, at its first (highest) position."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for item in top:
        if item[1] not in seen:
            seen.add(item[1])
            out.append(item)
    return out


def compare(ours: dict[int, dict[str, Any]], theirs: dict[int, dict[str, Any]], mode: str) -> dict[str, list[Any]]:
    """Per check: [features checked, features passing, first failure]."""
    res: dict[str, list[Any]] = {}

    def check(name: str, ok: bool, detail: str) -> None:
        row = res.setdefault(name, [0, 0, ""])
        row[0] += 1
        row[1] += int(ok)
        if not ok and not row[2]:
            row[2] = detail

    for index, sd in theirs.items():
        if sd["frac_nonzero"] == 0:
            check("dead features agree", index not in ours, f"feature {index}")
            continue
        ip = ours.get(index)
        check("live features agree", ip is not None, f"feature {index} missing")
        if ip is None:
            continue
        check(
            "frac_nonzero",
            abs(ip["frac_nonzero"] - sd["frac_nonzero"]) <= TOL["frac_nonzero"],
            f"{index}: {ip['frac_nonzero']} vs {sd['frac_nonzero']}",
        )
        sd_top = [t for t in _top(sd) if t[0] > 0]  # SAEDashboard pads rare features with zero examples
        ip_top = _top(ip)
        if mode == "default":
            sd_top = _distinct(sd_top)  # the prompts SAEDashboard shows, each once: the first of ours
        n = min(len(sd_top), len(ip_top))
        # values under 5e-4 read as 0 at SAEDashboard's 3 decimals, so count at that precision
        n_visible = sum(1 for t in ip_top if np.round(t[0], 3) > 0)
        if mode == "default":
            check(
                "top-k count (distinct prompts: at least SAEDashboard's prompts)",
                n_visible >= len(sd_top) and len(ip_top) <= len(_top(sd)),
                f"{index}: {n_visible} vs {len(sd_top)}",
            )
        else:
            check("top-k count", n_visible == len(sd_top), f"{index}: {n_visible} vs {len(sd_top)}")
        check(
            "top-k values",
            all(abs(a[0] - b[0]) <= TOL["top_values"] for a, b in zip(ip_top, sd_top, strict=False)),
            f"{index}: {[a[0] for a in ip_top[:n]]} vs {[b[0] for b in sd_top[:n]]}",
        )
        # examples are comparable where their value is not tied (within rounding) with another one; the last
        # rank is left out, as it may tie with the (unseen) next one
        untied = [i for i in range(n - 1) if all(abs(sd_top[i][0] - sd_top[j][0]) > 1e-3 for j in range(n) if j != i)]
        check(
            "top-k examples (same prompt and token)",
            all(ip_top[i][1:] == sd_top[i][1:] for i in untied),
            f"{index}: first differing example",
        )
        check(
            "max activation",
            abs(ip_top[0][0] - sd_top[0][0]) <= TOL["top_values"],
            f"{index}: {ip_top[0][0]} vs {sd_top[0][0]}",
        )
        check(
            "logit lens tokens",
            ip["pos_str"] == sd["pos_str"] and ip["neg_str"] == sd["neg_str"],
            f"{index}: {ip['pos_str'][:3]} vs {sd['pos_str'][:3]}",
        )
        ip_logits, sd_logits = ip["pos_values"] + ip["neg_values"], sd["pos_values"] + sd["neg_values"]
        check(
            "logit lens values",
            all(abs(a - b) <= TOL["logit_values"] for a, b in zip(ip_logits, sd_logits, strict=True)),
            f"{index}",
        )
        check("neuron alignment", ip["neuron_alignment_indices"] == sd["neuron_alignment_indices"], f"{index}")
        sd_int = [a for a in sd["activations"] if a["bin_min"] != -1]
        ip_int = [a for a in ip["activations"] if a["bin_min"] != -1]
        sd_bins = sorted({(a["bin_min"], a["bin_max"], a["bin_contains"]) for a in sd_int})
        ip_bins = sorted({(a["bin_min"], a["bin_max"], a["bin_contains"]) for a in ip_int})
        check(
            "interval bounds and bin_contains",
            len(sd_bins) == len(ip_bins)
            and all(
                abs(a[0] - b[0]) <= TOL["bin_bounds"]
                and abs(a[1] - b[1]) <= TOL["bin_bounds"]
                and abs(a[2] - b[2]) <= TOL["bin_contains"]
                for a, b in zip(ip_bins, sd_bins, strict=False)
            ),
            f"{index}: {ip_bins} vs {sd_bins}",
        )
        check("interval example counts", len(ip_int) == len(sd_int), f"{index}: {len(ip_int)} vs {len(sd_int)}")
        bars = zip(ip["freq_hist_data_bar_values"], sd["freq_hist_data_bar_values"], strict=False)
        check("activation histogram bins", all(abs(a - b) <= TOL["hist_values"] for a, b in bars), f"{index}")
        check(
            "activation histogram heights (total)",
            sum(ip["freq_hist_data_bar_heights"]) == sum(sd["freq_hist_data_bar_heights"]),
            f"{index}",
        )
    return res


def _table(res: dict[str, list[Any]]) -> str:
    return table(
        [
            [name, checked, passed, "ok" if checked == passed else f"FAIL: {first}"]
            for name, (checked, passed, first) in res.items()
        ],
        ["check", "features", "passing", "result"],
    )


def main() -> None:
    """Run both tools on the same inputs and compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=None, help="SAEDashboard batch files (128 features; all)")
    parser.add_argument("--mode", choices=("both", *MODES), default="both", help="interpedia's top-example mode(s)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "interpedia-bench-generate")
    parser.add_argument(
        "--from-bench",
        action="store_true",
        help="compare the outputs the timing bench left in --work (every feature) instead",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    modes = MODES if args.mode == "both" else (args.mode,)
    fx = build_fixture(args.work / "fixture")
    sd_python = ensure_saedashboard_venv()
    ip_outs = {mode: args.work / f"out-interpedia-{mode}" for mode in modes}
    if args.from_bench:
        sd_dir = next(p.parent for p in (args.work / "out-saedashboard").glob("*/batch-0.json"))
        sd_result: dict[str, Any] = {"from_bench": str(args.work)}
    else:
        sd_out = args.work / "check-saedashboard"
        ip_outs = {mode: args.work / f"check-interpedia-{mode}" for mode in modes}
        for path in (sd_out, *ip_outs.values()):
            shutil.rmtree(path, ignore_errors=True)
        log.info("SAEDashboard over %s batch files (minutes)", args.batches or "all")
        sd_result, sd_seconds = run_json(saedashboard_command(sd_python, fx, sd_out, args.batches))
        sd_result["process_seconds"] = round(sd_seconds, 1)
        for mode, out in ip_outs.items():
            log.info("interpedia generate (%s)", mode)
            run_json(interpedia_command(fx, out, all_positions=mode == "all-positions"))
        sd_dir = Path(sd_result["out_dir"])
    theirs = _features(sd_dir)
    results: dict[str, Any] = {}
    for mode, out in ip_outs.items():
        res = compare(_features(out), theirs, mode)
        failed = [name for name, (checked, passed, _) in res.items() if checked != passed]
        results[mode] = {"checks": res, "failed": failed}
        print(f"\ninterpedia {mode} mode: {len(theirs)} features compared ({fx['n_tokens']:,} tokens, same rows)\n")
        print(_table(res))
    print("\ntolerances (absolute): " + ", ".join(f"{k} {v:g}" for k, v in TOL.items()))
    failed_any = any(r["failed"] for r in results.values())
    write_results(
        "check_vs_saedashboard",
        {
            "parameters": {
                "batches": args.batches or "all",
                "features": len(theirs),
                **fx["params"],
                "matched_statistics": matched_statistics(),
                "saedashboard_versions": saedashboard_versions(),
            },
            "saedashboard": sd_result,
            "tolerances": TOL,
            "modes": results,
            "failed": {mode: r["failed"] for mode, r in results.items() if r["failed"]},
        },
    )
    sys.exit(1 if failed_any else 0)


if __name__ == "__main__":
    main()
