"""Per-call cost of the ranker's predictors on the real trained ranker, and their exactness.

Compares LightGBM's ``Booster.predict(num_threads=1)`` with :class:`ForestPredictor` (numpy,
``smartrec.pipeline.forest``) and, when ``treelite`` + ``tl2cgen`` are importable, a compiled
shared library (built once into a temporary directory; its compile time is printed). Calls are
interleaved (one call of each predictor per repetition) so a busy machine slows them alike;
medians of wall and of this thread's CPU time are reported, with the ratio to LightGBM.

The ranker and the real feature rows come from ``benchmarks/pipeline_user.py``'s cached
pipeline (trained on first use); ``--model ranker.txt`` times another model on random rows.

    .venv/bin/python benchmarks/ranker_predict.py [--reps 200] [--model PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from smartrec.pipeline.forest import ForestPredictor

SIZES = (1, 30, 100, 300, 1000)


def _real_rows(users: int) -> tuple[Any, np.ndarray]:
    """(the cached pipeline's ranker, feature rows of ``users`` ML-100K users' candidates)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_user import _interactions, _pipeline  # type: ignore[import-not-found]
    from smartrec.pipeline.core import query_from_matrix

    data, ml = _interactions()
    pipe = _pipeline(data, ml, retrain=False)
    rng = np.random.default_rng(1)
    xs = []
    for u in rng.choice(data.n_users, users, replace=False).tolist():
        q = query_from_matrix(data, int(u))
        xs.append(pipe.features(pipe.retrieve(q), q))
    return pipe.ranker, np.vstack(xs)


def _random_rows(n: int, width: int, seed: int = 0) -> np.ndarray:
    """Normal values with 10% NaN, 10% exact zeros and a few within LightGBM's zero band."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.1] = 0.0
    x[rng.random(x.shape) < 0.01] = np.float32(1e-36)
    return x


def _tl2cgen(booster: Any) -> tuple[Callable[[np.ndarray], np.ndarray], float] | None:
    try:
        import tl2cgen
        import treelite
    except ImportError:
        print("treelite/tl2cgen not installed: compiled predictor skipped", file=sys.stderr)
        return None
    lib = Path(tempfile.mkdtemp()) / "ranker.so"
    t0 = time.perf_counter()
    model = treelite.frontend.from_lightgbm(booster)
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), params={"parallel_comp": 8})
    compile_s = time.perf_counter() - t0
    predictor = tl2cgen.Predictor(str(lib), nthread=1)

    def predict(x: np.ndarray) -> np.ndarray:
        dm = tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float32), dtype="float32")
        return np.asarray(predictor.predict(dm)).reshape(-1)

    return predict, compile_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--users", type=int, default=40, help="users whose candidates are rows")
    ap.add_argument("--model", type=Path, help="a LightGBM text model (random rows only)")
    ap.add_argument("--no-compiled", action="store_true", help="skip treelite/tl2cgen")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if args.model is not None:
        booster = lgb.Booster(model_str=args.model.read_text())
        real = np.zeros((0, booster.num_feature()), dtype=np.float32)
    else:
        booster, real = _real_rows(args.users)
    width = booster.num_feature()
    model = booster.dump_model()
    depth = 0
    for tree in model["tree_info"]:
        stack = [(tree["tree_structure"], 0)]
        while stack:
            node, d = stack.pop()
            depth = max(depth, d)
            if "left_child" in node:
                stack += [(node["left_child"], d + 1), (node["right_child"], d + 1)]
    leaves = [t["num_leaves"] for t in model["tree_info"]]
    info = {
        "objective": model["objective"],
        "trees": len(leaves),
        "leaves_max": max(leaves),
        "leaves_mean": round(float(np.mean(leaves)), 1),
        "depth_max": depth,
        "features": width,
        "real_rows": len(real),
    }

    t0 = time.perf_counter()
    forest = ForestPredictor.from_booster(booster)
    info["numpy_build_s"] = round(time.perf_counter() - t0, 3)
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "lightgbm": lambda x: booster.predict(x, num_threads=1),
        "numpy": forest.predict,
    }
    compiled = None if args.no_compiled else _tl2cgen(booster)
    if compiled is not None:
        predictors["tl2cgen"] = compiled[0]
        info["tl2cgen_compile_s"] = round(compiled[1], 1)

    check = np.vstack([real, _random_rows(5000, width)])
    reference = booster.predict(check, num_threads=1)
    diffs = {
        name: float(np.max(np.abs(np.asarray(p(check), dtype=np.float64) - reference)))
        for name, p in predictors.items()
        if name != "lightgbm"
    }

    pool = real if len(real) >= max(SIZES) else _random_rows(max(SIZES), width, seed=1)
    timings: dict[int, dict[str, dict[str, float]]] = {}
    for n in SIZES:
        x = np.ascontiguousarray(pool[:n])
        wall: dict[str, list[float]] = {k: [] for k in predictors}
        cpu: dict[str, list[float]] = {k: [] for k in predictors}
        for p in predictors.values():  # warm-up
            p(x)
        for _ in range(args.reps):
            for name, p in predictors.items():
                w0, c0 = time.perf_counter(), time.thread_time()
                p(x)
                c1, w1 = time.thread_time(), time.perf_counter()
                wall[name].append(w1 - w0)
                cpu[name].append(c1 - c0)
        base = float(np.median(wall["lightgbm"]))
        base_cpu = float(np.median(cpu["lightgbm"]))
        timings[n] = {
            name: {
                "wall_us": round(float(np.median(wall[name])) * 1e6, 1),
                "cpu_us": round(float(np.median(cpu[name])) * 1e6, 1),
                "speedup_wall": round(base / float(np.median(wall[name])), 2),
                "speedup_cpu": round(base_cpu / max(float(np.median(cpu[name])), 1e-9), 2),
            }
            for name in predictors
        }

    if args.json:
        print(json.dumps({"model": info, "max_abs_diff": diffs, "timings": timings}, indent=2))
        return 0
    print("model:", ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"max abs diff vs LightGBM on {len(check)} rows:", diffs)
    print(f"{'rows':>5} {'predictor':>9} {'wall µs':>10} {'cpu µs':>10} {'x wall':>7} {'x cpu':>7}")
    for n, row in timings.items():
        for name, t in row.items():
            print(
                f"{n:>5} {name:>9} {t['wall_us']:>10.1f} {t['cpu_us']:>10.1f}"
                f" {t['speedup_wall']:>7.2f} {t['speedup_cpu']:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
