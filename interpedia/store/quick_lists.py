"""Quick lists: features named in a URL (SAELens's ``get_neuronpedia_quick_list``), shown before anything is saved.

A feature the viewer may not open (a private source, say) is reported as not found, like one that does not exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TypedDict

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from interpedia.db.tables import Feature, Model, Source, SourceSet
from interpedia.store.catalogue import VISIBILITY_COLUMNS, chain_visible
from interpedia.store.documents.explanation import ExplanationDoc
from interpedia.store.documents.list import ListNeuronDoc
from interpedia.store.features import list_explanations
from interpedia.store.lists import FeatureRef, neuron_doc, top_examples

__all__ = ["QUICK_LIST_MAX", "QuickFeatureDoc", "quick_list_features"]

QUICK_LIST_MAX = 150  # neuronpedia.org's quick-list page refuses more
TOP_LOGITS = 5
_CHUNK = 300


class LogitDoc(TypedDict):
    """A token the feature promotes, with its logit effect."""

    token: str
    value: float


class QuickFeatureDoc(ListNeuronDoc):
    """A quick list's feature: what a list says of it, plus its top positive logits."""

    topLogits: list[LogitDoc]


def quick_list_features(session: Session, refs: Sequence[FeatureRef]) -> tuple[list[QuickFeatureDoc], list[FeatureRef]]:
    """The named features the viewer may open, in the order named (a repeat once), and the refs not found."""
    unique = list(dict.fromkeys((r.model_id, r.layer, r.index) for r in refs))
    found = {}
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        for row in session.execute(
            select(
                Feature,
                Source.name.label("source_name"),
                Source.model_id,
                Source.inference_enabled.label("source_inference"),
                Model.inference_enabled.label("model_inference"),
                *VISIBILITY_COLUMNS,
            )
            .join(Source, Source.id == Feature.source_id)
            .join(Model, Model.id == Source.model_id)
            .outerjoin(SourceSet, SourceSet.id == Source.set_id)
            .where(tuple_(Source.model_id, Source.name, Feature.index).in_(chunk))
        ):
            if chain_visible(row):
                found[(row.model_id, row.source_name, row.Feature.index)] = row
    rows = [found[key] for key in unique if key in found]
    by_source: dict[tuple[str, str], list[Feature]] = defaultdict(list)
    for r in rows:
        by_source[(r.model_id, r.source_name)].append(r.Feature)
    explanations: dict[int, list[ExplanationDoc]] = {}
    for (model_id, source_name), feats in by_source.items():
        explanations.update(list_explanations(session, model_id, source_name, feats))
    examples = top_examples(session, [(r.Feature, r.source_name, r.model_id) for r in rows])
    docs: list[QuickFeatureDoc] = []
    for r in rows:
        feat = r.Feature
        base = neuron_doc(
            feat,
            r.model_id,
            r.source_name,
            bool(r.source_inference and r.model_inference),
            explanations.get(feat.id, []),
            examples.get(feat.id, []),
        )
        logits = list(zip(feat.pos_str or [], feat.pos_values or [], strict=False))[:TOP_LOGITS]
        docs.append({**base, "topLogits": [{"token": str(t), "value": float(v)} for t, v in logits]})
    missing: list[FeatureRef] = []
    seen: set[tuple[str, str, int]] = set()
    for ref in refs:
        key = (ref.model_id, ref.layer, ref.index)
        if key not in found and key not in seen:
            missing.append(ref)
        seen.add(key)
    return docs, missing
