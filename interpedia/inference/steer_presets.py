"""Steering presets (``/api/steer/presets``): prompts and feature sets to start from, per model, as neuronpedia.org
answers them: ``{model, defaultPrompt, promptPresets: [{name, prompt}], featurePresets: [{name, features: [{modelId,
layer, index, explanation, strength, hasVector?}], steerMethod?, exampleSteerOutputId?, isUserVector?}],
defaultSelectedFeatures}``.

neuronpedia.org hard-codes its presets for the models it hosts; here they come from a JSON file named by
``INTERPEDIA_STEER_PRESETS`` (model id -> the object above, less ``model``). A model the file does not name gets a few
general prompts and no feature presets. As upstream, the caller's own steering vectors of the model come first among
the feature presets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from interpedia.db.tables import User
from interpedia.errors import Unavailable
from interpedia.store.catalogue import get_model
from interpedia.store.documents.catalogue import model_json
from interpedia.store.vectors import owned_vectors

__all__ = ["GENERAL_PROMPTS", "steer_presets"]

GENERAL_PROMPTS = [
    {"name": "Favourite place", "prompt": "The place I would most like to visit is"},
    {"name": "Morning", "prompt": "Every morning, the first thing I do is"},
    {"name": "Story", "prompt": "Once upon a time, in a small village by the sea,"},
    {"name": "Opinion", "prompt": "In my honest opinion, the best thing about people is"},
    {"name": "Recipe", "prompt": "To make a good soup, you need"},
    {"name": "News", "prompt": "Breaking news: scientists have discovered"},
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow")


class PresetFeature(_Strict):
    """One feature of a preset."""

    modelId: str
    layer: str
    index: int
    strength: float
    explanation: str = ""
    hasVector: bool = False


class FeaturePreset(_Strict):
    """A named set of features (and a steering method) to steer with."""

    name: str
    features: Annotated[list[PresetFeature], Field(min_length=1)]
    steerMethod: Literal["SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP"] | None = None
    exampleSteerOutputId: str | None = None


class PromptPreset(_Strict):
    """A named prompt."""

    name: str
    prompt: str


class ModelPresets(_Strict):
    """What the presets file holds for one model."""

    defaultPrompt: str = ""
    promptPresets: list[PromptPreset] | None = None
    featurePresets: list[FeaturePreset] = []
    defaultSelectedFeatures: list[PresetFeature] = []


_FILE = TypeAdapter(dict[str, ModelPresets])
_cache: dict[str, tuple[float, dict[str, ModelPresets]]] = {}


def _configured(path: Path | None) -> dict[str, ModelPresets]:
    """The presets file, read again when it changes; Unavailable naming the file and the problem when it is bad."""
    if path is None:
        return {}
    path = Path(path).expanduser()
    try:
        stamp = path.stat().st_mtime
        hit = _cache.get(str(path))
        if hit is None or hit[0] != stamp:
            hit = (stamp, _FILE.validate_python(json.loads(path.read_text())))
            _cache[str(path)] = hit
    except (OSError, ValueError, ValidationError) as exc:
        raise Unavailable(f"the steering presets file {path} (INTERPEDIA_STEER_PRESETS) is unusable: {exc}") from None
    return hit[1]


def steer_presets(session: Session, presets_file: Path | None, model_id: str, user: User | None) -> dict[str, Any]:
    """The presets of a model the caller may see (NotFound otherwise), the caller's vectors first."""
    model = get_model(session, model_id)
    mine = _configured(presets_file).get(model.id) or ModelPresets()
    features = [p.model_dump(exclude_none=True) for p in mine.featurePresets]
    if user is not None:
        for vector in reversed([v for v in owned_vectors(session, user) if v["modelId"] == model.id]):
            label = vector["vectorLabel"] or ""
            feature = {
                "modelId": model.id,
                "layer": vector["layer"],
                "index": int(vector["index"]),
                "explanation": label,
                "strength": vector["vectorDefaultSteerStrength"] or 10,
                "hasVector": True,
            }
            features.insert(0, {"name": label, "features": [feature], "isUserVector": True})
    prompts = mine.promptPresets if mine.promptPresets is not None else [PromptPreset(**p) for p in GENERAL_PROMPTS]
    return {
        "model": model_json(model),
        "defaultPrompt": mine.defaultPrompt,
        "promptPresets": [p.model_dump() for p in prompts],
        "featurePresets": features,
        "defaultSelectedFeatures": [f.model_dump() for f in mine.defaultSelectedFeatures],
    }
