"""In-process latency of the path after a user acts: retrieve -> features -> ranker, one user.

This is what a request without a precomputed feed costs inside the server, without HTTP:
``TrainedPipeline.retrieve`` then ``TrainedPipeline.score`` (features + the ranker) for one
user at a time, over ``--users`` MovieLens-100K users. The default pipeline (shipped TOML, the
protocol's model parameters, the LightGBM ranker) is trained on all ML-100K ratings once and
saved under ``~/.cache/smartrec/bench/pipeline_user/`` (``--retrain`` fits it again); a later
run loads it, so two versions of the code can be timed on the same trained pipeline.

    .venv/bin/python benchmarks/pipeline_user.py [--users 500] [--json] [--profile]

``features`` is timed on its own as well (a second, unmeasured-in-total call), so that the
ranker's share is ``score - features``. ``SMARTREC_RANKER_PREDICTOR=lightgbm`` times the ranker
with LightGBM's own predict instead of ``smartrec.pipeline.forest`` (a before/after on one tree).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from smartrec.datasets import load_movielens_100k
from smartrec.domain import Interactions
from smartrec.evaluation.protocol import PROTOCOL_PARAMS
from smartrec.pipeline.core import TrainedPipeline, query_from_matrix
from smartrec.pipeline.spec import load_spec

CACHE = Path.home() / ".cache" / "smartrec" / "bench" / "pipeline_user"


def _interactions() -> tuple[Interactions, Any]:
    ml = load_movielens_100k(progress=lambda m: print(m, file=sys.stderr))
    r = ml.ratings
    data = Interactions.from_events(
        r.user_id,
        r.item_id,
        np.ones(len(r), dtype=np.float32),
        r.timestamp,
        item_categories=ml.item_genres(),
    )
    return data, ml


def _pipeline(data: Interactions, ml: Any, retrain: bool) -> TrainedPipeline:
    from smartrec.evaluation.pipeline_eval import catalog_from_movielens

    spec = load_spec().with_models({n: dict(p) for n, p in PROTOCOL_PARAMS.items()})
    key = hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode())
    home = CACHE / key.hexdigest()[:16]
    if not retrain and (home / "pipeline.json").exists():
        print(f"loading the pipeline from {home}", file=sys.stderr)
        return TrainedPipeline.load(home)
    print("training the default pipeline on ML-100K", file=sys.stderr)
    try:
        from smartrec.training.pipeline_fit import fit_pipeline
    except ImportError:  # the code before fitting moved to training/ (a "before" run)
        from smartrec.pipeline.core import fit_pipeline  # type: ignore[attr-defined,no-redef]
    pipe = fit_pipeline(data, spec, catalog_from_movielens(ml), seed=0)
    pipe.save(home)
    return TrainedPipeline.load(home)  # time what a server would load


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0


def _per_retriever(pipe: TrainedPipeline, queries: list[Any], clock: Any) -> dict[str, float]:
    """Each retriever's own p50 (a separate pass, not part of the totals)."""
    retrievers = getattr(pipe, "retrievers", None)
    if retrievers is None:  # the code before retrievers were components
        return {}
    out: dict[str, float] = {}
    for r in retrievers:
        times: list[float] = []
        for q in queries:
            t0 = clock()
            r.retrieve(q, np.asarray(q.exclude, dtype=np.int64), None)
            times.append(clock() - t0)
        out[r.name] = round(_pct(times, 50), 3)
    return out


def _predictor_name(pipe: TrainedPipeline) -> str | None:
    """Which predictor scores the ranker ($SMARTREC_RANKER_PREDICTOR=lightgbm: LightGBM's)."""
    if pipe.ranker is None:
        return None
    try:
        from smartrec.pipeline.forest import predictor_for
    except ImportError:  # the code before smartrec.pipeline.forest
        return "lightgbm"
    return type(predictor_for(pipe.ranker)).__name__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this thread's CPU time (steadier on a busy machine; misses waits)",
    )
    args = ap.parse_args(argv)

    data, ml = _interactions()
    pipe = _pipeline(data, ml, args.retrain)
    pipe.warm()
    rng = np.random.default_rng(args.seed)
    users = rng.choice(data.n_users, min(args.users, data.n_users), replace=False)
    queries = [query_from_matrix(data, int(u)) for u in users.tolist()]
    for q in queries[:20]:  # warm-up: lazy structures, caches, the allocator
        c = pipe.retrieve(q)
        pipe.score(c, q)

    t_retrieve: list[float] = []
    t_score: list[float] = []
    t_features: list[float] = []
    t_total: list[float] = []
    profiler = cProfile.Profile() if args.profile else None
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    for q in queries:
        if profiler is not None:
            profiler.enable()
        t0 = clock()
        c = pipe.retrieve(q)
        t1 = clock()
        pipe.score(c, q)
        t2 = clock()
        if profiler is not None:
            profiler.disable()
        pipe.features(c, q)
        t3 = clock()
        t_retrieve.append(t1 - t0)
        t_score.append(t2 - t1)
        t_total.append(t2 - t0)
        t_features.append(t3 - t2)

    per_retriever = _per_retriever(pipe, queries, clock)
    result = {
        "clock": args.clock,
        "users": len(queries),
        "ranker": pipe.info.get("ranker"),
        "retrievers": [r.name for r in pipe.spec.retrievers],
        "p50_ms": round(_pct(t_total, 50), 3),
        "p99_ms": round(_pct(t_total, 99), 3),
        "mean_ms": round(float(np.mean(t_total)) * 1000.0, 3),
        "stages_p50_ms": {
            "retrieve": round(_pct(t_retrieve, 50), 3),
            "score (features + ranker)": round(_pct(t_score, 50), 3),
            "features": round(_pct(t_features, 50), 3),
        },
        "retrievers_p50_ms": per_retriever,
        "predictor": _predictor_name(pipe),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['users']} users, ranker {result['ranker']}, {result['retrievers']}")
        print(f"ranker predictor: {result['predictor']}")
        print(
            f"retrieve + features + score per user: p50 {result['p50_ms']:.3f} ms, "
            f"p99 {result['p99_ms']:.3f} ms, mean {result['mean_ms']:.3f} ms"
        )
        for name, ms in result["stages_p50_ms"].items():
            print(f"  {name:<28} p50 {ms:.3f} ms")
        for name, ms in per_retriever.items():
            print(f"    retriever {name:<18} p50 {ms:.3f} ms")
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
