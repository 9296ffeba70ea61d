"""Eye-fixation data: one reader per layout, ground-truth maps, the fixed OSIE split.

    ds = open_fixation_data("../shared/data/osie").split("test")
    ds.image(0), ds.fixation_points(0), ds.density(0)

Each reader is a `FixationDataset` subclass registered with `@register(name)`
(readers.py); `open_fixation_data` asks them in registration order whether a
folder is theirs. Readers of data that brings its own ground-truth maps
(MIT1003, CAT2000, the generic images/ + maps/ folder) use those maps; readers
of fixation points (OSIE, SALICON, the generic points reader) blur the points
themselves (blur.py says how wide).

points.py     the fixation type and the read options
blur.py       ground truth from points: one degree of visual angle
files.py      images, maps, point lists and MATLAB files
dataset.py    the interface every reader implements, points or maps
readers.py    the readers and `open_fixation_data`
splits.py     OSIE's recorded split, split.json, the seeded rule
"""

from __future__ import annotations

from salclass.saliency.fixations.blur import OSIE_SIGMA, SALICON_SIGMA, VIEW_DEGREES, blur_fixations
from salclass.saliency.fixations.dataset import FixationDataset
from salclass.saliency.fixations.files import load_rgb, resize_map
from salclass.saliency.fixations.points import Fixations, ReadOptions, read_options
from salclass.saliency.fixations.readers import open_fixation_data, register
from salclass.saliency.fixations.splits import SPLITS, make_split, osie_split

__all__ = ["OSIE_SIGMA", "SALICON_SIGMA", "SPLITS", "VIEW_DEGREES", "FixationDataset", "Fixations", "ReadOptions",
           "blur_fixations", "load_rgb", "make_split", "open_fixation_data", "osie_split",
           "read_options", "register", "resize_map"]
