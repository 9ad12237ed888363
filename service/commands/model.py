"""Using a trained network: `expq runs export-model` and `expq predict` (these import torch)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import click

from service.commands.common import open_engine
from service.errors import ExpqError, InputError


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


def _spec_path(output: Path) -> Path:
    """Where the spec of weights written to `output` goes: the same name with .json for .pt,
    so that neither file can ever be the other."""
    if output.suffix != ".pt":
        raise InputError(
            f"-o must name a .pt file (the spec goes beside it as .json); got {output}"
        )
    spec_path = output.with_suffix(".json")
    if spec_path.is_dir():
        raise InputError(f"the spec would go to {spec_path}, which is a directory")
    return spec_path


def _write_files(writers: Mapping[Path, Callable[[BinaryIO], object]]) -> None:
    """Write each file to a temporary file beside it, then rename them all into place: an
    export that fails or is interrupted leaves every file whole, old or new, never half."""
    temporary: dict[Path, Path] = {}
    try:
        for path, write in writers.items():
            temporary[path] = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            with temporary[path].open("xb") as handle:  # the umask's mode, like open(path, "wb")
                write(handle)
        for path, temp in temporary.items():
            temp.replace(path)
    finally:
        for temp in temporary.values():
            temp.unlink(missing_ok=True)


@click.command("export-model")
@click.argument("run_id", type=int)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The weights file; it must end in .pt. The spec goes beside it with .json for .pt "
    "(m.pt -> m.json). Both are replaced whole.",
)
def export_model(run_id: int, output: Path) -> None:
    """Write a run's trained weights (a state dict for torch.load(weights_only=True)) and its
    spec as JSON beside them."""
    import torch

    spec_path = _spec_path(output)
    _, run, spec, state = _trained(run_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {"run": run.id, "epoch": state.epoch, "spec": spec.to_dict()}
    _write_files(
        {
            output: lambda handle: torch.save(state.model, handle),
            spec_path: lambda handle: handle.write(
                (json.dumps(document, indent=2) + "\n").encode()
            ),
        }
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
    try:
        rows = [
            None if digest is None else parse_jsonl(load_dataset(engine, digest), spec.task, name)
            for digest, name in ((spec.data, "data"), (spec.val_data, "val-data"))
        ]
    except DataError as exc:  # stored before a check that it fails was added
        raise ExpqError(f"run {run_id}'s {exc}") from None
    data = build_data(spec, *rows)  # the vocabularies and scaling the network was trained with
    try:
        output = run_network(spec, data, state, parse_input(text, data.dims.input_kind))
    except DataError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"run": run_id, "input": text, "prediction": output}))
    else:
        click.echo(output if isinstance(output, str) else " ".join(output))
