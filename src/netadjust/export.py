"""Take a network away: weights as safetensors (self-describing: the file's metadata
records the space and the widths, so ``netadjust.load`` rebuilds the model from it alone)
and the graph as ONNX (``torch.onnx.export``, batch size left free)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .config import ModelSpec, Widths
from .errors import UserError
from .rundir import FinalResult, read_run
from .spaces import build, check_widths
from .store import check_writable, user_path, write_bytes, write_json, write_through_path
from .version import __version__
from .wording import invocation

WEIGHTS_FORMAT = "netadjust-weights-1"


def save_weights(model: nn.Module, spec: ModelSpec, widths: Widths, path: Path) -> None:
    """Every tensor of the state dict (parameters and batch-norm statistics) on the CPU,
    with the space and widths in the metadata."""
    from safetensors.torch import save

    tensors = {name: value.detach().contiguous().cpu() for name, value in model.state_dict().items()}
    metadata = {
        "format": WEIGHTS_FORMAT,
        "netadjust": __version__,
        "model": json.dumps(dataclasses.asdict(spec)),
        "widths": json.dumps(widths),
    }
    write_bytes(path, save(tensors, metadata=metadata))


def load_weights(
    path: str | Path, device: str | torch.device = "cpu", model: str | None = None
) -> tuple[nn.Module, ModelSpec, Widths]:
    """Rebuild the model a ``save_weights`` file describes and load its tensors (eval mode).
    A network of a user's model is rebuilt by importing that model's code, which a file
    alone must not trigger: only when ``model`` names the same reference."""
    from safetensors import SafetensorError, safe_open

    path = user_path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; check the path")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path} is not a safetensors file ({error}); give a file netadjust wrote") from None
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise UserError(f"{path} holds no netadjust model description; give a file netadjust wrote")
    spec = ModelSpec(**json.loads(metadata["model"]))
    if spec.model is not None and model != spec.model:
        raise UserError(
            f"{path} holds a network of your model {spec.model}; rebuilding it runs that code, so "
            f"name it to allow that: netadjust.load(path, model={spec.model!r})"
        )
    widths = check_widths(spec, json.loads(metadata["widths"]))
    network = build(spec, widths).to(device)
    network.load_state_dict(tensors)
    return network.eval(), spec, widths


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns about optional packages (torchvision) and its own deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def save_onnx(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    """The eval-mode graph, input ``images`` (N, C, H, W) normalised as in training, output
    ``logits``; N is free."""
    check_onnx_available()
    example = torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size)
    model = model.cpu().eval()
    with _quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        write_through_path(path, lambda temporary: program.save(str(temporary)))


def check_onnx_available() -> None:
    """Refuse --onnx early, before any training, when the exporter's packages are missing."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError(
            "--onnx needs the packages onnx and onnxscript; install them with pip install 'netadjust[export]'"
        ) from None


def export_run(run_dir: Path, out: Path, weights: Path | None, onnx: bool, force: bool = False) -> list[Path]:
    """Write the searched widths of ``run_dir`` (and, when a trained network of them is
    known, its weights and optionally ONNX) into ``out``; return the files written. Files
    there already are refused unless ``force``."""
    run = read_run(run_dir)
    if run.final is None:
        raise UserError(f"{run_dir} holds no finished search (no final.json); finish it with --resume first")
    if weights is None:
        weights = trained_searched_weights(run_dir)
    if onnx and weights is None:
        raise UserError(
            f"--onnx needs a trained network of the searched widths; run `{invocation()} compare {run_dir}` "
            "or `netadjust train --widths .../final.json`, then pass its .safetensors with --weights"
        )
    if onnx:
        check_onnx_available()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a folder")
    targets = [out / "widths.json"] + ([out / "model.safetensors"] if weights else [])
    targets += [out / "model.onnx"] if onnx else []
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise UserError(f"{', '.join(existing)} already exist; choose another --out, or pass --force")
    model = None
    if weights is not None:
        model, spec, widths = load_weights(weights, model=run.final.model.model)  # the run's own
        if widths != run.final.widths or spec != run.final.model:
            raise UserError(
                f"{weights} holds another network than {run_dir}/final.json; give the searched one"
            )
    check_writable(out)
    for stale in ("model.safetensors", "model.onnx"):  # an earlier export's, not rewritten now
        if force and out / stale not in targets:
            (out / stale).unlink(missing_ok=True)
    write_json(out / "widths.json", exported_widths(run.final))
    if model is not None:
        save_weights(model, spec, widths, out / "model.safetensors")
        if onnx:
            save_onnx(model, spec, out / "model.onnx")
    return targets


def exported_widths(final: FinalResult) -> dict:
    """The searched network described completely, in ``final.json``'s shape (every command
    that takes a widths file reads it so): the widths with the model settings that give them
    meaning (width multiplier, input, your model's reference) and the cost they build."""
    return {
        "space": final.space,
        "model": dataclasses.asdict(final.model),
        "widths": final.widths,
        "macs": final.macs,
        "params": final.params,
    }


def trained_searched_weights(run_dir: Path) -> Path | None:
    """The first seed's trained searched network that ``netadjust compare`` saved, if any."""
    candidates = sorted((run_dir / "compare").glob("searched-seed*.safetensors"))
    return candidates[0] if candidates else None


def build_call(spec: ModelSpec, widths_file: str) -> str:
    """The Python line that rebuilds the model of ``spec`` from a widths file."""
    defaults = ModelSpec()
    extras = "".join(
        f", {field.name}={getattr(spec, field.name)!r}"
        for field in dataclasses.fields(spec)
        if field.name != "space" and getattr(spec, field.name) != getattr(defaults, field.name)
    )
    return f'netadjust.build("{spec.space}", "{widths_file}"{extras})'
