"""Model ids that would shadow the site's own top-level paths are refused everywhere a model is created."""

from __future__ import annotations

from typing import Any

import pytest

from interpedia.errors import Invalid
from interpedia.store.catalogue import RESERVED_MODEL_IDS, create_model


def test_every_literal_top_level_route_is_reserved(app: Any) -> None:
    """A new page or API prefix must join the reserved set, or a model of that id would be unreachable."""
    firsts = set()
    for route in app.routes:
        path = getattr(route, "path", "")
        first = path.strip("/").split("/")[0]
        if first and "{" not in first:
            firsts.add(first)
    assert firsts - RESERVED_MODEL_IDS == set()


@pytest.mark.parametrize("model_id", ["search", "sae-bench", "Steer"])
def test_importing_a_reserved_model_id_is_refused(factory: Any, model_id: str) -> None:
    """Importers create models through ensure_model (lenient ids): reserved ids are still refused, nothing written."""
    with factory() as session, pytest.raises(Invalid, match="path the site uses itself"):
        create_model(session, model_id, layers=1, strict_id=False)
