"""rbench: ResNet deployment and benchmarking.

The Python API mirrors the CLI:

>>> from rbench import create_model, export_artifact, ModelConfig
>>> result = export_artifact(ModelConfig("resnet18"), out="artifacts")
"""

from __future__ import annotations

from rbench.errors import ArtifactError, BadInputError, EnvironmentProblem, ParityError, RbenchError

__all__ = [
    "ArtifactError",
    "BadInputError",
    "BuildConfig",
    "EnvironmentProblem",
    "ModelConfig",
    "ParityError",
    "RbenchError",
    "build_engine",
    "create_model",
    "export_artifact",
    "list_models",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("create_model", "list_models"):
        from rbench import models

        return getattr(models, name)
    if name == "ModelConfig":
        from rbench.models import ModelConfig

        return ModelConfig
    if name == "export_artifact":  # the exporter with every precision's parity checked and INT8 accuracy control
        from rbench.bench.exporting import export_artifact

        return export_artifact
    if name in ("BuildConfig", "build_engine"):
        from rbench.export import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'rbench' has no attribute {name!r}")
