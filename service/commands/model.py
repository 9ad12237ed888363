"""Using a trained network: `expq runs export-model` and `expq predict` (these import torch)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from service.commands.common import open_engine
from service.errors import ExpqError, InputError

if TYPE_CHECKING:  # torch stays out of the CLI's start-up: these commands import it on use
    from models.checkpoint import TrainingState
    from models.data import Encoding
    from models.spec import TrainSpec


@dataclass(frozen=True)
class _Trained:
    """The weights a command uses and what the user is told about them."""

    spec: TrainSpec
    weights: dict[str, Any]  # a state dict
    encoding: Encoding
    epoch: int
    which: str  # "best" or "last": the epoch that was asked for or, failing it, the last
    described: str  # "best epoch 7 of 15 (lowest val loss)", "last epoch 15", ...


def _trained(run_id: int, which: str) -> _Trained:
    """The run's weights of its best or last epoch, checked finite, with their encoding."""
    from models.checkpoint import TrainingState, finite_weights
    from models.spec import spec_from_dict
    from service.checkpoints import load_checkpoint
    from service.store import get_run

    engine = open_engine()
    run = get_run(engine, run_id)
    if run is None:
        raise InputError(f"no run with id {run_id}")
    stored = load_checkpoint(engine, run_id, which)
    described = f"{which} epoch {{}}"
    if which == "best":
        described = f"best epoch {{}} of {run.epochs_done} (lowest val loss)"
        if stored is None:  # no finite val L yet, or trained before the best one was kept
            stored, which = load_checkpoint(engine, run_id, "last"), "last"
            described = "last epoch {} (no best epoch kept)"
    if stored is None:
        raise InputError(f"run {run_id} ({run.status}) has no trained model yet")
    state = TrainingState.from_bytes(stored.state)
    if not finite_weights(state.model):
        hint = ""
        if which == "last" and load_checkpoint(engine, run_id, "best") is not None:
            hint = "; --epoch best gives its best epoch"
        raise InputError(
            f"run {run_id} ({run.status}): the weights of epoch {stored.epoch} are not finite{hint}"
        )
    spec = spec_from_dict(run.spec)
    encoding = _encoding(engine, run_id, spec, state)
    return _Trained(
        spec, state.model, encoding, stored.epoch, which, described.format(stored.epoch)
    )


def _encoding(engine, run_id: int, spec: TrainSpec, state: TrainingState) -> Encoding:  # noqa: ANN001
    """The encoding the checkpoint carries; a checkpoint written before it carried one gets
    it rebuilt from the training data."""
    from models.data import Encoding, build_data
    from models.jsonl import DataError, parse_jsonl
    from service.store import load_dataset

    if state.encoding is not None:
        return Encoding.from_dict(state.encoding)
    try:
        rows = [
            None if digest is None else parse_jsonl(load_dataset(engine, digest), spec.task, name)
            for digest, name in ((spec.data, "data"), (spec.val_data, "val-data"))
        ]
    except DataError as exc:  # stored before a check that it fails was added
        raise ExpqError(f"run {run_id}'s {exc}") from None
    return build_data(spec, *rows).encoding()


_EPOCH = click.option(
    "--epoch",
    "which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Whose weights: the run's best epoch (lowest val loss) or its last. A run with no "
    "best epoch kept (none with a finite val loss, or trained before expq kept one) gives "
    "its last.",
)


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
    help="The weights file; it must end in .pt. The spec and the encoding go beside it with "
    ".json for .pt (m.pt -> m.json). Both are replaced whole.",
)
@_EPOCH
def export_model(run_id: int, output: Path, which: str) -> None:
    """Write a run's trained weights (a state dict for torch.load(weights_only=True)) and, as
    JSON beside them, its spec and the encoding it was trained with (vocabularies, input
    scaling): all that predicting needs, without the data."""
    import torch

    spec_path = _spec_path(output)
    trained = _trained(run_id, which)
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run": run_id,
        "epoch": trained.epoch,
        "which": trained.which,
        "spec": trained.spec.to_dict(),
        "encoding": trained.encoding.to_dict(),
    }
    _write_files(
        {
            output: lambda handle: torch.save(trained.weights, handle),
            spec_path: lambda handle: handle.write(
                (json.dumps(document, indent=2) + "\n").encode()
            ),
        }
    )
    click.echo(
        f"run {run_id}: {trained.described}: weights in {output}, spec and encoding in {spec_path}"
    )


@click.command()
@click.argument("run_id", type=int)
@click.option(
    "--input",
    "text",
    required=True,
    help="A vector as numbers (binary, captioning) or a sentence (sentiment, translation).",
)
@_EPOCH
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
def predict(run_id: int, text: str, which: str, as_json: bool) -> None:
    """Run a trained network on one input and print its prediction (greedy for sequences).
    Which epoch's weights it used goes to stderr."""
    from models.jsonl import DataError
    from models.predict import parse_input
    from models.predict import predict as run_network

    trained = _trained(run_id, which)
    try:
        raw = parse_input(text, trained.encoding.dims.input_kind)
        output = run_network(trained.spec, trained.encoding, trained.weights, raw)
    except DataError as exc:
        raise InputError(str(exc)) from None
    click.echo(f"run {run_id}: {trained.described}", err=True)
    if as_json:
        document = {"run": run_id, "epoch": trained.epoch, "which": trained.which}
        click.echo(json.dumps({**document, "input": text, "prediction": output}))
    else:
        click.echo(output if isinstance(output, str) else " ".join(output))
