"""Request bodies of the /api routes, as neuronpedia.org accepts them (camelCase on the wire)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BeforeValidator,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from interpedia.store.catalogue import NEW_MODEL_ID_RE
from interpedia.web.wire import Body, Finite, Index, integral


class FeatureRef(Body):
    """One feature address of ``POST /api/features``."""

    modelId: StrictStr
    layer: StrictStr
    index: Index
    maxActsToReturn: Annotated[StrictInt, Field(ge=0, le=1000), BeforeValidator(integral)] | None = None


class FeaturesOffsetBody(Body):
    """``POST /api/features-offset``."""

    modelId: StrictStr
    layer: StrictStr
    offset: Annotated[int, Field(ge=0)] = 0


class ActivationGetBody(Body):
    """``POST /api/activation/get``."""

    modelId: StrictStr
    source: StrictStr
    index: Index


class ModelNewBody(Body):
    """``POST /api/model/new``."""

    id: Annotated[StrictStr, Field(min_length=2, max_length=32, pattern=NEW_MODEL_ID_RE.pattern)]
    layers: Annotated[StrictInt, Field(ge=1, le=127), BeforeValidator(integral)]
    displayName: StrictStr | None = None
    url: StrictStr | None = None


class ModelGetBody(Body):
    """``POST /api/model/get``."""

    id: StrictStr


class SourceSetNewBody(Body):
    """``POST /api/source-set/new``."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    modelId: StrictStr
    description: Annotated[StrictStr, Field(max_length=128)] | None = None
    url: StrictStr | None = None


class LogitBody(Body):
    """A token and its logit effect."""

    token: StrictStr
    value: Finite


class UploadExplanation(Body):
    """An explanation sent with an uploaded feature."""

    text: Annotated[StrictStr, Field(min_length=1, max_length=10_000)]
    methodName: StrictStr | None = None
    modelName: StrictStr | None = None


class UploadActivation(Body):
    """An example sent with an uploaded feature."""

    tokens: Annotated[list[StrictStr], Field(min_length=1, max_length=1024)]
    values: Annotated[list[Finite], Field(min_length=1, max_length=1024)]
    quantileMax: Finite | None = None
    quantileMin: Finite | None = None
    quantileFraction: Annotated[Finite, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> UploadActivation:
        if len(self.tokens) != len(self.values):
            raise ValueError(f"has {len(self.tokens)} tokens but {len(self.values)} values")
        return self


class UploadFeature(Body):
    """One feature of ``POST /api/feature/upload-batch``."""

    index: Annotated[StrictInt, Field(ge=0), BeforeValidator(integral)]
    density: Annotated[Finite, Field(ge=0, le=1)] | None = None
    topLogits: Annotated[list[LogitBody], Field(max_length=20)] | None = None
    bottomLogits: Annotated[list[LogitBody], Field(max_length=20)] | None = None
    explanations: Annotated[list[UploadExplanation], Field(max_length=20)] | None = None
    activations: Annotated[list[UploadActivation], Field(max_length=1000)] = []


class FeatureUploadBody(Body):
    """``POST /api/feature/upload-batch``: 1 to 128 features of one source."""

    modelId: StrictStr
    source: StrictStr
    features: Annotated[list[UploadFeature], Field(min_length=1, max_length=128)]

    @field_validator("features")
    @classmethod
    def _unique_indexes(cls, features: list[UploadFeature]) -> list[UploadFeature]:
        seen: set[int] = set()
        for feat in features:
            if feat.index in seen:
                raise ValueError(f"duplicate feature index {feat.index}")
            seen.add(feat.index)
        return features


class ActivationUploadBody(Body):
    """``POST /api/activation/upload-batch``: examples for one existing feature."""

    modelId: StrictStr
    source: StrictStr
    index: Index
    activations: Annotated[list[UploadActivation], Field(min_length=1, max_length=1000)]
