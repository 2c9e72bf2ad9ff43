"""Where a model of ``--model REF`` comes from: a user's factory (``pkg.module:factory``,
``path/to/file.py:factory``) or a zoo by name (``torchvision:NAME``, ``timm:NAME``), each
called with the data's classes and channels the way it takes them. Only the model is made
here; its widths are found by ``anymodel``.

The zoos are imported only when named (the extra ``netadjust[zoo]``); weights stay random
(nothing is downloaded)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import UserError

ZOOS = ("torchvision", "timm")
# torchvision's builders whose training forward also returns auxiliary logits: built without
# those heads unless --model-args asks for them (a search trains on the main logits alone)
AUXILIARY = {"googlenet", "inception_v3"}


def zoo_of(reference: str) -> str | None:
    """``torchvision`` or ``timm`` for a zoo reference, else None."""
    zoo, colon, _ = reference.partition(":")
    return zoo if colon and zoo in ZOOS else None


def import_zoo(zoo: str):
    """The zoo's package, or one line saying how to install it."""
    try:
        _import_torchvision()  # timm imports it too
        return importlib.import_module(zoo)
    except ImportError as error:
        raise UserError(
            f"--model {zoo}:NAME needs the package {zoo} ({error}); install it with "
            "pip install 'netadjust[zoo]'"
        ) from None


_LIBRARIES: list = []  # the op schemas declared for torchvision, alive as long as the process


def _import_torchvision() -> None:
    """``import torchvision``. A torchvision wheel built against another torch (the CUDA one
    on PyPI beside torch+cpu) loads none of its compiled ops, and its import then fails to
    register fake kernels for two of them; declaring their schemas lets the pure-Python
    models import (they use no compiled op)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::" not in str(error) or "does not exist" not in str(error):
            raise
        for module in [name for name in sys.modules if name.startswith("torchvision")]:
            del sys.modules[module]
        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(library)
        import torchvision  # noqa: F401


def zoo_names(zoo: str) -> list[str]:
    """The classification models a zoo offers by name."""
    package = import_zoo(zoo)
    if zoo == "torchvision":
        return sorted(package.models.list_models(module=package.models))
    return sorted(package.list_models())


def zoo_model(reference: str, num_classes: int, in_channels: int, arguments: dict) -> nn.Module:
    """A zoo's model by its conventions: timm's ``create_model(NAME, num_classes, in_chans)``;
    torchvision's ``get_model(NAME, num_classes)``, its first convolution made anew for
    ``in_channels`` where the data has other than 3 channels."""
    zoo, _, name = reference.partition(":")
    names = zoo_names(zoo)
    if name not in names:
        closest = difflib.get_close_matches(name, names, n=3)
        raise UserError(
            f"--model {reference!r}: {zoo} has no model {name!r}"
            + (f"; did you mean {', '.join(closest)}?" if closest else "")
            + f" (`netadjust inspect --model {zoo}:` lists them)"
        )
    package = import_zoo(zoo)
    try:
        if zoo == "timm":
            return package.create_model(
                name, pretrained=False, **({"num_classes": num_classes, "in_chans": in_channels} | arguments)
            )
        if name in AUXILIARY:
            arguments = {"aux_logits": False, "init_weights": True} | arguments
        model = package.models.get_model(name, weights=None, **({"num_classes": num_classes} | arguments))
    except Exception as error:  # a zoo's own refusal of an argument or a setting
        raise UserError(
            f"--model {reference!r}: {zoo} raised {type(error).__name__}: {first_line(error)}"
        ) from None
    if in_channels != 3:
        replace_stem(model, in_channels)
    return model


def replace_stem(model: nn.Module, in_channels: int) -> None:
    """The first convolution (in module order) made anew to read ``in_channels`` channels,
    its other settings kept."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                stem = nn.Conv2d(
                    in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                    child.dilation, 1, child.bias is not None, child.padding_mode,
                )  # fmt: skip
                setattr(parent, name, stem)
                return


def first_convolution(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def load_factory(reference: str) -> Callable[..., nn.Module]:
    """``pkg.module:factory`` or ``path/to/file.py:factory`` as a callable."""
    where, colon, attribute = reference.rpartition(":")
    if not colon or not where or not attribute:
        raise UserError(
            f"--model {reference!r}: give pkg.module:factory, path/to/file.py:factory, "
            "torchvision:NAME or timm:NAME"
        )
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise UserError(f"--model {reference!r}: {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"netadjust_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            if where.split(".")[0] in ZOOS:
                import_zoo(where.split(".")[0])
            module = importlib.import_module(where)
    except ImportError as error:
        raise UserError(f"--model {reference!r}: cannot import {where} ({error})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserError(f"--model {reference!r}: {where} has no callable {attribute!r}")
    return factory


def model_arguments(arguments: str | None) -> dict:
    try:
        extra = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError as error:
        raise UserError(
            f"--model-args is not JSON ({error.msg}); give an object such as '{{\"depth\": 50}}'"
        ) from None
    if not isinstance(extra, dict):
        raise UserError("--model-args must be a JSON object of keyword arguments")
    return extra


def instantiate(
    reference: str, num_classes: int, in_channels: int, arguments: str | None = None
) -> nn.Module:
    """The model ``reference`` names. A factory is called with the keyword arguments of the
    JSON object ``arguments``, with ``num_classes`` where it takes that name or any keyword,
    and with ``in_channels`` only where it names it (a ``**kwargs`` factory may pass it on to
    a layer that refuses it); a model whose first convolution then reads other channels
    than the data has is refused in one line."""
    extra = model_arguments(arguments)
    if zoo_of(reference):
        model = zoo_model(reference, num_classes, in_channels, extra)
    else:
        model = _called(reference, load_factory(reference), num_classes, in_channels, extra)
    stem = first_convolution(model)
    if stem is not None and stem[1].in_channels != in_channels and stem[1].groups == 1:
        where, _, attribute = reference.rpartition(":")
        zoo = where.split(".")[0]
        instead = f"--model {zoo}:{attribute}" if zoo in ZOOS else "a zoo's name (torchvision:NAME)"
        raise UserError(
            f"--model {reference!r}: its first convolution ({stem[0]}) reads {stem[1].in_channels} channels, "
            f"the data has {in_channels}: give the factory an in_channels argument, or use {instead}, "
            "whose first convolution is made for the data"
        )
    return model


def _called(reference: str, factory: Callable, num_classes: int, in_channels: int, extra: dict) -> nn.Module:
    accepted = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    if ("num_classes" in accepted or takes_any) and "num_classes" not in extra:
        extra["num_classes"] = num_classes
    if "in_channels" in accepted and "in_channels" not in extra:
        extra["in_channels"] = in_channels
    try:
        accepted_call = inspect.signature(factory).bind(**extra)
    except TypeError as error:  # arguments it does not take, or lacks
        raise UserError(f"--model {reference!r}: calling it with {sorted(extra)} failed ({error})") from None
    try:
        model = factory(*accepted_call.args, **accepted_call.kwargs)
    except Exception as error:  # the factory's own code failed: where, in one line
        frame = traceback.extract_tb(error.__traceback__)[-1]
        raise UserError(
            f"--model {reference!r} raised {type(error).__name__}: {first_line(error)} "
            f"({frame.filename}, line {frame.lineno}); fix the factory and run again"
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {reference!r} returned a {type(model).__name__}, not an nn.Module")
    return model


SIDES = (32, 48, 64, 96, 128, 160, 192, 224, 299)  # input sides tried when the data's is too small


def check_runs(model: nn.Module, reference: str, in_channels: int, image_size: int) -> torch.Size:
    """Refuse, in one line, a model that cannot run on the data's input (naming the smallest
    side of ``SIDES`` that works, for ``--image-size``) or whose training forward returns no
    single tensor of logits (auxiliary heads: a tuple, a namedtuple, a dict); else the shape
    of its output on two seeded inputs (``user_plan``'s example)."""

    def output(side: int, training: bool):
        example = torch.randn(2, in_channels, side, side, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            if not training:
                return model.eval()(example)
            buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}  # moved by BN
            try:
                return torch.func.functional_call(model.train(), buffers, (example,), strict=False)
            finally:
                model.eval()

    try:
        shape = output(image_size, training=False).shape
    except Exception as error:  # the layers' own complaint: a map smaller than a kernel or pool
        works = next((side for side in SIDES if side > image_size and _runs(output, side)), None)
        raise UserError(
            f"--model {reference!r} cannot run on {in_channels}x{image_size}x{image_size} inputs "
            f"({type(error).__name__}: {first_line(error)}); "
            + (
                f"the smallest side of {', '.join(map(str, SIDES))} that runs is {works}: "
                f"pass --image-size {works}"
                if works
                else "no side up to 299 works either"
            )
        ) from None
    trained = output(image_size, training=True)
    if not isinstance(trained, torch.Tensor):
        raise UserError(
            f"--model {reference!r} returns a {type(trained).__name__} in training, not one tensor of logits "
            "(auxiliary heads?): build it without them, e.g. --model-args '{\"aux_logits\": false}'"
        )
    return shape


def _runs(output: Callable, side: int) -> bool:
    try:
        output(side, training=False)
    except Exception:
        return False
    return True
