"""Images: the heavy BentoML runtime image (``runtime``) and the light,
per-model-version image assembled through the registry API (``model``)."""
from .model import content_tag, ensure_model_image

__all__ = ["content_tag", "ensure_model_image"]
