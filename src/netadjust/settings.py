"""The machinery between the configuration dataclasses of ``config.py`` and their users:
each setting's flag (``flags``), a configuration built from defaults and given values
(``configured``), and the way back to settings (``as_settings``) and from a run's records
(``record_settings``, ``from_record``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flag:
    """One field of a configuration as the command line sees it."""

    name: str  # the flag, e.g. "--train-drop-rate"
    dest: str  # its name in a preset or an API call, e.g. "train_drop_rate"
    path: tuple[str, ...]  # the fields leading to it from the configuration class
    field: dataclasses.Field

    @property
    def default(self) -> Any:
        return self.field.default


def nested(f: dataclasses.Field) -> type | None:
    """The configuration class a field holds (``SearchConfig.recipe``: ``Recipe``), if any."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def flags(cls: type, inner: bool = True) -> Iterator[Flag]:
    """The settings of ``cls`` that have a flag, those of nested configurations included
    unless not ``inner``, in order."""
    for f in dataclasses.fields(cls):
        if nested(f):
            for deeper in flags(nested(f)) if inner else ():
                yield dataclasses.replace(deeper, path=(f.name, *deeper.path))
        elif "help" in f.metadata:
            yield Flag(flag_name(f), flag_name(f)[2:].replace("-", "_"), (f.name,), f)


def configured(cls: type, values: Mapping[str, Any]):
    """A ``cls``, nested configurations included, whose settings named in ``values`` (by
    their flag's dest) take those values unless None; the others keep their defaults. A
    key that is a field's name but no flag's dest (``drop_rate`` for ``Recipe``, whose flag
    is ``--train-drop-rate``) is a record's key passed as a setting: refused, not ignored
    (``record_settings`` maps a record)."""
    dests = {flag.dest for flag in flags(cls)}
    misnamed = sorted(({flag.path[-1] for flag in flags(cls)} - dests) & set(values))
    if misnamed:
        raise TypeError(
            f"{misnamed} are {cls.__name__} field names, not settings: map them with record_settings"
        )
    return _configured(cls, values)


def _configured(cls: type, values: Mapping[str, Any]):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if nested(f):
            kwargs[f.name] = _configured(nested(f), values)
        elif "help" in f.metadata:
            dest = flag_name(f)[2:].replace("-", "_")
            if values.get(dest) is not None:
                kwargs[f.name] = values[dest]
    return cls(**kwargs)


def as_settings(config) -> dict[str, Any]:
    """The inverse of ``configured``: every setting of ``config`` by its flag's dest."""
    values = {}
    for flag in flags(type(config)):
        value = config
        for name in flag.path:
            value = getattr(value, name)
        values[flag.dest] = value
    return values


def record_settings(cls: type, record: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that a record of ``cls`` (its ``dataclasses.asdict``, or part of it, as
    a run's files keep it) holds, by their flag's dest: the one translation between the two
    vocabularies. Fields without a flag (a model's input shape: the dataset's) are left out."""
    return {flag.dest: record[flag.path[-1]] for flag in flags(cls, inner=False) if flag.path[-1] in record}


def known_settings(cls: type) -> set[str]:
    return {flag.dest for flag in flags(cls)}


# fields renamed since runs recorded them: old -> new
RENAMED = {"timing_precision": "latency_precision", "max_spread": "max_disagreement"}


def from_record(cls: type, record: Mapping[str, Any]):
    """A ``cls`` from its ``dataclasses.asdict`` (as ``config.json`` holds it); keys a
    newer version added take their defaults, keys it renamed (``RENAMED``) are read under
    their new name. Unknown keys raise TypeError."""
    record = {RENAMED.get(key, key): value for key, value in record.items()}
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in record:
            continue
        value = record[f.name]
        if nested(f):
            value = from_record(nested(f), value)
        kwargs[f.name] = value
    unknown = set(record) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}")
    return cls(**kwargs)
