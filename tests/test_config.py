"""One source of settings: every flag sets its field, presets name only real settings, the
library validates what the command line validates, and the modules import in one direction."""

import ast
import dataclasses
from pathlib import Path

import pytest

import netadjust
from netadjust.cli import build_parser
from netadjust.commands import search_config
from netadjust.config import ModelSpec, Recipe, SearchConfig
from netadjust.errors import UserError
from netadjust.presets import DEFAULT_PRESET, FINAL_TRAINING, PAPER_IMAGENET, PAPER_IMAGENET_FINAL, PRESETS
from netadjust.settings import Flag, as_settings, configured, flags, known_settings

STRINGS = {"space": "resnet56", "dataset": "mnist", "data_dir": "/d", "device": "cuda:1", "out": "runs/x"}
STRINGS |= {"model": "mine.py:net", "model_args": '{"width": 4}', "latency_table": "t.json"}


def other_value(flag: Flag):
    """A value of the flag's kind that differs from its default and from the default preset's."""
    meta, default = flag.field.metadata, flag.default
    if meta["choices"]:
        return next(c for c in meta["choices"] if c not in (default, PRESETS[DEFAULT_PRESET].get(flag.dest)))
    if meta["kind"] is bool:
        return not default if default is not None else True
    if meta["kind"] is str:
        return STRINGS[flag.dest]
    if meta["kind"] is int:
        return 7 if default is None else default + 7
    return 0.37


def path_value(config, path):
    for name in path:
        config = getattr(config, name)
    return config


@pytest.mark.parametrize("flag", list(flags(SearchConfig)), ids=lambda flag: flag.name)
def test_every_search_flag_sets_its_field(flag):
    value = other_value(flag)
    if isinstance(value, bool):
        argv = [flag.name if value else "--no-" + flag.name[2:]]
    else:
        argv = [flag.name, str(value)]
    config = search_config(build_parser().parse_args(["search", *argv]))
    if flag.dest == "model":  # a model's file is recorded as an absolute path
        path, _, factory = value.rpartition(":")
        value = f"{Path(path).resolve()}:{factory}" if path.endswith(".py") else value
    if flag.dest == "data_dir":
        value = str(Path(value).resolve())
    assert path_value(config, flag.path) == value
    assert path_value(SearchConfig(), flag.path) == flag.default  # the dataclass holds the default


def test_setting_names_are_unique_and_presets_name_only_settings():
    names = [flag.dest for flag in flags(SearchConfig)]
    assert len(names) == len(set(names))
    for preset in [*PRESETS.values(), PAPER_IMAGENET]:
        assert set(preset) <= known_settings(SearchConfig)
    for training in [*FINAL_TRAINING.values(), PAPER_IMAGENET_FINAL]:
        assert set(training) <= known_settings(Recipe)


def test_configured_and_as_settings_are_inverse():
    config = configured(SearchConfig, {**PRESETS["quick"], "fur_method": "reference", "round_to": 8})
    assert configured(SearchConfig, as_settings(config)) == config
    assert (config.recipe.epochs, config.fur.method, config.rule.round_to) == (3, "reference", 8)


def test_the_paper_preset_is_the_defaults_on_cifar100_without_the_control_variate():
    paper = configured(SearchConfig, PRESETS["paper"])
    expected = dataclasses.replace(
        SearchConfig(),
        data=dataclasses.replace(SearchConfig().data, dataset="cifar100"),
        fur=dataclasses.replace(SearchConfig().fur, control_variate=False),
    )
    assert paper == expected


def test_the_library_refuses_what_the_command_line_refuses():
    with pytest.raises(UserError, match="--width-mult is -1"):
        netadjust.build("resnet20", width_mult=-1)
    with pytest.raises(UserError, match="--width-mult is 0"):
        ModelSpec(width_mult=0)
    with pytest.raises(UserError, match="--repeats is 0"):
        netadjust.search(repeats=0, out="/nonexistent/never-written")


PACKAGE = Path(netadjust.__file__).parent


def imports() -> dict[str, set[str]]:
    """Module -> the netadjust modules it imports (anywhere in it), by dotted name."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                candidates = (
                    [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
                )
                found |= {
                    c
                    for c in candidates
                    if (PACKAGE.parent / c.replace(".", "/")).with_suffix(".py").exists()
                }
                found |= {
                    c for c in candidates if (PACKAGE.parent / c.replace(".", "/") / "__init__.py").exists()
                }
        graph[name] = found - {name}
    return graph


def test_no_import_circles_and_only_the_api_reaches_the_loop():
    graph = imports()
    assert "netadjust.search" in graph and graph["netadjust.commands"]
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "open":
            raise AssertionError("import circle: " + " -> ".join(trail + [module]))
        if state.get(module) == "done":
            return
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
    importers = {module for module, targets in graph.items() if "netadjust.search" in targets}
    assert importers == {"netadjust.api"}


def test_a_records_keys_are_mapped_to_settings_in_one_place_and_never_ignored():
    from netadjust.config import ModelSpec, Recipe
    from netadjust.settings import configured, record_settings

    # Recipe.drop_rate is set by --train-drop-rate: its field name passed as a setting is refused
    with pytest.raises(TypeError, match="drop_rate"):
        configured(Recipe, {"drop_rate": 0.2})
    assert configured(Recipe, record_settings(Recipe, {"drop_rate": 0.2})).drop_rate == 0.2
    # a final.json's model: its input size is the dataset's, no --image-size setting
    recorded = {"space": "resnet20", "image_size": 28, "in_channels": 1, "width_mult": 0.5}
    assert record_settings(ModelSpec, recorded) == {"space": "resnet20", "width_mult": 0.5}
