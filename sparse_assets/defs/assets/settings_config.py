"""Dagster run configs built from the library's settings dataclasses: one definition of each knob,
its default and its bounds (sparse_assets.bounds), so that a bad value fails when the run's config is
read, before the step does any work, with the field and the allowed range in the message."""

from __future__ import annotations

import dataclasses
import typing

import dagster as dg
import pydantic


def config_from_settings(name: str, settings: type, doc: str, **fields: tuple) -> type[dg.Config]:
    """A `dg.Config` class with the fields, types (bounds included) and defaults of the dataclass
    `settings`; `fields` ({name: (type, default)}) add fields or replace the ones Dagster cannot
    express (a tuple becomes a list)."""
    hints = typing.get_type_hints(settings, include_extras=True)
    own = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(settings)}
    return pydantic.create_model(name, __base__=dg.Config, __doc__=doc, **{**own, **fields})
