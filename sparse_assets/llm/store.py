"""A content-addressed store of LLM completions, so that re-synthesis pays only for what changed.

A completion is kept per (item key, output settings key): the item key is the sha256 of what the
LLM is asked about (a document's title and text, or a synonym request), the settings key the
sha256 of everything that changes the output (model, prompt style, the prompt templates' source,
sampling, queries per document, the document cut). A run asks the LLM only for the items that have
no entry under its settings and reuses the rest; new settings start an empty folder, and removed
documents simply are not asked for. Entries are JSON (never pickle) written atomically, each with
the sha256 of its value: an entry that does not parse or does not match is reported as corrupt,
and its item is generated again. No Dagster here.

Layout under the store root: ``<settings key[:16]>/settings.json`` (the settings in clear, for a
person), ``<settings key[:16]>/<item key[:2]>/<item key>.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from upath import UPath

from sparse_assets.store.storage import atomic_write_json, json_digest


def document_key(document: Mapping) -> str:
    """The store key of a document: the sha256 of its title and text (its id does not matter)."""
    return json_digest([document.get("title", ""), document["text"]])


def request_key(request: Mapping) -> str:
    """The store key of a ready request (its prompt or chat messages; its id does not matter)."""
    return json_digest({k: v for k, v in request.items() if k != "id"})


def prompt_templates_version() -> str:
    """The sha256 of the prompt templates' source: editing a prompt regenerates everything."""
    return hashlib.sha256(Path(__file__).with_name("prompts.py").read_bytes()).hexdigest()


class CompletionStore:
    """Completions of one settings key under `root` (a local folder or an fsspec URL)."""

    def __init__(self, root: str | UPath, settings: Mapping[str, Any]):
        self.settings = dict(settings)
        self.settings_key = json_digest(self.settings)
        self.folder = UPath(root) / self.settings_key[:16]

    def _path(self, item_key: str) -> UPath:
        return self.folder / item_key[:2] / f"{item_key}.json"

    def load(self, item_keys: Iterable[str]) -> tuple[dict[str, dict], dict[str, str]]:
        """({item key: stored completion}, {item key: why its entry is corrupt}) for the keys that
        have an entry; keys without one are in neither."""
        found: dict[str, dict] = {}
        corrupt: dict[str, str] = {}
        for key in dict.fromkeys(item_keys):
            path = self._path(key)
            if not path.exists():
                continue
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                valid = (
                    isinstance(entry, dict)
                    and entry.get("item") == key
                    and entry.get("settings") == self.settings_key
                    and isinstance(entry.get("value"), dict)
                    and entry.get("value_sha256") == json_digest(entry["value"])
                )
            except (ValueError, UnicodeDecodeError) as error:
                corrupt[key] = f"{path}: not JSON ({error})"
                continue
            if valid:
                found[key] = entry["value"]
            else:
                corrupt[key] = f"{path}: its content does not match its checksum or key"
        return found, corrupt

    def save(self, item_key: str, value: dict) -> None:
        """Keep `value` (plain JSON data) for `item_key`, atomically."""
        settings_file = self.folder / "settings.json"
        if not settings_file.exists():
            atomic_write_json(settings_file, {"settings_key": self.settings_key, "settings": self.settings})
        atomic_write_json(
            self._path(item_key),
            {"item": item_key, "settings": self.settings_key, "value": value, "value_sha256": json_digest(value)},
        )
