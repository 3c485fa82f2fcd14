"""Dagster run configs built from the library's settings dataclasses: one definition of each knob,
its default and its bounds (sparse_assets.bounds), so that a bad value fails when the run's config is
read, before the step does any work, with the field and the allowed range in the message."""

from __future__ import annotations

import dataclasses
import typing
from typing import TypeVar

import dagster as dg
import pydantic

Settings = TypeVar("Settings")


class SettingsConfig(dg.Config):
    """The base of every run config here: a float field takes finite numbers only (pydantic refuses
    .inf and nan naming the field; they pass most bounds, and no artifact can hold them)."""

    model_config = pydantic.ConfigDict(allow_inf_nan=False)


def settings_fields(settings: type, *names: str) -> dict[str, tuple]:
    """{name: (type with its bounds, default)} of the dataclass `settings`' fields (all, or `names`)."""
    hints = typing.get_type_hints(settings, include_extras=True)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(settings) if not names or f.name in names}


def config_from_settings(name: str, settings: type, doc: str, **fields: tuple) -> type[SettingsConfig]:
    """A `SettingsConfig` class with the fields, types (bounds included) and defaults of the dataclass
    `settings`; `fields` ({name: (type, default)}, e.g. `settings_fields` of another dataclass) add
    fields or replace the ones Dagster cannot express (a tuple becomes a list)."""
    return pydantic.create_model(name, __base__=SettingsConfig, __doc__=doc, **{**settings_fields(settings), **fields})


def settings_from_config(settings: type[Settings], config: dg.Config, **overrides) -> Settings:
    """The dataclass `settings` from a run config made by `config_from_settings` (its other fields
    ignored, a list given back as the tuple the dataclass holds), with `overrides` on top."""
    values = config.model_dump()
    own = {f.name: values[f.name] for f in dataclasses.fields(settings) if f.name in values}
    own = {k: tuple(v) if isinstance(v, list) else v for k, v in own.items()}
    return settings(**{**own, **overrides})
