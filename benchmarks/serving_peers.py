"""The servers benchmarks/serving.py compares ours with, each run by its own interpreter.

    python serving_peers.py {floor,fastapi,kserve,mlserver,bentoml} PORT MODEL_DIR WORK_DIR

Each peer runs in a virtual environment of its own under $IRISOP_CACHE
(benchmarks/serving.py creates them from PyPI), so this file imports nothing
from the project and only what that peer installs. Each serves the same
model.joblib the way its documentation shows, with its own protocol and its
defaults, on uvicorn with uvloop + httptools where the peer runs uvicorn:

- floor: a raw ASGI app that reads the body and returns a fixed JSON answer;
  no parsing, no model. Nothing that parses, predicts and serialises can beat
  it, so it is the limit to measure against.
- fastapi: what a user writes first: pydantic request model, async handler,
  scikit-learn's predict_proba.
- kserve: a kserve.Model like KServe's sklearnserver (V1 protocol,
  POST /v1/models/iris:predict with {"instances": [...]}), answering
  predict_proba as sklearnserver does with PREDICT_PROBA set.
- mlserver: MLServer's own scikit-learn runtime (mlserver_sklearn) with its
  default settings (one parallel inference worker), V2 protocol
  POST /v2/models/iris/infer, predict_proba requested as the output.
- bentoml: a plain BentoML service as its docs show (sync @bentoml.api with
  a typed argument, scikit-learn's predict_proba): what users get without
  our work.
"""
# No `from __future__ import annotations`: FastAPI resolves the handler's
# annotations at run time, and the request model is local to fastapi().
import json
import os
import sys
from pathlib import Path

CLASSES = ["setosa", "versicolor", "virginica"]
FIXED = json.dumps({"predictions": ["setosa"], "probabilities": [[0.97, 0.02, 0.01]]}).encode()


def floor(port: int, model_dir: str, work: str) -> None:
    import uvicorn

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(FIXED)).encode())]})
        await send({"type": "http.response.body", "body": FIXED})

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off", log_level="warning", access_log=False)


def fastapi(port: int, model_dir: str, work: str) -> None:
    import joblib
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Request(BaseModel):
        rows: list[list[float]]

    model = joblib.load(Path(model_dir) / "model.joblib")
    app = FastAPI()

    @app.post("/predict")
    async def predict(req: Request) -> dict:
        proba = model.predict_proba(req.rows)
        return {"predictions": [CLASSES[i] for i in proba.argmax(axis=1)], "probabilities": proba.tolist()}

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False)


def kserve(port: int, model_dir: str, work: str) -> None:
    import joblib
    import numpy as np

    # kserve parses the command line when it is imported: say it first.
    sys.argv = [sys.argv[0], "--http_port", str(port), "--enable_grpc", "false", "--workers", "1"]
    import kserve as ks

    class SKLearnModel(ks.Model):
        def load(self) -> bool:
            self._model = joblib.load(Path(model_dir) / "model.joblib")
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):  # noqa: ANN001, ANN201
            instances = np.asarray(payload["instances"])
            return {"predictions": self._model.predict_proba(instances).tolist()}

    model = SKLearnModel("iris")
    model.load()
    ks.ModelServer(http_port=port, enable_grpc=False, workers=1).start([model])


def mlserver(port: int, model_dir: str, work: str) -> None:
    home = Path(work) / "mlserver"
    (home / "iris").mkdir(parents=True, exist_ok=True)
    (home / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": _free_port(), "metrics_port": _free_port(), "host": "127.0.0.1"}))
    (home / "iris" / "model-settings.json").write_text(json.dumps({
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(Path(model_dir) / "model.joblib")},
    }))
    mlserver_bin = Path(sys.executable).with_name("mlserver")
    # MLServer keeps its multiprocess metrics in ./.metrics: in the work dir,
    # not in whatever directory the benchmark was started from.
    os.chdir(home)
    os.execv(str(mlserver_bin), [str(mlserver_bin), "start", str(home)])


BENTO_SERVICE = '''
import os
import joblib
import bentoml

CLASSES = ["setosa", "versicolor", "virginica"]


@bentoml.service
class IrisPlain:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["IRIS_MODEL"])

    @bentoml.api
    def predict(self, rows: list[list[float]]) -> dict:
        proba = self.model.predict_proba(rows)
        return {"predictions": [CLASSES[i] for i in proba.argmax(axis=1)], "probabilities": proba.tolist()}
'''


def bentoml(port: int, model_dir: str, work: str) -> None:
    home = Path(work) / "bentoml-plain"
    home.mkdir(parents=True, exist_ok=True)
    (home / "plain_service.py").write_text(BENTO_SERVICE)
    env = {**os.environ, "IRIS_MODEL": str(Path(model_dir) / "model.joblib"), "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(home / "home")}
    os.chdir(home)
    bentoml_bin = Path(sys.executable).with_name("bentoml")
    os.execve(str(bentoml_bin), [str(bentoml_bin), "serve", "plain_service:IrisPlain", "--port", str(port), "--host", "127.0.0.1"], env)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PEERS = {"floor": floor, "fastapi": fastapi, "kserve": kserve, "mlserver": mlserver, "bentoml": bentoml}

if __name__ == "__main__":
    name, port_text, model, work_dir = sys.argv[1:5]
    PEERS[name](int(port_text), model, work_dir)
