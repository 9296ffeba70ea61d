"""Saliency models: a registry by name, the predictor wrapper, checkpoints.

    create("fcn")                 # a fresh model of a registered architecture
    load_predictor("default")     # the shipped network; or any name; or a checkpoint path

Importing this package imports every model family, which registers its models.
"""

from __future__ import annotations

from salclass.saliency.models import baselines, ensemble, fcn, salnet  # noqa: F401  (they register)
from salclass.saliency.models.base import Predictor, SaliencyModel
from salclass.saliency.models.checkpoints import (CHECKPOINT_TYPE, DEFAULT_MODEL, TRUNK_CHECKPOINT_TYPE, load_model,
                                                  load_predictor, load_trunk, model_checkpoint, shipped_weights,
                                                  trunk_checkpoint)
from salclass.saliency.models.registry import create, describe_models, list_models, model_class, register

__all__ = ["CHECKPOINT_TYPE", "DEFAULT_MODEL", "TRUNK_CHECKPOINT_TYPE", "Predictor", "SaliencyModel", "create",
           "describe_models", "list_models", "load_model", "load_predictor", "load_trunk", "model_checkpoint",
           "model_class", "register", "shipped_weights", "trunk_checkpoint"]
