"""An index whose projection head was fine-tuned on its own images (``lookalike adapt``): what search needs of it.

The adapted head is a checkpoint inside the index folder (``adapted-head-<digest>.pt``, the one checkpoint format).
Three files change when an index is adapted, so the switch is ordered to be safe at any kill:

1. the new head is written (atomically) under a new name; nothing refers to it yet;
2. ONE database transaction replaces every stored vector and records the head's file name in the store's ``meta``
   table (key :data:`META_KEY`): the store, the source of truth, never mixes vectors of two heads;
3. ``lookalike.json`` names the head (``model`` = ``checkpoint:<file>``, relative to the index folder, so a copied
   index names its own; ``extra["adapted"]``) and the FAISS index
   is rebuilt from the store.

A kill between 2 and 3 leaves a store ahead of its config: :func:`recover`, run by every ``Engine.open``, sees the
store's head differ from the config's and finishes step 3 (under the writer lock) before anything is searched.
Queries and later ``lookalike index`` runs embed with :func:`model_name`, the adapted head, so they match the vectors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from lookalike.errors import EngineError, LookalikeError
from lookalike.indexer.store import ImageRow, MetadataStore, MetaRow

from .folder import IndexConfig, IndexFolder

__all__ = ["META_KEY", "HEAD_PREFIX", "ADAPT_DIR", "AdaptError", "model_name", "accepts_model", "adapted_info",
           "stored_head", "replace_vectors", "switch_config", "recover", "shown_model"]

META_KEY = "adapted_head"        # store meta row: file name of the head that made the stored vectors
HEAD_PREFIX = "adapted-head-"    # adapted heads: <index folder>/adapted-head-<digest>.pt
ADAPT_DIR = "adapt"              # the feature cache of `lookalike adapt` (resumable), inside the index folder


class AdaptError(LookalikeError, ValueError):
    """An index that cannot be adapted (wrong model, precision, unreadable images); one line for the user."""


def adapted_info(config: IndexConfig) -> dict | None:
    """``extra["adapted"]`` of an adapted index (file, base model, settings), else None."""
    info = config.extra.get("adapted")
    return info if isinstance(info, dict) and isinstance(info.get("file"), str) else None


def model_name(config: IndexConfig, root: str | Path) -> str:
    """The embedder name to load for this index: its adapted head (found in the folder, wherever it was moved) or
    ``config.model``."""
    info = adapted_info(config)
    if info is None:
        return config.model
    return f"checkpoint:{Path(root) / info['file']}"


def shown_model(config: IndexConfig) -> str:
    """The model as status shows it: an adapted head by its file name inside the index folder (an index written
    before that was stored relative still names the folder it was adapted in)."""
    info = adapted_info(config)
    return f"checkpoint:{info['file']}" if info is not None else config.model


def accepts_model(config: IndexConfig, model: str) -> bool:
    """Whether a ``--model`` given for an existing index names it: its model, or the base an adapted head came from."""
    info = adapted_info(config)
    return model in (config.model, shown_model(config)) or (info is not None and model == info.get("base"))


def stored_head(store: MetadataStore) -> str | None:
    """The adapted head file the stored vectors come from (None: never adapted)."""
    try:
        with store.session() as s:
            return s.execute(select(MetaRow.value).where(MetaRow.key == META_KEY)).scalar()
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        raise EngineError(f"{store.url}: cannot read the metadata database ({reason})") from None


def replace_vectors(store: MetadataStore, ids: np.ndarray, vectors: np.ndarray, head_file: str) -> None:
    """In ONE transaction: every listed image gets its new vector and the store records ``head_file`` as their head.

    ``ids`` must be every stored image id (checked in the transaction: an index never holds two heads' vectors)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if store.dim is not None and vectors.shape[1] != store.dim:
        raise AdaptError(f"{store.url}: adapted vectors are {vectors.shape[1]}-d, the index holds {store.dim}-d")
    with store.session() as s, s.begin():
        have = np.asarray(s.execute(select(ImageRow.id).order_by(ImageRow.id)).scalars().all(), np.int64)
        if not np.array_equal(have, np.sort(np.asarray(ids, np.int64))):
            raise AdaptError(f"{store.url}: the indexed images changed during adapt; run it again")
        rows = [{"id": int(i), "vector": v.tobytes()} for i, v in zip(ids, vectors)]
        for k in range(0, len(rows), 1000):
            s.execute(update(ImageRow), rows[k : k + 1000])
        s.merge(MetaRow(key=META_KEY, value=head_file))


def switch_config(config: IndexConfig, folder: IndexFolder, info: dict) -> None:
    """Point the (in-memory) config at the adapted head described by ``info`` (file, base, ...). Its vectors were
    computed in fp32 (from cached torch features), so the index is fp32 from then on, whatever it was before."""
    config.extra["adapted"] = dict(info)
    config.model = f"checkpoint:{info['file']}"  # relative to the index folder (model_name finds it there)
    config.precision = "fp32"


def _head_info(folder: IndexFolder, head_file: str) -> dict:
    """``extra["adapted"]`` for a head file, from the checkpoint's own metadata."""
    from .checkpoint import CheckpointError, read_checkpoint

    path = folder.root / head_file
    try:
        meta = read_checkpoint(path, kinds=("projection-head",)).metadata
    except CheckpointError as exc:
        raise EngineError(f"{exc}; the stored vectors were made by this adapted head, so the index cannot be "
                          f"searched without it: restore the file or rebuild the index") from None
    adapted = meta.get("adapted") if isinstance(meta.get("adapted"), dict) else {}
    return {**adapted, "file": head_file}


def recover(folder: IndexFolder, config: IndexConfig, store: MetadataStore) -> bool:
    """Finish an adapt that was killed after the store switched heads (see the module doc); True when it did."""
    head = stored_head(store)
    info = adapted_info(config)
    if head is None or (info is not None and info["file"] == head):
        return False
    if not folder.writable():
        raise EngineError(f"{folder.root}: an interrupted 'lookalike adapt' left the index configuration behind its "
                          f"vectors; open the index once where it can be written to finish it")
    from .maintainer import IndexMaintainer

    with folder.writer_lock():
        fresh = folder.read_config()
        if adapted_info(fresh) is not None and adapted_info(fresh)["file"] == stored_head(store):
            config.__dict__.update(fresh.__dict__)  # another process finished it meanwhile
            return False
        switch_config(config, folder, _head_info(folder, stored_head(store)))
        IndexMaintainer(folder, config, store).rebuild()  # FAISS from the store, then lookalike.json
    return True
