"""Model images, what the running operator assembles: the verified artifact
layered onto a runtime image through the registry API (``model``, ``layer``,
``registry``, ``ecr``). The runtime image itself is built by
``irisop_deploy.images`` (`irisop images runtime`), never by the operator."""
from .model import content_tag, ensure_model_image

__all__ = ["content_tag", "ensure_model_image"]
