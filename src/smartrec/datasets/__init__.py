"""Datasets: the MovieLens 100K benchmark and a seeded synthetic event generator."""

from smartrec.datasets.movielens import (
    DownloadError,
    Item,
    MovieLens,
    Ratings,
    User,
    default_cache_dir,
    load_movielens_100k,
    read_movielens,
)
from smartrec.datasets.synthetic import EVENT_TYPES, Synthetic, generate

__all__ = [
    "EVENT_TYPES",
    "DownloadError",
    "Item",
    "MovieLens",
    "Ratings",
    "Synthetic",
    "User",
    "default_cache_dir",
    "generate",
    "load_movielens_100k",
    "read_movielens",
]
