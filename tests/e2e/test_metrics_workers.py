"""``smartrec serve --workers 2``: /metrics reports the requests of every worker, whichever worker
answers the scrape (Prometheus multiprocess mode)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.api.test_health import sample
from tests.serverproc import smartrec_serve

pytestmark = pytest.mark.slow

ROUTE = "/readyz"
#: Requests sent per round, and the most rounds before giving up on both workers answering.
ROUND, MAX_ROUNDS = 20, 25


def workers_that_answered(directory: Path) -> set[str]:
    """The pids whose counter file holds a request to ROUTE (one file per worker process)."""
    pids = set()
    for path in directory.glob("counter_*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, name, labels, _ = json.loads(key)
            if name == "smartrec_http_requests_total" and labels.get("route") == ROUTE and value:
                pids.add(path.stem.removeprefix("counter_"))
    return pids


def scraped_total(url: str) -> float:
    """The requests to ROUTE in one scrape, over every status."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample(text, "smartrec_http_requests_total", method="GET", route=ROUTE, status=s) or 0.0
        for s in ("200", "503")
    )


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    samples = tmp_path / "prometheus"
    samples.mkdir()
    (samples / "counter_1.db").write_bytes(b"stale")  # an earlier run's file: emptied at start
    with smartrec_serve(
        tmp_path / "home", SMARTREC_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(samples)
    ) as url:
        sent = 0

        def one(_: int) -> int:
            return httpx.get(f"{url}{ROUTE}", timeout=10).status_code

        # Concurrent requests, each on a new connection: a worker busy with one leaves the next
        # to the other. Go on until both have answered some (usually the first round).
        with ThreadPoolExecutor(8) as pool:
            for _ in range(MAX_ROUNDS):
                assert set(pool.map(one, range(ROUND))) <= {200, 503}
                sent += ROUND
                if len(workers_that_answered(samples)) == 2:
                    break
        assert len(workers_that_answered(samples)) == 2, "one worker answered every request"
        # Scrapes on new connections reach either worker; each must count all requests.
        totals = [scraped_total(url) for _ in range(12)]
        assert totals == [sent] * len(totals)
    # The workers stopped: their live gauges left the directory, their counts stayed.
    assert not list(samples.glob("gauge_live*.db"))
    assert list(samples.glob("counter_*.db"))
