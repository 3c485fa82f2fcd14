"""A content-addressed store of dense teacher vectors, so that a corpus that grows pays only for its
new documents and training queries (no Dagster).

Vectors are kept per (text key, encoder settings key): the text key is the sha256 of the text and
whether it is encoded as a query or a passage (e5's prefixes differ), the settings key the sha256 of
what changes a vector (the model and the token limit). One file per settings key and side:
``<settings key[:16]>/{query,passage}.npz`` with the keys (a unicode array) and the float32 vectors,
read without pickle; a file that does not load is reported and rebuilt. No Dagster here.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from upath import UPath

from sparse_assets.store.storage import atomic_write_bytes, json_digest

Encode = Callable[[Sequence[str], bool], np.ndarray]  # (texts, is_query) -> vectors


def text_key(text: str, is_query: bool) -> str:
    return hashlib.sha256(f"{'query' if is_query else 'passage'}\n{text}".encode()).hexdigest()


class VectorStore:
    """Dense vectors of one encoder setting under `root` (a local folder or an fsspec URL)."""

    def __init__(self, root: str | UPath, settings: dict[str, Any]):
        self.settings_key = json_digest(settings)
        self.folder = UPath(root) / self.settings_key[:16]

    def _path(self, is_query: bool) -> UPath:
        return self.folder / ("query.npz" if is_query else "passage.npz")

    def _load(self, is_query: bool) -> tuple[dict[str, int], np.ndarray, str | None]:
        """({key: row}, vectors, why the file could not be used or None)."""
        path = self._path(is_query)
        if not path.exists():
            return {}, np.zeros((0, 0), np.float32), None
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            if vectors.dtype != np.float32 or vectors.ndim != 2 or len(keys) != len(vectors):
                raise ValueError("keys and vectors do not match")
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
            return {}, np.zeros((0, 0), np.float32), f"{path} is unreadable ({error}): its vectors are computed again"
        return {str(k): i for i, k in enumerate(keys)}, vectors, None

    def encode(self, texts: Sequence[str], is_query: bool, encode: Encode, warn: Callable[[str], None] = print) -> tuple[np.ndarray, int]:
        """Vectors of `texts` (one row each): stored ones reused, the others computed with `encode`
        (only the texts not seen before) and added to the store. Returns (vectors, how many were
        computed)."""
        rows, stored, problem = self._load(is_query)
        if problem:
            warn(problem)
        keys = [text_key(t, is_query) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in rows))
        text_of = dict(zip(keys, texts))
        computed = encode([text_of[k] for k in missing], is_query) if missing else np.zeros((0, 0), np.float32)
        if missing:
            kept = list(rows)
            stored = np.concatenate([stored, computed]) if len(stored) else computed
            rows = {k: i for i, k in enumerate(kept + missing)}
            buffer = io.BytesIO()
            np.savez(buffer, keys=np.array(kept + missing), vectors=stored.astype(np.float32))
            atomic_write_bytes(self._path(is_query), buffer.getvalue())
        dimension = stored.shape[1] if len(stored) else 0
        vectors = stored[[rows[k] for k in keys]] if keys else np.zeros((0, dimension), np.float32)
        return vectors, len(missing)


class StoredEncoder:
    """A dense encoder (`(texts, is_query, progress) -> vectors`, as `teacher.DenseEncoder`) that asks
    `store` first; the encoder is built by `make_encoder` only when some text is new. Counts what it
    reused and what it computed."""

    def __init__(self, store: VectorStore, make_encoder: Callable[[], Callable[..., np.ndarray]], warn: Callable[[str], None] = print):
        self.store, self.make_encoder, self.warn = store, make_encoder, warn
        self._encoder: Callable[..., np.ndarray] | None = None
        self.reused = self.computed = 0

    def __call__(self, texts: Sequence[str], is_query: bool, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        def encode(new_texts: Sequence[str], query: bool) -> np.ndarray:
            if self._encoder is None:
                self._encoder = self.make_encoder()
            return self._encoder(new_texts, is_query=query, progress=progress)

        vectors, computed = self.store.encode(texts, is_query, encode, self.warn)
        self.computed += computed
        self.reused += len(texts) - computed
        return vectors
