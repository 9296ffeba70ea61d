"""salclass: does predicted visual saliency make a CNN image classifier better?"""

__version__ = "0.1.0"
