"""What the feature dashboard shows, built from the feature document (``feature_json``).

Token strips are built here as HTML strings rather than in a template loop: a page has about
45 examples x 128 tokens, and a per-token template call would dominate the server time. Every token
string passes through :func:`markupsafe.escape` (cached per distinct token); values are floats
written with ``repr``; classes come from fixed tables. Nothing else reaches the HTML.

Context windows: every strip holds all its tokens; those outside the 16- and 5-token windows around
the max token are wrapped in ``<span class="x16">`` / ``<span class="x5">`` so CSS can hide them
when the reader switches context size, without any per-token script.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

from interpedia.store.feature_cache import FeatureCache
from interpedia.store.features import FeatureRead
from interpedia.web.pages.charts import histogram_svg

# Tokens shown around the max token for each context size: most before it (what a causal model saw).
WINDOWS = {5: (3, 1), 16: (11, 4)}
LEVELS = 10


def _byte_decoder() -> dict[str, int]:
    # GPT-2's byte-level BPE writes each byte as a printable character; this is the inverse map.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTES = _byte_decoder()
# The same map for str.translate: byte-level characters to the byte they stand for (as a latin-1 character); every
# other character below 256 to one that latin-1 cannot encode, so a token that is not byte-level BPE fails there.
_BYTE_CHARS = {ord(c): chr(b) for c, b in _BYTES.items()} | {i: "\uffff" for i in range(256) if chr(i) not in _BYTES}
_MARKERS = str.maketrans({"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "})
_CONTROL = {c: chr(0x2400 + c) for c in range(32) if chr(c) not in "\n\t"} | {0x7F: "\u2421"}


@lru_cache(maxsize=1 << 18)
def display_token(token: str) -> str:
    """How a raw tokenizer string reads: ``Ġcat`` -> `` cat``, ``Ċ`` -> newline, ``âĢĻ`` -> ``’``."""
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):  # SentencePiece byte token
        try:
            return chr(int(token[3:5], 16)).translate(_CONTROL)
        except ValueError:
            pass
    text: str | None = None
    if token:
        try:  # every character a byte-level one (else the encode fails), as one translate instead of a loop
            text = token.translate(_BYTE_CHARS).encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            text = None
    if text is None:
        # Not byte-level BPE (or a partial UTF-8 sequence): undo only the common space/newline markers.
        text = token.translate(_MARKERS)
    return text.translate(_CONTROL)


class _TokenCache(dict[str, Any]):
    """token string -> rendered piece, built on first use. A plain dict: a hit is one C-level lookup
    (``functools.lru_cache`` bookkeeping costs several times that, and a page looks up ~6,000 tokens).
    Bounded by dropping everything when full; vocabularies are far smaller than the bound."""

    def __init__(self, build: Any, limit: int = 1 << 19) -> None:
        super().__init__()
        self.build, self.limit = build, limit

    def __missing__(self, token: str) -> Any:
        value = self.build(token)
        if len(self) >= self.limit:
            self.clear()
        self[token] = value
        return value


def _build_token_html(token: str) -> tuple[str, bool]:
    text = display_token(token)
    return str(escape(text.replace("\n", "↵"))), "\n" in text


def _build_plain_span(token: str) -> str:
    html, newline = _token_html[token]
    return f'<span class="t">{html}</span>' + ('<br class="br">' if newline else "")


# Escaped display text of a token and whether it ends a line; the span of a zero-valued token.
_token_html = _TokenCache(_build_token_html)
_plain_span = _TokenCache(_build_plain_span)


def _level(value: float, inv_scale: float) -> int:  # 1..10
    return min(LEVELS, max(1, math.ceil(abs(value) * inv_scale * LEVELS - 1e-9)))


def _window(center: int, n: int, before: int, after: int) -> tuple[int, int]:
    """``[lo, hi)`` of ``before + 1 + after`` tokens around ``center``, slid inwards at either end."""
    lo, hi = center - before, center + after + 1
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > n:
        lo, hi = max(0, lo - (hi - n)), n
    return lo, hi


def _dfa_marks(dfa: list[float] | None, target: int | None, n: int) -> dict[int, str]:
    """Position -> the classes and attribute of its DFA overlay: ``d``/``dn`` levels scaled to the example's
    largest |term|, ``dt`` on the target (shown by CSS while the example is hovered)."""
    if not dfa or len(dfa) != n:
        return {}
    top = max((abs(d) for d in dfa if d is not None), default=0.0)
    inv = 1.0 / top if top > 0 else 1.0
    marks = {
        i: f' {"d" if d > 0 else "dn"}{_level(d, inv)}" data-d="{d!r}'
        for i, d in enumerate(dfa)
        if d  # None or 0: nothing to show
    }
    if target is not None and 0 <= target < n:
        marks[target] = " dt" + marks.get(target, "")
    return marks


def token_strip(
    tokens: list[str],
    values: list[float],
    center: int,
    inv_scale: float,
    dfa: list[float] | None = None,
    dfa_target: int | None = None,
) -> Markup:
    """One example as token spans coloured by value, with the context-window wrappers and, for attention SAEs,
    the direct feature attribution of its maximum (shown on hover)."""
    spans = list(map(_plain_span.__getitem__, tokens))
    marks = _dfa_marks(dfa, dfa_target, len(tokens))
    for i in sorted({i for i, v in enumerate(values) if v} | marks.keys()):
        value = values[i]
        html, newline = _token_html[tokens[i]]
        level = min(LEVELS, max(1, math.ceil(abs(value) * inv_scale * LEVELS - 1e-9)))
        colour = f" {'p' if value > 0 else 'n'}{level}" if value else ""
        spans[i] = f'<span class="t{colour}{marks.get(i, "")}" data-v="{value!r}">{html}</span>' + (
            '<br class="br">' if newline else ""
        )
    n = len(spans)
    if not n:
        return Markup("")
    center = min(max(center, 0), n - 1)
    spans[center] = spans[center].replace('<span class="t', '<span class="t m', 1)  # the max token
    lo5, hi5 = _window(center, n, *WINDOWS[5])
    lo16, hi16 = _window(center, n, *WINDOWS[16])
    # Wrap the runs outside each window by editing the boundary spans, then join once. Windows nest:
    # [x16 ... lo16) [x5 ... lo5) core [hi5 ... x5) [hi16 ... x16)
    if lo16 > 0:
        spans[0] = '<span class="el e16">…</span><span class="x16">' + spans[0]
        spans[lo16 - 1] += "</span>"
    if lo5 > lo16:
        spans[lo16] = '<span class="el e5">…</span><span class="x5">' + spans[lo16]
        spans[lo5 - 1] += "</span>"
    if hi16 > hi5:
        spans[hi5] = '<span class="x5">' + spans[hi5]
        spans[hi16 - 1] += '</span><span class="el e5">…</span>'
    if n > hi16:
        spans[hi16] = '<span class="x16">' + spans[hi16]
        spans[n - 1] += '</span><span class="el e16">…</span>'
    return Markup("".join(spans))


@dataclass
class Example:
    """One example row of the activations list."""

    max_value: float
    strip: Markup


@dataclass
class Group:
    """Examples under one heading: the top activations or one quantile interval."""

    title: str
    examples: list[Example] = field(default_factory=list)
    bin_min: float | None = None
    bin_max: float | None = None
    contains: float | None = None


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _contains(frac: float | None) -> str:
    return "?" if frac is None else f"{frac * 100:.3g}%"


def activation_groups(doc: Mapping[str, Any], show_dfa: bool = False) -> list[Group]:
    """Top activations first, then quantile groups ("Interval a–b (Contains x%)") from the highest down; with
    ``show_dfa`` (the source set's ``showDfa``), examples carry their DFA overlay."""
    acts = doc.get("activations") or []
    scale = doc.get("maxActApprox") or 0.0
    if not scale or scale <= 0:
        scale = max((abs(a.get("maxValue") or 0.0) for a in acts), default=0.0)
    inv_scale = 1.0 / scale if scale > 0 else 1.0
    top = Group(title="Top Activations")
    intervals: dict[tuple[float, float, float | None], Group] = {}
    for act in acts:
        example = Example(
            max_value=act.get("maxValue") or 0.0,
            strip=token_strip(
                act["tokens"],
                act["values"],
                act.get("maxValueTokenIndex") or 0,
                inv_scale,
                act.get("dfaValues") if show_dfa else None,
                act.get("dfaTargetIndex"),
            ),
        )
        bin_min, bin_max = act.get("binMin"), act.get("binMax")
        if bin_min is None or bin_max is None or bin_min < 0:
            top.examples.append(example)
            continue
        key = (bin_min, bin_max, act.get("binContains"))
        group = intervals.get(key)
        if group is None:
            group = intervals[key] = Group(
                title=f"Interval {_fmt(bin_min)}–{_fmt(bin_max)} (Contains {_contains(key[2])})",
                bin_min=bin_min,
                bin_max=bin_max,
                contains=key[2],
            )
        group.examples.append(example)
    groups = [top] if top.examples else []
    groups += sorted(intervals.values(), key=lambda g: (-(g.bin_max or 0.0), -(g.bin_min or 0.0)))
    return groups


@dataclass
class Logit:
    """One token of the logit lens with its colour level."""

    text: str
    value: float
    cls: str


def logits(doc: Mapping[str, Any]) -> tuple[list[Logit], list[Logit]]:
    """Negative and positive logits, coloured on one scale (the largest magnitude of either list)."""
    neg = list(zip(doc.get("neg_str") or [], doc.get("neg_values") or [], strict=False))
    pos = list(zip(doc.get("pos_str") or [], doc.get("pos_values") or [], strict=False))
    top = max((abs(v) for _, v in neg + pos if v is not None), default=0.0)
    inv = 1.0 / top if top > 0 else 1.0

    def build(rows: list[tuple[str, float]], kind: str) -> list[Logit]:
        return [Logit(display_token(s), v, f"{kind}{_level(v, inv)}") for s, v in rows if v is not None]

    return build(neg, "n"), build(pos, "p")


def similar(doc: Mapping[str, Any]) -> list[tuple[int, float]]:
    """Features by decoder cosine similarity, without the feature itself."""
    me = int(doc["index"])
    pairs = zip(doc.get("topkCosSimIndices") or [], doc.get("topkCosSimValues") or [], strict=False)
    return [(int(i), float(v)) for i, v in pairs if i is not None and v is not None and int(i) != me]


def alignment(doc: Mapping[str, Any]) -> list[tuple[int, float, float | None]]:
    """Neuron alignment rows: neuron index, value, share of the L1 norm."""
    idx = doc.get("neuron_alignment_indices") or []
    val = doc.get("neuron_alignment_values") or []
    l1 = doc.get("neuron_alignment_l1") or []
    return [
        (int(i), float(v), (float(l1[n]) if n < len(l1) and l1[n] is not None else None))
        for n, (i, v) in enumerate(zip(idx, val, strict=False))
        if i is not None and v is not None
    ]


def shows_dfa(doc: Mapping[str, Any]) -> bool:
    """Whether the examples pane shows direct feature attribution (the source set says so and examples have it)."""
    set_doc = doc.get("sourceSet") or {}
    return bool(set_doc.get("showDfa")) and any(a.get("dfaValues") for a in doc.get("activations") or [])


def dashboard_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the feature template needs beyond the feature document, except the examples pane (drawn from
    :func:`activation_groups` once per version of the document and kept with it)."""
    neg, pos = logits(doc)
    show_dfa = shows_dfa(doc)
    return {
        "show_dfa": show_dfa,
        "neg_logits": neg,
        "pos_logits": pos,
        "similar": similar(doc),
        "alignment": alignment(doc),
        "act_hist": histogram_svg(
            doc.get("freq_hist_data_bar_values"),
            doc.get("freq_hist_data_bar_heights"),
            label="Activation frequency histogram",
        ),
        "logit_hist": histogram_svg(
            doc.get("logits_hist_data_bar_values"),
            doc.get("logits_hist_data_bar_heights"),
            label="Logit effect histogram",
            signed=True,
        ),
        "dead": not (doc.get("maxActApprox") or 0) > 0,
    }


def activations_html(env: Environment, read: FeatureRead, cache: FeatureCache | None) -> Markup:
    """The examples pane of a feature's page: drawn once per version of its document and kept in the cache with
    it (the token strips are most of the page's cost; nothing in them depends on who is looking)."""
    kept = read.cached.derived.get(_ACTIVATIONS_HTML)
    if kept is None:
        groups = activation_groups(read.doc, shows_dfa(read.doc))
        html = env.get_template("_activation_groups.html").render(groups=groups)
        kept = cache.grow(read.key, _ACTIVATIONS_HTML, html, len(html)) if cache is not None else html
    return Markup(kept)


def cached_view(read: FeatureRead, cache: FeatureCache | None) -> dict[str, Any]:
    """:func:`dashboard_view` of the read's document, made once per version of it and kept in the cache with it
    (histograms drawn as SVG, logits and alignment: all from the document, none from who is looking)."""
    kept: dict[str, Any] | None = read.cached.derived.get(_VIEW)
    if kept is None:
        kept = dashboard_view(read.doc)
        if cache is not None:
            # The SVG texts are most of it; the rest is small lists of numbers and strings.
            size = sum(len(v) for v in kept.values() if isinstance(v, str)) + 4096
            kept = cache.grow(read.key, _VIEW, kept, size)
    return kept


def doc_fragments(env: Environment, read: FeatureRead, cache: FeatureCache | None) -> dict[str, Markup]:
    """The panes of a feature's page drawn from its document alone (``stats_html``: logits, density, histograms;
    ``analysis_html``: decoder neighbours, neuron alignment), drawn once per version of the document and kept
    in the cache with it: rendering them for every request cost more than the rest of a cached page's read."""
    kept: dict[str, Markup] | None = read.cached.derived.get(_FRAGMENTS)
    if kept is None:
        view = cached_view(read, cache)
        kept = {
            "stats_html": Markup(env.get_template("_feature_stats.html").render(f=read.doc, view=view)),
            "analysis_html": Markup(env.get_template("_feature_analysis.html").render(f=read.doc, view=view)),
        }
        if cache is not None:
            kept = cache.grow(read.key, _FRAGMENTS, kept, sum(len(v) for v in kept.values()))
    return kept


_ACTIVATIONS_HTML = "activations_html"
_FRAGMENTS = "fragments"
_VIEW = "view"
