"""CLI commands ``interpedia umap`` and ``interpedia import-eval`` ."""

from __future__ import annotations

from pathlib import Path

import click

from interpedia.cli.common import factory_for, split_source
from interpedia.config import get_settings
from interpedia.errors import UserError


@click.command("umap")
@click.option("--source", "source", required=True, help="MODEL/SOURCE, e.g. tiny-demo/1-res-demo.")
@click.option("--sae", help="SAELens SAE directory (default: where the source row says its weights are).")
@click.option("--n-neighbors", default=15, show_default=True, type=click.IntRange(min=2), help="UMAP neighbourhood.")
@click.option("--min-dist", default=0.1, show_default=True, type=click.FloatRange(min=0.0), help="UMAP min_dist.")
@click.option(
    "--clusterer",
    type=click.Choice(["hdbscan", "kmeans"]),
    default="hdbscan",
    show_default=True,
    help="How clusters are found in the 2-D map (HDBSCAN labels outliers -1).",
)
@click.option("--n-clusters", type=click.IntRange(min=2), help="k-means clusters (default sqrt(features/2)).")
@click.option("--min-cluster-size", type=click.IntRange(min=2), help="HDBSCAN (default max(5, features/100)).")
@click.option("--seed", default=0, show_default=True, type=int, help="UMAP and k-means seed.")
def umap_cmd(
    source: str,
    sae: str | None,
    n_neighbors: int,
    min_dist: float,
    clusterer: str,
    n_clusters: int | None,
    min_cluster_size: int | None,
    seed: int,
) -> None:
    """Compute a UMAP map of a source's decoder directions, clusters and log sparsity; store them."""
    from interpedia.analysis.umap_layout import UmapConfig, run_umap

    model_id, source_id = split_source(source)
    cfg = UmapConfig(
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        seed=seed,
        clusterer=clusterer,  # type: ignore[arg-type]
        n_clusters=n_clusters,
        min_cluster_size=min_cluster_size,
    )
    try:
        summary = run_umap(factory_for(get_settings()), model_id, source_id, sae=sae, cfg=cfg)
    except UserError as exc:
        raise click.ClickException(f"umap failed: {exc.message}") from None
    click.echo(
        f"{summary.model_id}/{summary.source_id}: UMAP of {summary.features} features, "
        f"{summary.clusters} clusters ({summary.noise} outliers) in {summary.seconds:.1f}s"
    )


@click.command("import-eval")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Model id, when the eval's SAELens ids do not name a source.")
@click.option("--source", "source_id", help="Source id (with --model), e.g. 6-res-jb.")
def import_eval_cmd(files: tuple[Path, ...], model_id: str | None, source_id: str | None) -> None:
    """Import SAEBench eval output JSON files (validated against sae-bench's schemas; all or nothing)."""
    from interpedia.analysis.evals import import_evals

    try:
        done = import_evals(factory_for(get_settings()), list(files), model_id=model_id, source_id=source_id)
    except UserError as exc:
        raise click.ClickException(f"nothing imported: {exc.message}") from None
    for item in done:
        click.echo(
            f"{item.path}: {item.type_name} eval -> {item.model_id}/{item.source_id}"
            f"{' (replaced the previous one)' if item.replaced else ''}"
        )
