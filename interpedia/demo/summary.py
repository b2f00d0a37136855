"""The figures a demo build reports about its dictionaries: how many features live, sparsity, reconstruction."""

from __future__ import annotations

from typing import Any


def _live(d: int, dead: Any) -> dict[str, Any]:
    """Live features of ``d`` on the dashboard text (``dead``: features that fired on none of its tokens)."""
    if dead is None:
        return {"live_on_dashboards": None, "live_fraction": None}
    return {"live_on_dashboards": d - int(dead), "live_fraction": round((d - int(dead)) / d, 4)}


def summarize_dictionaries(report: dict[str, Any], d_sae: int, d_transcoder: int) -> dict[str, Any]:
    """The SAE's and each transcoder's figures from a build report: L0 and explained variance on held-out rows,
    the transcoders' held-out dead fraction, and the fraction of features that fire on the dashboard text."""
    out: dict[str, Any] = {}
    sae = report.get("sae")
    if sae:
        out["sae"] = {
            "d_sae": d_sae,
            "l0": sae.get("l0"),
            "explained_variance": sae.get("explained_variance"),
            **_live(d_sae, (report.get("dashboards") or {}).get("dead")),
        }
    layers = (report.get("transcoders") or {}).get("layers") or {}
    out["transcoders"] = {
        str(layer): {
            "d_transcoder": d_transcoder,
            "l0": stats.get("l0"),
            # of the MLP output the transcoder replaces
            "explained_variance": stats.get("explained_variance"),
            "dead_fraction": stats.get("dead_fraction"),
            **_live(d_transcoder, (report.get(f"tc-dashboards-{layer}") or {}).get("dead")),
        }
        for layer, stats in sorted(layers.items())
    }
    return out


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.1f}%"


def describe_dictionaries(summary: dict[str, Any]) -> list[str]:
    """One line per dictionary for the CLI."""
    lines = []
    sae = summary.get("sae")
    if sae:
        lines.append(
            f"SAE: L0 {sae['l0']:.1f}, explained variance {sae['explained_variance']:.3f}, "
            f"{sae['live_on_dashboards'] if sae['live_on_dashboards'] is not None else '?'} of {sae['d_sae']} "
            f"features ({_pct(sae['live_fraction'])}) fire on the dashboard text"
        )
    for layer, tc in summary.get("transcoders", {}).items():
        lines.append(
            f"transcoder layer {layer}: L0 {tc['l0']:.1f}, explained variance of the MLP output "
            f"{tc['explained_variance']:.3f}, {_pct(tc['dead_fraction'])} dead on held-out text, "
            f"{_pct(tc['live_fraction'])} of {tc['d_transcoder']} features fire on the dashboard text"
        )
    return lines
