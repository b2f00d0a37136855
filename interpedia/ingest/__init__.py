"""Importers and exporters: SAEDashboard batch directories, the Neuronpedia export layout, API uploads."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from interpedia.ingest.exporter import ExportSummary, export_np
from interpedia.ingest.npexport import import_np_export, is_np_export
from interpedia.ingest.pipeline import BatchImporter, ImportSummary, fewer_collections
from interpedia.ingest.saedashboard import DashboardOptions, import_saedashboard, is_saedashboard_dir
from interpedia.ingest.validate import BadInput
from interpedia.store.writer import EmbedTexts

__all__ = [
    "BadInput",
    "DashboardOptions",
    "ExportSummary",
    "ImportSummary",
    "detect_format",
    "export_np",
    "import_path",
]


def detect_format(path: Path) -> str:
    """``saedashboard`` or ``np-export``; BadInput when the directory is neither."""
    if not path.exists():
        raise BadInput("does not exist", file=str(path))
    if not path.is_dir():
        raise BadInput("expected a directory (SAEDashboard output or a Neuronpedia export)", file=str(path))
    if is_saedashboard_dir(path):
        return "saedashboard"
    if is_np_export(path):
        return "np-export"
    raise BadInput(
        "neither a SAEDashboard output (batch-N.json files) nor a Neuronpedia export "
        "(<modelId>/<sourceId>/features/...)",
        file=str(path),
    )


def import_path(
    path: Path,
    factory: sessionmaker[Session],
    *,
    options: DashboardOptions | None = None,
    force: bool = False,
    batch_size: int = 256,
    embed: EmbedTexts | None = None,
) -> ImportSummary:
    """Import a directory in whichever format it is in; ``embed`` embeds explanations that come without one."""
    opts = options or DashboardOptions()
    fmt = detect_format(path)
    with fewer_collections():
        importer = BatchImporter(factory, creator_name=opts.creator_name, force=force, embed=embed)
        if fmt == "saedashboard":
            import_saedashboard(path, importer, opts)
        else:
            import_np_export(path, importer, batch_size=batch_size)
        return importer.finish()
