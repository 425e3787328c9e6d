"""The served model: an immutable snapshot, swapped atomically, in step across worker processes.

A request takes ONE reference to the current :class:`core.predict.ServedModel` and uses it to the
end, so it is answered by a fully loaded model even while a swap happens. A promotion/rollback/
reload bumps the *model generation* in the database (:func:`core.store.bump_generation`); every
worker polls it and reloads the champion when it moves, building the new snapshot completely
before the swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from core.predict import ServedModel
from core.registry import LoadedModel, RegistryError, champion_version, load_champion
from core.settings import Settings
from core.store import read_generation

log = logging.getLogger(__name__)

Loader = Callable[[Settings], LoadedModel]
#: The version the registry's ``champion`` alias points at now (None: no champion).
ChampionVersion = Callable[[Settings], str | None]


class ModelManager:
    """Holds the current :class:`ServedModel` and reloads it when the champion changes.

    Two signals make it reload, so a promotion from any entry point reaches every worker: the
    model generation in the predictions database (bumped by the API's own promote/rollback/
    reload/retrain: immediate), and the registry's ``champion`` alias itself (asked every
    ``follow_every`` seconds: catches ``make promote``, ``make rollback``, ``make train``, the
    MLflow UI).

    Args:
        settings: service settings (passed to the loader).
        engine: the database holding the model generation.
        loader: returns the champion (``core.registry.load_champion`` by default).
        on_swap: called with the new snapshot after each swap (e.g. to publish an event).
        champion: the registry's current champion version (``core.registry.champion_version``
            with the default loader; not followed with a custom loader unless given).
        follow_every: seconds between questions to the registry.
    """

    #: Seconds between attempts while no model could be loaded.
    retry_after = 5.0

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        loader: Loader | None = None,
        on_swap: Callable[[ServedModel], None] | None = None,
        *,
        champion: ChampionVersion | None = None,
        follow_every: float = 2.0,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._loader: Loader = loader or load_champion
        # what the registry is asked, how often, and when it was last asked
        self._follow: tuple[ChampionVersion | None, float] = (
            champion or (champion_version if loader is None else None),
            follow_every,
        )
        self._followed_at = 0.0
        self._on_swap = on_swap
        self._lock = threading.Lock()
        self.current: ServedModel | None = None
        self.generation = -1
        self.error: str | None = None
        self._last_attempt = 0.0
        self._reported: str | None = None

    def _report(self, message: str) -> None:
        """Log a problem once, not at every retry; a new or cleared problem is logged again."""
        if message != self._reported:
            self._reported = message
            log.warning("%s", message)

    def load(self, generation: int | None = None) -> ServedModel | None:
        """Load the champion for ``generation`` (default: the database's) and swap it in.

        Returns the new snapshot, or None when no champion could be loaded (the old one stays).
        """
        with self._lock:
            target = read_generation(self._engine) if generation is None else generation
            started = time.perf_counter()
            self._last_attempt = time.monotonic()
            try:
                loaded = self._loader(self._settings)
                served = ServedModel.from_loaded(loaded, target, self._settings.model_name)
            except Exception as exc:  # pylint: disable=broad-exception-caught  # keep serving
                expected = isinstance(exc, RegistryError)  # e.g. no champion yet
                self.error = str(exc) if expected else f"{type(exc).__name__}: {exc}"
                self.generation = max(self.generation, target)
                self._report(f"no champion loaded yet (retrying every {self.retry_after:.0f} s): "
                             f"{self.error}")  # fmt: skip
                return None
            previous = self.current
            self.current = served  # the atomic swap: one reference assignment
            self.generation = target
            self.error = None
            self._reported = None
            log.info(
                "serving %s v%s (generation %d, %s path, %.0f ms)%s",
                self._settings.model_name,
                served.version,
                target,
                served.compiled,
                (time.perf_counter() - started) * 1000,
                " [degraded]" if served.degraded else "",
            )
        if self._on_swap is not None and (previous is None or previous is not served):
            self._on_swap(served)
        return served

    def _registry_moved(self) -> bool:
        """Whether the registry's champion is another version than the one served."""
        ask, every = self._follow
        if ask is None or time.monotonic() - self._followed_at < every:
            return False
        self._followed_at = time.monotonic()
        try:
            version = ask(self._settings)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # keep serving
            self._report(f"cannot ask the registry for the champion: {type(exc).__name__}: {exc}")
            return False
        current = self.current
        return version is not None and (current is None or current.version != version)

    def poll(self) -> bool:
        """Reload when the database's generation moved, when the registry's champion is another
        version than the one served, or (every ``retry_after`` s) while no model could be loaded
        yet; True when it swapped."""
        target = read_generation(self._engine)
        if target == self.generation and not self._registry_moved():
            waited = time.monotonic() - self._last_attempt
            if self.current is not None or waited < self.retry_after:
                return False
        return self.load(target) is not None
