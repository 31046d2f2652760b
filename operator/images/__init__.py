"""Images: the heavy BentoML runtime image (``runtime``) and the light,
per-model-version image assembled through the registry API (``model``)."""
