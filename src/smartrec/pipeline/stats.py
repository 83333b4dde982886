"""Per-item statistics the features and the popular retriever read, on the model's item axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from smartrec.domain import Interactions
from smartrec.pipeline.windows import window_seconds


@dataclass
class ItemStats:
    """Per-item numbers the features need, aligned with the model's item axis."""

    counts: np.ndarray  # distinct users with a positive event
    window_counts: dict[str, np.ndarray]  # window -> events in the window before reference
    first_seen: np.ndarray  # epoch seconds of the first event (NaN: never)
    published: np.ndarray  # epoch seconds (NaN: unknown)
    categories: sp.csr_matrix  # items x categories, one-hot
    category_names: list[str]
    reference_time: float

    @classmethod
    def build(
        cls, data: Interactions, windows: Sequence[str], published: np.ndarray | None = None
    ) -> ItemStats:
        n = data.n_items
        counts = np.asarray(data.binarized().sum(axis=0)).ravel().astype(np.float32)
        ref = data.reference_time
        positive = data.event_weights > 0
        window_counts = {}
        for w in windows:
            m = positive & (data.event_times >= ref - window_seconds(w))
            window_counts[w] = np.bincount(data.event_items[m], minlength=n).astype(np.float32)
        first = np.full(n, np.inf)
        np.minimum.at(first, data.event_items, data.event_times)
        first[~np.isfinite(first)] = np.nan
        cats = data.item_categories or [[] for _ in range(n)]
        names = sorted({c for cs in cats for c in cs})
        index = {c: j for j, c in enumerate(names)}
        rows = [i for i, cs in enumerate(cats) for _ in cs]
        cols = [index[c] for cs in cats for c in cs]
        onehot = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(names))
        )
        onehot.data[:] = 1.0
        pub = np.full(n, np.nan) if published is None else np.asarray(published, dtype=np.float64)
        return cls(counts, window_counts, first, pub, onehot, names, ref)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "counts": self.counts,
            "first_seen": self.first_seen,
            "published": self.published,
            "cat_data": self.categories.data,
            "cat_indices": self.categories.indices,
            "cat_indptr": self.categories.indptr,
            "cat_names": np.asarray(self.category_names, dtype=str),
            "reference_time": np.asarray(self.reference_time),
        }
        for w, arr in self.window_counts.items():
            out[f"window_{w}"] = arr
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> ItemStats:
        n = len(a["counts"])
        names = [str(x) for x in a["cat_names"].tolist()]
        cats = sp.csr_matrix(
            (a["cat_data"], a["cat_indices"], a["cat_indptr"]), shape=(n, len(names))
        )
        windows = {k[len("window_") :]: v for k, v in a.items() if k.startswith("window_")}
        return cls(
            a["counts"],
            windows,
            a["first_seen"],
            a["published"],
            cats,
            names,
            float(a["reference_time"]),
        )
