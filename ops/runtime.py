"""Wiring for one process in embedded mode: the application, the view store and the projection runner."""

from __future__ import annotations

from dataclasses import dataclass

from engine.application import Gridloop
from engine.clock import Clock
from ops.config import Settings
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections


@dataclass
class Runtime:
    """The parts of a running gridloop, opened together and closed together."""

    settings: Settings
    app: Gridloop
    views: ViewStore
    runner: EmbeddedRunner

    def close(self) -> None:
        self.views.close()
        self.app.close()


def open_runtime(settings: Settings, clock: Clock) -> Runtime:
    """Open (creating if needed) the embedded event store and view store named by ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Gridloop(settings.event_store_env(), clock=clock)
    views = ViewStore.open(settings.view_store_path)
    runner = EmbeddedRunner(
        app.recorder, app.mapper, views, default_projections(app.catalogue), batch_size=settings.projection_batch_size
    )
    return Runtime(settings, app, views, runner)
