"""MovieLens loading: both file formats, zips, the cache, failures, and the real ML-100K."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from smartrec.datasets import DownloadError, load_movielens_100k, read_movielens
from smartrec.datasets.movielens import GENRES
from smartrec.errors import DatasetError

# (user, item, rating, timestamp)
RATINGS = [
    ("196", "242", 3, 881250949),
    ("186", "302", 3, 891717742),
    ("22", "377", 1, 878887116),
    ("196", "302", 5, 881251000),
]
# item_id, title with year, release date, genres
ITEMS = [
    ("242", "Kolya (1996)", "24-Jan-1997", ["Comedy"]),
    ("302", "L.A. Confidential (1997)", "01-Jan-1997", ["Crime", "Film-Noir", "Mystery"]),
    ("377", "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"]),
]
USERS = [
    ("196", 49, "M", "writer", "55105"),
    ("186", 39, "F", "executive", "00000"),
    ("22", 25, "M", "writer", "40206"),
]


def write_grouplens(root: Path, ratings: list[tuple[str, str, int, int]] = RATINGS) -> Path:
    """u.data / u.item (latin-1, 19 genre flags) / u.user / u.genre, as GroupLens ships them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    lines = []
    for item_id, title, date, genres in ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        lines.append(f"{item_id}|{title}|{date}||http://example.org/{item_id}|{flags}\n")
    (root / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (root / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|{z}\n" for u, a, g, o, z in USERS))
    (root / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    return root


def write_recbole(root: Path) -> Path:
    """ml-100k.inter / .item / .user in RecBole's atomic format (typed headers, tab-separated)."""
    root.mkdir(parents=True, exist_ok=True)
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS)
    (root / "ml-100k.inter").write_text(inter, encoding="utf-8")
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    for item_id, title, date, genres in ITEMS:
        item += f"{item_id}\t{title[:-7]}\t{date[-4:]}\t{' '.join(genres)}\n"
    (root / "ml-100k.item").write_text(item, encoding="utf-8")
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    user += "".join(f"{u}\t{a}\t{g}\t{o}\t{z}\n" for u, a, g, o, z in USERS)
    (root / "ml-100k.user").write_text(user, encoding="utf-8")
    return root


def _zip(src: Path, target: Path, prefix: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, prefix + f.name)
    return target


def _check(ml: object) -> None:
    from smartrec.datasets import MovieLens

    assert isinstance(ml, MovieLens)
    r = ml.ratings
    assert len(r) == 4
    assert r.user_id.tolist() == ["196", "186", "22", "196"]
    assert r.item_id.tolist() == ["242", "302", "377", "302"]
    np.testing.assert_array_equal(r.rating, [3.0, 3.0, 1.0, 5.0])
    assert r.timestamp.dtype == np.int64 and int(r.timestamp[0]) == 881250949
    items = {it.item_id: it for it in ml.items}
    assert items["302"].title == "L.A. Confidential"
    assert items["302"].genres == ["Crime", "Film-Noir", "Mystery"]
    assert items["302"].year == 1997
    assert items["377"].title == "Misérables, Les"  # latin-1 decoded
    users = {u.user_id: u for u in ml.users}
    assert users["186"].attributes == {
        "age": 39,
        "gender": "F",
        "occupation": "executive",
        "zip_code": "00000",
    }
    assert ml.item_genres()["242"] == ["Comedy"]


def test_grouplens_directory(tmp_path: Path) -> None:
    _check(load_movielens_100k(write_grouplens(tmp_path / "ml-100k"), allow_download=False))


def test_grouplens_zip_with_folder(tmp_path: Path) -> None:
    src = write_grouplens(tmp_path / "src")
    ml = load_movielens_100k(_zip(src, tmp_path / "ml-100k.zip", "ml-100k/"))
    _check(ml)
    assert "grouplens" in ml.source


def test_recbole_directory_and_zip(tmp_path: Path) -> None:
    src = write_recbole(tmp_path / "rb")
    _check(read_movielens(src))
    ml = read_movielens(_zip(src, tmp_path / "rb.zip", "recbole/dataset_example/ml-100k/"))
    _check(ml)
    assert "recbole" in ml.source


def test_both_formats_give_the_same_records(tmp_path: Path) -> None:
    a = read_movielens(write_grouplens(tmp_path / "gl"))
    b = read_movielens(write_recbole(tmp_path / "rb"))
    assert a.items == b.items
    assert a.users == b.users
    for col in ("user_id", "item_id", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a.ratings, col), getattr(b.ratings, col))


@pytest.mark.parametrize(
    "line",
    ["196\t242\t3\n", "196\t242\tgood\t881250949\n", "196\t\t3\t881250949\n"],
    ids=["short-line", "non-numeric", "empty-id"],
)
def test_malformed_ratings_raise(tmp_path: Path, line: str) -> None:
    root = write_grouplens(tmp_path)
    with (root / "u.data").open("a") as fh:
        fh.write(line)
    with pytest.raises(DatasetError):
        read_movielens(root)


def test_missing_or_broken_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_movielens(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no MovieLens files"):
        read_movielens(tmp_path / "empty")
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="zip"):
        read_movielens(bad_zip)
    root = write_grouplens(tmp_path / "no-items")
    (root / "u.item").unlink()
    with pytest.raises(DatasetError, match=r"u\.item"):
        read_movielens(root)
    # a rated item that the item file does not describe
    root = write_grouplens(tmp_path / "orphan", [*RATINGS, ("1", "999", 4, 1)])
    with pytest.raises(DatasetError, match="missing from the item file"):
        read_movielens(root)


def test_recbole_untyped_header_raises(tmp_path: Path) -> None:
    root = write_recbole(tmp_path)
    text = (root / "ml-100k.inter").read_text().replace("user_id:token", "user_id", 1)
    (root / "ml-100k.inter").write_text(text)
    with pytest.raises(DatasetError, match="typed"):
        read_movielens(root)


def test_no_cache_and_download_disabled_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="downloading is disabled"):
        load_movielens_100k(cache_dir=tmp_path, allow_download=False)


def test_cached_grouplens_zip_is_used(tmp_path: Path) -> None:
    _zip(write_grouplens(tmp_path / "src"), tmp_path / "cache" / "ml-100k.zip", "ml-100k/")
    ml = load_movielens_100k(cache_dir=tmp_path / "cache", allow_download=False)
    _check(ml)


def test_unreachable_url_fails_fast_with_download_error(tmp_path: Path) -> None:
    messages: list[str] = []
    with pytest.raises(DownloadError, match="could not load"):
        load_movielens_100k(
            cache_dir=tmp_path,
            url="http://127.0.0.1:9/ml-100k.zip",  # discard port: refused at once
            timeout=2.0,
            pip_fallback=False,
            progress=messages.append,
        )
    assert messages and "downloading" in messages[0]
    assert not list(tmp_path.iterdir())  # nothing half-written in the cache


@pytest.mark.slow
def test_real_movielens_100k_from_the_recbole_wheel(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The real data via ``pip download recbole`` (GroupLens skipped); skip only without PyPI."""
    cache = tmp_path_factory.mktemp("ml100k-cache")
    try:
        ml = load_movielens_100k(cache_dir=cache, url=None)
    except DownloadError as exc:
        pytest.skip(f"package index unreachable: {exc}")
    r = ml.ratings
    assert len(r) == 100_000
    assert len(ml.users) == 943 and len(set(r.user_id.tolist())) == 943
    assert len(ml.items) == 1682 and len(set(r.item_id.tolist())) == 1682
    assert set(np.unique(r.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (r.user_id[0], r.item_id[0], r.rating[0], r.timestamp[0]) == (
        "196",
        "242",
        3.0,
        881250949,
    )
    toy_story = next(it for it in ml.items if it.item_id == "1")
    assert (toy_story.title, toy_story.year) == ("Toy Story", 1995)
    assert toy_story.genres == ["Animation", "Children's", "Comedy"]
    assert ml.users[0].attributes["occupation"] == "technician"
    assert "recbole" in ml.source
    # the second load reads the cached wheel, no network
    again = load_movielens_100k(cache_dir=cache, allow_download=False)
    assert len(again.ratings) == 100_000
