"""The console output of `make run`: one line per asset step as it starts and as it ends (elapsed
time and the figure that matters), progress in quarters, warnings and failures; Dagster's event log,
the UI and `make run VERBOSE=1` keep every event.

It is a Dagster logger (`readable_console`), selected by the run config `run_output.yaml` beside this
file; each step process runs its own instance, so the figures of a step's materializations are at
hand when the step ends.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Collection
from pathlib import Path

import dagster as dg

RUN_OUTPUT_CONFIG = Path(__file__).with_name("run_output.yaml")  # the run config that selects this logger
# The metadata entries worth a glance, in the order they are looked for: a step line shows the first
# two its materializations have.
FIGURES = (
    "documents",
    "queries",
    "pairs",
    "korean_terms",
    "tokens_with_idf",
    "kept",
    "accepted",
    "validation_mrr@10",
    "train_seconds",
    "v1_minus_bm25_ndcg@10",
    "v2_minus_v1_ndcg@10",
)
PROGRESS = re.compile(r"\b(\d+)/(\d+)\b")
QUARTERS = 4


def _figure(value) -> str | None:
    raw = getattr(value, "value", value)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return f"{raw:.4f}" if isinstance(raw, float) and abs(raw) < 10 else f"{raw:,.0f}"


class ReadableHandler(logging.Handler):
    """Turns Dagster log records into the lines described in the module docstring."""

    def __init__(self, check_steps: Collection[str] = ()) -> None:
        super().__init__(logging.DEBUG)
        self.check_steps = set(check_steps)  # steps that only run asset checks: a line when one fails
        self.stream = sys.stdout
        self.figures: dict[str, list[str]] = {}
        self.quarter: dict[str, int] = {}

    def write(self, text: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            self._user_message(step, meta.get("orig_message", record.getMessage()), record.levelno)
            return
        kind = event.event_type_value
        if kind in ("STEP_START", "STEP_SUCCESS") and step in self.check_steps:
            return
        if kind == "STEP_START":
            self.write(f"  > {step}")
        elif kind == "ASSET_MATERIALIZATION":
            entries = event.event_specific_data.materialization.metadata
            found = [(k, _figure(entries[k])) for k in FIGURES if k in entries]
            self.figures.setdefault(step, []).extend(f"{k} {v}" for k, v in found if v is not None)
        elif kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                self.write(
                    f"  ! check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed: {evaluation.description or ''}"
                )
        elif kind == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            figures = ", ".join(self.figures.pop(step, [])[:2])
            self.write(f"  ok {step} ({seconds:.1f} s){': ' + figures if figures else ''}")
        elif kind == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error is not None and error.cause is not None:  # the user's error, not Dagster's wrapper
                error = error.cause
            self.write(f"  FAILED {step}: {error.message.strip().splitlines()[0] if error else ''}")

    def _user_message(self, step: str, message: str, level: int) -> None:
        if level >= logging.WARNING:
            self.write(f"  ! {step}: {message.strip().splitlines()[0] if message.strip() else ''}")
            return
        match = PROGRESS.search(message)
        if not match or int(match.group(2)) == 0:
            return
        quarter = QUARTERS * int(match.group(1)) // int(match.group(2))
        if 0 < quarter < QUARTERS and quarter > self.quarter.get(step, 0):
            self.quarter[step] = quarter
            self.write(f"    {step}: {message.strip()}")


def quiet_expected_warnings() -> None:
    """Silence, in every process that loads the definitions, the third-party messages this project
    expects and that say nothing to a user:
    - transformers' load report ("UNEXPECTED cls.predictions...": the document side keeps the
      masked-LM head, the dense teacher drops it) and its weight-loading / shard-writing bars;
    - sentence-transformers' Router notes that the query and document routes differ in embedding
      dimension and max length (the inference-free query side has no transformer: by design);
    - Dagster's beta / preview notes on the APIs used here (`data_version`, Pipes message readers).
    Errors still print. transformers is told through its environment variables (read when it is
    first imported, so this costs no import at start-up; a value the user set wins)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("sentence_transformers.base.modules.router").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `data_version`")
    warnings.filterwarnings("ignore", category=dg.PreviewWarning, message="Function `PipesMessageReader")


def readable_console(check_steps: Collection[str] = ()) -> dg.LoggerDefinition:
    """The logger `run_output.yaml` selects; `check_steps`: the op names of the asset checks."""

    @dg.logger(description="One line per step start and end, progress in quarters, warnings and failures (make run)")
    def _readable_console(_init_context) -> logging.Logger:
        logger = logging.getLogger("sparse_assets.run")
        logger.setLevel(logging.DEBUG)
        logger.handlers = [ReadableHandler(check_steps)]  # one per run, however many runs a process executes
        logger.propagate = False
        return logger

    return _readable_console
