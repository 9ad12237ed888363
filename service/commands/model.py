"""Using a trained network: `expq runs export-model` and `expq predict` (these import torch)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from service.commands.common import open_engine
from service.errors import InputError


def _trained(run_id: int):  # noqa: ANN202 - (RunRecord, TrainSpec, TrainingState)
    from models.checkpoint import TrainingState
    from models.spec import spec_from_dict
    from service.checkpoints import load_checkpoint
    from service.store import get_run

    engine = open_engine()
    run = get_run(engine, run_id)
    if run is None:
        raise InputError(f"no run with id {run_id}")
    stored = load_checkpoint(engine, run_id)
    if stored is None:
        raise InputError(f"run {run_id} ({run.status}) has no trained model yet")
    return engine, run, spec_from_dict(run.spec), TrainingState.from_bytes(stored.state)


@click.command("export-model")
@click.argument("run_id", type=int)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the weights (.pt); the spec goes beside it as .json.",
)
def export_model(run_id: int, output: Path) -> None:
    """Write a run's trained weights (a state dict for torch.load(weights_only=True))."""
    import torch

    _, run, spec, state = _trained(run_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state.model, output)
    spec_path = output.with_suffix(".json")
    spec_path.write_text(
        json.dumps({"run": run.id, "epoch": state.epoch, "spec": spec.to_dict()}, indent=2) + "\n"
    )
    click.echo(f"run {run_id}: epoch {state.epoch} weights in {output}, spec in {spec_path}")


@click.command()
@click.argument("run_id", type=int)
@click.option(
    "--input",
    "text",
    required=True,
    help="A vector as numbers (binary, captioning) or a sentence (sentiment, translation).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
def predict(run_id: int, text: str, as_json: bool) -> None:
    """Run a trained network on one input and print its prediction (greedy for sequences)."""
    from models.data import build_data
    from models.jsonl import DataError, parse_jsonl
    from models.predict import parse_input
    from models.predict import predict as run_network
    from service.store import load_dataset

    engine, _, spec, state = _trained(run_id)
    rows = [
        None if digest is None else parse_jsonl(load_dataset(engine, digest), spec.task)
        for digest in (spec.data, spec.val_data)
    ]
    data = build_data(spec, *rows)  # the vocabularies and scaling the network was trained with
    try:
        output = run_network(spec, data, state, parse_input(text, data.dims.input_kind))
    except DataError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"run": run_id, "input": text, "prediction": output}))
    else:
        click.echo(output if isinstance(output, str) else " ".join(output))
