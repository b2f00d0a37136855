"""``interpedia lens fit``: fit a model's Jacobian lens on a corpus and store it where the lens page finds it.

The model is a catalogue model id (its weights found as live inference finds them) or a model directory / hub
name; the corpus is ``--dataset`` (as ``interpedia generate`` reads it), by default the dataset of the model's
latest ``interpedia generate`` run. The lens goes beside the weights when they are a local directory, else under
``INTERPEDIA_HOME/lenses/<model id>/`` (or to ``--out``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from interpedia.cli.common import factory_for
from interpedia.config import get_settings
from interpedia.errors import UserError


@click.group("lens")
def lens_group() -> None:
    """Lenses: each layer's residual stream read out as next-token predictions (page /MODEL/lens)."""


def _resolve(model: str) -> tuple[str, str, str | None]:
    """(model id, weights spec, dataset of its latest generate run) of a catalogue id or a weights spec."""
    from interpedia.errors import NotFound
    from interpedia.inference.plans import plan_model
    from interpedia.store.runs import latest_run

    settings = get_settings()
    factory = factory_for(settings)
    with factory() as session:
        try:
            plan = plan_model(session, settings, model)
        except NotFound:
            return Path(model).name or model, model, None
        except UserError as exc:
            raise click.ClickException(exc.message) from None
        run = latest_run(session, model_id=model)
        return model, plan.spec, run.config.get("dataset") if run is not None else None


@lens_group.command("fit")
@click.option("--model", required=True, help="Catalogue model id (e.g. tiny-demo), or a model directory / hub name.")
@click.option("--dataset", help="Corpus (as interpedia generate reads it); default: the model's latest generate run's.")
@click.option("--n-prompts", default=256, show_default=True, type=click.IntRange(min=1), help="Prompts to read.")
@click.option("--context-size", default=64, show_default=True, type=click.IntRange(min=2), help="Tokens per prompt.")
@click.option(
    "--positions", default=4, show_default=True, type=click.IntRange(min=1), help="Random positions per prompt."
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Prompts per pass.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the position draws.")
@click.option("--device", help="cpu or cuda (default INTERPEDIA_INFERENCE_DEVICE).")
@click.option("--text-field", default="text", show_default=True, help="Text column / JSONL field.")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the lens (default: where the page looks).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def fit_cmd(
    model: str,
    dataset: str | None,
    n_prompts: int,
    context_size: int,
    positions: int,
    batch_size: int,
    seed: int,
    device: str | None,
    text_field: str,
    out: Path | None,
    progress: bool | None,
) -> None:
    """Fit the Jacobian lens: the average Jacobian of the final residual w.r.t. each layer's residual."""
    from interpedia.generate.lens import fit_jacobian_lens, lens_paths
    from interpedia.generate.model import HookedModel
    from interpedia.generate.tokens import TokenSource

    settings = get_settings()
    model_id, spec, run_dataset = _resolve(model)
    dataset = dataset or run_dataset
    if not dataset:
        raise click.UsageError(f"give --dataset: model {model_id} has no interpedia generate run to take one from")
    try:
        hooked = HookedModel.load(spec, device=device or settings.inference_device, dtype="float32")
        rows = TokenSource(
            dataset,
            hooked.tokenizer,
            context_size=context_size,
            n_prompts=n_prompts,
            prepend_bos=hooked.default_prepend_bos,
            concat=True,
            text_field=text_field,
            bos_id=hooked.bos_token_id,
        ).rows()
        lens = fit_jacobian_lens(
            hooked,
            rows.tokens,
            positions_per_prompt=positions,
            batch_size=batch_size,
            seed=seed,
            skip_first=hooked.default_prepend_bos,
            progress=progress,
        )
    except (UserError, ValueError, OSError) as exc:
        raise click.ClickException(f"lens fit failed: {getattr(exc, 'message', exc)}") from None
    lens.meta.update(
        model_id=model_id, dataset=dataset, fitted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    target = out or lens_paths(spec, settings.home, model_id)[0]
    lens.save(target)
    click.echo(
        f"{model_id}: Jacobian lens of {lens.meta['n_layers']} layers fitted on {lens.meta['positions']} "
        f"positions -> {target}"
    )
