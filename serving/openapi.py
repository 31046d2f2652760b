"""GET /docs.json: an OpenAPI 3.1 document of exactly what /predict and /metadata do.

BentoML's own document described ``rows`` items as ``{}`` with no bounds and
none of the error answers; /predict is no longer a BentoML API (predict_route.py)
so this module writes the document from the same constants the code uses: the
features and classes of the contract, the configured row limit (maxItems),
the float64 range, and one error body for every status code the route sends.
A schema fuzzer (tests/integration/test_serving_openapi.py) holds it to that.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

from .contract import CLASSES, FEATURES, MODEL_FILES, SHA256_HEX
from .errors import MethodNotAllowed, http_response
from .settings import max_body_bytes

# The float64 range as exact integers: a decimal literal like 1.7976931348623157e308
# is read by some validators as that decimal, by others as the float (which is
# 1.797...0815e308), and the server's check (body.py) is the exact one.
FLOAT_MAX = int(sys.float_info.max)
_NUMBER = {"type": "number", "minimum": -FLOAT_MAX, "maximum": FLOAT_MAX}
_JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _not_ready() -> dict[str, Any]:
    return {"description": "the model failed its start-up checks; reason says why", "content": {_JSON: {"schema": {"$ref": "#/components/schemas/NotReady"}}}}


def _schemas(max_rows: int) -> dict[str, Any]:
    row_list = {"type": "array", "items": _NUMBER, "minItems": len(FEATURES), "maxItems": len(FEATURES), "description": f"the four measurements in cm, in this order: {', '.join(FEATURES)}"}
    row_object = {
        "type": "object",
        "properties": {name: _NUMBER for name in FEATURES},
        "required": list(FEATURES),
        "additionalProperties": False,
        "description": "the four measurements in cm, by name (any key order)",
    }
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    nullable_object = {"type": ["object", "null"]}
    return {
        "PredictRequest": {
            "type": "object",
            "properties": {"rows": {"type": "array", "items": {"oneOf": [row_list, row_object]}, "minItems": 1, "maxItems": max_rows}},
            "required": ["rows"],
            "additionalProperties": False,
        },
        "PredictResponse": {
            "type": "object",
            "properties": {
                "predictions": {"type": "array", "items": {"enum": list(CLASSES)}, "minItems": 1, "maxItems": max_rows, "description": "one class name per row, in request order"},
                "probabilities": {
                    "type": "array",
                    "items": {"type": "array", "items": probability, "minItems": len(CLASSES), "maxItems": len(CLASSES)},
                    "minItems": 1,
                    "maxItems": max_rows,
                    "description": "per row, the probability of each class in `classes` order; finite, summing to 1",
                },
                "model_sha256": {"type": "string", "pattern": SHA256_HEX.pattern, "description": "sha256 of the model file that answered"},
                "classes": {"const": list(CLASSES)},
            },
            "required": ["predictions", "probabilities", "model_sha256", "classes"],
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "what is wrong and how to fix it"},
                "row": {"type": "integer", "minimum": 0, "description": "index of the offending row"},
                "field": {"type": "string", "description": "the offending feature, or rows / body / Content-Type"},
            },
            "required": ["error"],
            "additionalProperties": False,
        },
        "NotReady": {
            "type": "object",
            "properties": {"ready": {"const": False}, "reason": {"type": "string"}},
            "required": ["ready", "reason"],
            "additionalProperties": False,
        },
        "Metadata": {
            "type": "object",
            "properties": {
                "ready": {"const": True},
                "sha256": {"type": "string", "pattern": SHA256_HEX.pattern},
                "format": {"enum": sorted(MODEL_FILES)},
                "model_file": {"enum": sorted(MODEL_FILES.values())},
                "estimator": {"type": ["string", "null"]},
                "created_at": {"type": ["string", "null"]},
                "schema_version": {"type": ["integer", "null"]},
                "versions": nullable_object,
                "metrics": nullable_object,
                "params": nullable_object,
                "features": {"const": list(FEATURES)},
                "classes": {"const": list(CLASSES)},
                "predictor": {"type": "string", "description": "fast:<estimator> (numpy path, checked against the estimator) or estimator:<estimator>"},
                "server": {"type": "object", "additionalProperties": {"type": "string"}},
                "quality": {
                    "description": "What the quality gate measured on the artifact's held-out rows (null without a check set)",
                    "type": ["object", "null"],
                    "properties": {
                        "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
                        "rows": {"type": "integer", "minimum": 1},
                        "claimed": {"type": ["number", "null"]},
                        "min_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    },
                    "required": ["accuracy", "rows", "claimed", "min_accuracy"],
                    "additionalProperties": False,
                },
            },
            "required": ["ready", "sha256", "format", "model_file", "features", "classes", "predictor", "server"],
            "additionalProperties": False,
        },
    }


def document(max_rows: int) -> dict[str, Any]:
    limit = max_body_bytes(max_rows)
    predict = {
        "post": {
            "operationId": "predict",
            "summary": "Classify Iris rows",
            "description": (
                f"Up to {max_rows} rows per request (IRISOP_MAX_BATCH_ROWS) and a body of at most {limit} bytes. "
                "Content-Type must be application/json (UTF-8). A duplicate key, a NaN/Infinity literal or a number "
                "outside the float64 range is a 400 naming the row and field."
            ),
            "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
            "responses": {
                "200": {"description": "one class and one probability vector per row", "content": {_JSON: {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                "400": _error("the body is not JSON, not a request object, or a row is malformed (row and field say where)"),
                "405": _error("any method but POST"),
                "408": _error("the whole body did not arrive within IRISOP_BODY_TIMEOUT"),
                "413": _error(f"more than {max_rows} rows, or a body over {limit} bytes (refused before it is read)"),
                "415": _error("Content-Type is missing or not application/json"),
                "503": _error("the model failed its start-up checks"),
                "504": _error("not answered within IRISOP_BODY_TIMEOUT + IRISOP_REQUEST_TIMEOUT (BentoML's backstop)"),
            },
        }
    }
    metadata = {
        "get": {
            "operationId": "metadata",
            "summary": "The model being served",
            "responses": {
                "200": {"description": "model.json's facts and the server's versions", "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Metadata"}}}},
                "405": _error("any method but GET or HEAD"),
                "503": _not_ready(),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "iris_classifier",
            "version": "1",
            "description": "Iris classifier served by irismodel-operator. Probes: GET /livez, GET /readyz (503 with the reason while not ready); Prometheus metrics: GET /metrics.",
        },
        "paths": {"/predict": predict, "/metadata": metadata},
        "components": {"schemas": _schemas(max_rows)},
    }


class OpenAPIRoute:
    """GET/HEAD /docs.json; the document is built once per row limit."""

    def __init__(self, max_rows: Callable[[], int]) -> None:
        self.max_rows = max_rows
        self._cache: tuple[int, bytes] | None = None

    def body(self) -> bytes:
        rows = self.max_rows()
        if self._cache is None or self._cache[0] != rows:
            self._cache = (rows, json.dumps(document(rows)).encode())
        return self._cache[1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", _JSON.encode())]
        if scope["method"] in ("GET", "HEAD"):
            status, body = 200, self.body()
        else:
            status, payload = http_response(MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}: use GET"))
            body = json.dumps(payload).encode()
            headers.append((b"allow", b"GET, HEAD"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
