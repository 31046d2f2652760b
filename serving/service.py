"""The BentoML service that serves one Iris model artifact.

Start-up never raises: if the artifact fails any check the process stays up,
/livez answers 200, and /readyz answers 503 with the reason (also logged), so
Kubernetes keeps the old pods serving and the operator can report why.

Imports are package-relative so the same file runs as ``irisop_serving.service``
(installed) and as ``serving.service`` inside a Bento built from the repo root.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import platform
from dataclasses import dataclass, field
from typing import Any

import bentoml

from .contract import CLASSES, FEATURES, not_ready_line
from .errors import ModelLoadError
from .loader import LoadedModel, load_model, sklearn_version
from .quality import min_accuracy_from_env
from .middleware import EdgeMiddleware
from .openapi import OpenAPIRoute
from .predict_route import PredictRoute
from .instruments import install as install_cached_instruments
from .timeout import install as install_bounded_timeout
from .settings import DEFAULT_MAX_BATCH_ROWS, ServingSettings, access_log_enabled, bentoml_config, timeouts, untraced_paths
from .settings import workers as serving_workers

logger = logging.getLogger("irisop_serving")
# BentoML configures handlers on the root logger; INFO so "model ready" shows.
logger.setLevel(logging.INFO)


@dataclass
class ModelState:
    """What the probes and the API see: a loaded model, or the reason there is none."""

    ready: bool = False
    reason: str = "service is starting"
    model: LoadedModel | None = None
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    info: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return self.info


# One state per worker process, shared by the service instance and the probe
# middleware (which BentoML builds before the service instance exists).
STATE = ModelState()


def _build_info(model: LoadedModel) -> dict[str, Any]:
    raw = model.metadata.raw
    return {
        "ready": True,
        "sha256": model.sha256,
        "format": model.metadata.format,
        "model_file": model.metadata.model_file,
        "estimator": raw.get("estimator"),
        "created_at": raw.get("created_at"),
        "schema_version": raw.get("schema_version"),
        "versions": raw.get("versions"),
        "metrics": raw.get("metrics"),
        "params": raw.get("params"),
        "features": list(FEATURES),
        "classes": list(CLASSES),
        "predictor": model.predictor.kind,
        # What the quality gate measured on the artifact's held-out rows (None without a check set).
        "quality": dataclasses.asdict(model.quality) if model.quality else None,
        "server": {"scikit-learn": sklearn_version(), "bentoml": bentoml.__version__, "python": platform.python_version()},
    }


def load_state(state: ModelState) -> None:
    try:
        settings = ServingSettings.from_env()
        state.max_batch_rows = settings.max_batch_rows
        model = load_model(settings.model_dir, settings.expected_sha256, min_accuracy=min_accuracy_from_env())
    except ModelLoadError as exc:
        state.ready, state.reason, state.model = False, str(exc), None
        # The operator reads this line: permanent refusals degrade the IrisModel at once.
        logger.error("%s", not_ready_line(str(exc), exc.kind))
        return
    state.model, state.info = model, _build_info(model)
    state.ready, state.reason = True, "ok"
    logger.info(
        "model ready: %s sha256=%s predictor=%s", settings.model_dir, model.sha256, model.predictor.kind
    )


def silence_uvicorn_access_log() -> None:
    """uvicorn's access log off, as its own ``access_log=False`` does (BentoML gives no way to pass that).

    BentoML has its own access log (IRISOP_ACCESS_LOG); uvicorn's prints
    nothing here, yet uvicorn builds its line's arguments (the client
    address, the quoted path) on every response whenever the logger
    ``hasHandlers()``, and BentoML's handlers sit on the root logger. With no
    handler of its own and no propagation it has none, and uvicorn skips the
    line: ~2-3 % of a one-row request's samples in a py-spy profile of the
    worker. Its connections read this when they open, so it runs at start-up.
    """
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.WARNING)
    access.propagate = False


@bentoml.service(
    name="iris_classifier",
    # One worker per container by default: Kubernetes scales pods (HPA), not
    # processes; spec.serving.workers raises it for CPU-heavy pods.
    workers=serving_workers(),
    **bentoml_config(),
)
class IrisClassifier:
    def __init__(self) -> None:
        self.state = STATE
        load_state(self.state)
        # Everything created so far (BentoML, pydantic, numpy: ~120k container
        # objects) lives as long as the process. Moving it out of the
        # collector's view keeps full collections from walking it, which
        # showed up as 50-150 ms pauses in p99 under load.
        gc.collect()
        gc.freeze()
        if not access_log_enabled():
            silence_uvicorn_access_log()

    def __is_ready__(self) -> bool:
        return self.state.ready


# /predict is a lean ASGI route, not a @bentoml.api (predict_route.py says why);
# /docs.json is our own document, because it must describe that route.
ROUTES = {
    "/predict": PredictRoute(lambda: STATE, body_timeout=timeouts()[0]),
    "/docs.json": OpenAPIRoute(lambda: STATE.max_batch_rows),
}
IrisClassifier.add_asgi_middleware(EdgeMiddleware, status=lambda: STATE, routes=ROUTES)
# BentoML's request timeout without the timer it leaves per request (timeout.py);
# our routes bound their own time.
install_bounded_timeout(exempt=ROUTES)
# BentoML's request metrics and tracing, without their per-request lookups (instruments.py).
install_cached_instruments(untraced=untraced_paths())
