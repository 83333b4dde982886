"""The HTML report: self-contained, well-formed, escaped, and tolerant of partial results."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smartrec.evaluation import evaluate, write_report
from smartrec.evaluation.report import render_report
from tests.unit.evaluation.test_protocol import CATEGORIES, FixedScores, _data

EVIL = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}
EXTERNAL_TAGS = {"script", "link", "img", "iframe", "object", "embed", "image", "use", "audio"}


class StrictParser(HTMLParser):
    """Checks that every element is closed in order and records what the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(doc: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(doc)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return parser


def _row(name: str, base: float, i: int, *, curves: bool = True) -> dict[str, Any]:
    ks = (1, 3, 5, 10, 20)
    row: dict[str, Any] = {
        "model": name,
        "ndcg@10": base,
        "map": base / 2,
        "precision@10": base * 0.8,
        "recall@10": base * 0.5,
        "coverage": 0.1 + i / 10,
        "ild@10": 0.7 + i / 50,
        "novelty@10": 2.0 + i,
        "arp@10": 300.0 - 30 * i,
        "train_seconds": 1.0 + i,
        "predict_seconds": 0.1,
    }
    if curves:
        row["curves"] = {m: {k: base * k / 20 for k in ks} for m in ("ndcg", "precision", "recall")}
        row["popularity_bias"] = list(np.linspace(0.19, 0.01, 10))
    return row


def _result(**extra: Any) -> dict[str, Any]:
    return {
        "dataset": "MovieLens 100K",
        "source": "https://example.org/ml-100k.zip",
        "protocol": "stratified <split> & more",
        "k": 10,
        "seed": 42,
        "n_train": 75000,
        "n_test": 25000,
        "n_users": 943,
        "n_items": 1682,
        "reference_ndcg": {"ease": 0.487},
        "rows": [_row("popularity", 0.25, 0), _row("ease", 0.49, 1), _row(EVIL, 0.3, 2)],
        **extra,
    }


ABLATION = [{"stage": "retrieval", "ndcg@10": 0.43}, {"stage": "+ ranker", "ndcg@10": 0.47}]


def test_full_report_is_self_contained_well_formed_and_escaped(tmp_path: Path) -> None:
    path = write_report(_result(ablation=ABLATION), tmp_path / "out" / "report.html")
    assert path == tmp_path / "out" / "report.html" and path.is_file()
    doc = path.read_text(encoding="utf-8")
    parsed = _parse(doc)
    # 3 metric@K curves + 4 per-model bar charts + popularity bias + ablation
    assert parsed.tags.count("svg") == doc.count("<svg") == 9
    assert not EXTERNAL_TAGS & set(parsed.tags)
    assert not [a for a, _ in parsed.attrs if a in {"src", "href", "xlink:href", "srcset"}]
    assert not re.search(r"(?i)@import|url\(|https?://[^\s<]*\"", doc.split("<body>")[0])
    assert not re.search(r"""(?i)(src|href)\s*=""", doc)
    assert EVIL not in doc and "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "stratified &lt;split&gt; &amp; more" in doc
    assert EVIL in "".join(parsed.text)  # shown to the reader as text
    assert "No ablation" not in doc and "retrieval" in doc


def test_best_value_per_column_is_highlighted() -> None:
    doc = render_report(_result())
    assert '<td class="best">0.4900</td>' in doc  # nDCG@10 of ease
    assert '<td class="best">240.0</td>' in doc  # ARP: lower is better
    assert doc.count('class="best"') >= 8


def test_result_without_curves_or_ablation_still_renders(tmp_path: Path) -> None:
    result = _result()
    result["rows"] = [_row("a", 0.2, 0, curves=False), _row("b", 0.3, 1, curves=False)]
    result["rows"][0]["ild@10"] = float("nan")
    del result["rows"][1]["ild@10"]
    doc = write_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    parsed = _parse(doc)
    assert parsed.tags.count("svg") == 3  # nDCG, coverage, novelty bars; ILD skipped
    for note in ("No nDCG@K curve", "No popularity-bias", "No ablation", "No Intra-list"):
        assert note in doc, note


def test_empty_and_json_round_tripped_results_render() -> None:
    _parse(render_report({"rows": []}))
    round_trip = json.loads(json.dumps(_result(ablation=ABLATION)))  # curve keys become str
    assert render_report(round_trip).count("<svg") == 9


def test_report_of_real_evaluate_rows(tmp_path: Path) -> None:
    train, test = _data(CATEGORIES)
    rows = evaluate({"fixed": FixedScores(), "other": FixedScores()}, train, test, k=2)
    doc = write_report({"k": 2, "rows": rows}, tmp_path / "r.html").read_text(encoding="utf-8")
    parsed = _parse(doc)
    assert parsed.tags.count("svg") == 3 + 4 + 1
    assert "nDCG@2" in doc


@pytest.mark.parametrize("values", [[0.0, 0.0], [1e-6, 3e-6], [120.0, 4500.0]])
def test_axes_cope_with_degenerate_and_large_ranges(values: list[float]) -> None:
    rows = [{"model": f"m{i}", "ndcg@10": v, "coverage": v} for i, v in enumerate(values)]
    _parse(render_report({"rows": rows}))
