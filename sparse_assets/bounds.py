"""Numeric bounds of settings, declared once on each field's type (``Annotated[int, Ge(1)]``, the
annotated-types markers pydantic reads): pydantic enforces them on the Dagster run configs built from
the settings (a run with a bad value fails before the step does any work, naming the field and the
bound), and `check_bounds` enforces them on the plain dataclasses the library takes."""

from __future__ import annotations

import dataclasses
import math
import operator
import types
import typing

from annotated_types import Ge, Gt, Le, Lt

__all__ = ["Ge", "Gt", "Le", "Lt", "check_bounds"]

_TESTS = ((Ge, "ge", ">=", operator.ge), (Gt, "gt", ">", operator.gt), (Le, "le", "<=", operator.le), (Lt, "lt", "<", operator.lt))


def _bounds_of(hint) -> list:
    """The annotated-types markers of a field's type, also inside ``Annotated[...] | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [bound for arg in typing.get_args(hint) for bound in _bounds_of(arg)]
    return list(getattr(hint, "__metadata__", ()))


def check_bounds(settings) -> None:
    """ValueError naming the first field of the dataclass `settings` outside its declared bounds, or
    holding a float that is not a finite number (inf and nan pass most bounds, and no artifact can
    hold them); None passes: the fields that allow it mean "not set"."""
    hints = typing.get_type_hints(type(settings), include_extras=True)
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{type(settings).__name__}.{field.name} must be a finite number, got {value!r}")
        for bound in _bounds_of(hints[field.name]):
            for kind, attribute, sign, test in _TESTS:
                if isinstance(bound, kind) and not test(value, getattr(bound, attribute)):
                    raise ValueError(f"{type(settings).__name__}.{field.name} must be {sign} {getattr(bound, attribute)}, got {value!r}")
