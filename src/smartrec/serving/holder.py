"""The served model: installed, hot-swapped when the registry's champion alias moves, and
kept in step with the catalogue that other processes edit.

The state is one object swapped by reference: a request holds the state it started with, so
a swap never breaks it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence

from smartrec.config import Settings
from smartrec.registry import ModelBundle, ModelRegistry
from smartrec.registry.mlflow_registry import CHAMPION
from smartrec.serving.erasures import Erasures
from smartrec.serving.state import ServingState
from smartrec.storage.ports import CatalogStore

log = logging.getLogger(__name__)


def freeze_heap() -> None:
    """Move what is alive now (the loaded model: millions of objects at a million items) out
    of the cyclic collector's sight. Otherwise every full collection walks all of it, a pause
    of tens of milliseconds that lands in some request's latency. Unfrozen first, so that
    cyclic garbage of the model this one replaces is still collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelHolder:
    """Holds the serving state. ``on_catalog`` runs after catalogue rows were applied, and
    ``on_install`` after a new state is served (both drop what was derived from the old)."""

    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        registry: ModelRegistry,
        erasures: Erasures,
        on_install: Callable[[ServingState], None],
        on_catalog: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.erasures = erasures
        self.state: ServingState | None = None
        self.last_reload_error: str | None = None
        #: The registry could not be asked for the champion (an outage), as opposed to a version
        #: that could not be loaded: only the first keeps a replica without a model unready.
        self.registry_down = False
        self._on_install = on_install
        self._on_catalog = on_catalog
        self._catalog_mark: int | None = None  # newest items.updated_at applied
        self._applied_at_mark: set[str] = set()
        self._swap_lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def install(self, bundle: ModelBundle) -> None:
        """Make a bundle the serving model."""
        mark = self.store.catalog_mark()
        self.erasures.load()
        catalog = self.store.catalog(bundle.items.to_list())
        state = ServingState(bundle, catalog, self.settings.weights)
        if state.pipeline is not None and state.pipeline.content is not None:
            # Items added after the training read the catalogue (while it ran, or before this
            # process started) are in no model: content retrieval reaches them once they are on
            # the serving axis, as items added from now on are.
            known = bundle.items.lookup
            later = [i for i in self.store.catalog() if i not in known]
            if later:
                self.apply_rows(state, later)
        self.state = state  # one reference assignment: in-flight requests keep the old one
        self._catalog_mark, self._applied_at_mark = mark, set()
        self.refresh_catalog()  # changes committed while the catalog was being read
        self._on_install(state)

    def refresh_catalog(self) -> int:
        """Apply item rows changed since the last look (by any process); returns how many.

        Availability, titles and categories set through another replica reach this one within
        one watcher interval.
        """
        state = self.state
        if state is None or self._catalog_mark is None:
            self._catalog_mark = self.store.catalog_mark()
            return 0
        mark = self._catalog_mark
        # ">= mark" also catches a write committed late within the last millisecond seen;
        # rows already applied at exactly that millisecond are skipped.
        rows = self.store.catalog_changes(mark)
        fresh = [i for i, ts in rows if ts > mark or i not in self._applied_at_mark]
        if fresh:
            self.apply_rows(state, fresh)
            self._on_catalog()
        if rows:
            newest = max(ts for _, ts in rows)
            at_newest = {i for i, ts in rows if ts == newest}
            self._applied_at_mark = (
                at_newest if newest > mark else self._applied_at_mark | at_newest
            )
            self._catalog_mark = newest
        return len(fresh)

    def catalog_changed(self, item_ids: Sequence[str]) -> None:
        """This process changed these catalogue rows."""
        state = self.state
        if state is not None and item_ids:
            self.apply_rows(state, item_ids)
        self._on_catalog()

    def apply_rows(self, state: ServingState, item_ids: Sequence[str]) -> None:
        """Apply changed catalog rows. With content retrieval they are read with their text,
        as training read them: items it appends are vectorised from it, and items whose
        vectorised content changed are re-vectorised, so content retrieval and similar items
        follow edits without a retraining."""
        with_text = state.pipeline is not None and state.pipeline.content is not None
        rows = self.store.catalog(item_ids, with_text=with_text)
        state.apply_catalog(rows, rows if with_text else None)

    def reload(self) -> bool:
        """Load the champion if it moved; True when a new version is now served. A registry
        that cannot be reached (or a version that cannot be loaded) raises, and is remembered in
        :attr:`last_reload_error` until a reload succeeds: the model served goes on serving."""
        try:
            return self._reload()
        except Exception as exc:
            self.last_reload_error = f"{type(exc).__name__}: {exc}"
            raise

    def _reload(self) -> bool:
        with self._swap_lock:
            try:
                version = self.registry.alias_version(CHAMPION)
            except Exception:
                self.registry_down = True
                raise
            current = self.state.version if self.state is not None else None
            if version is None or version == current:
                self.registry_down = False
                self.last_reload_error = None
                return False
            started = time.perf_counter()
            try:  # an outage ends once the champion is served (or cannot be, for another cause)
                bundle = self.registry.load(version)
                self.install(bundle)
            finally:
                self.registry_down = False
            self.last_reload_error = None
            log.info(
                "serving model version %s (%s), loaded in %.2fs",
                version,
                bundle.algorithm,
                time.perf_counter() - started,
            )
            return True

    def start_watcher(self, stop: threading.Event) -> None:
        """Every ``reload_interval_s`` until ``stop``: the champion, the catalogue, erasures."""
        interval = self.settings.reload_interval_s
        if interval <= 0 or self._watcher is not None:
            return

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.reload()
                except Exception:  # keep serving the current model
                    log.warning("champion reload failed: %s", self.last_reload_error)
                # Apart: a registry that is down must not stop catalogue edits and erasures.
                try:
                    self.refresh_catalog()
                    self.erasures.refresh()
                except Exception as exc:
                    log.warning("catalogue sync failed: %s: %s", type(exc).__name__, exc)

        self._watcher = threading.Thread(target=loop, name="smartrec-reload", daemon=True)
        self._watcher.start()

    def join(self) -> None:
        """Wait for the watcher (after its stop event was set)."""
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._watcher = None
