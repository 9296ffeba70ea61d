"""The classifier family of the thesis: AlexNet and the ways of feeding it a saliency map.

    from salclass.models import create, list_models, describe_models, transplant
    m = create("RGBS", num_classes=10, input_size=128)
    logits = m(image, saliency)
"""

from salclass.models.alexnet import BLOCK_ORDERS, DEFAULT_BLOCK_ORDER, SaliencyAlexNet, Spec, spatial_sizes
from salclass.models.registry import (CONST_SUFFIX, DEFAULT_CONST_VALUE, create, describe_models, get_variant,
                                      list_models, register)
from salclass.models.surgery import INITS, TransplantReport, transplant

__all__ = [
    "BLOCK_ORDERS", "DEFAULT_BLOCK_ORDER", "CONST_SUFFIX", "DEFAULT_CONST_VALUE", "INITS", "SaliencyAlexNet", "Spec", "TransplantReport", "create",
    "describe_models", "get_variant", "list_models", "register", "spatial_sizes", "transplant",
]
