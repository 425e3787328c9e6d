"""The per-process application state shared by the routers (built by the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from api.auth import KeyRing
from api.event_hub import EventHub
from api.retrain_runner import RetrainRunner
from api.serving import ModelManager
from core.settings import Settings
from core.store import PredictionWriter


@dataclass
class AppState:
    """Everything one worker process holds: settings, keys, DB, model, writer, events, jobs."""

    settings: Settings
    keys: KeyRing
    engine: Engine
    manager: ModelManager
    writer: PredictionWriter
    hub: EventHub
    runner: RetrainRunner
