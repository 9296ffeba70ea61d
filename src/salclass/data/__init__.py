"""salclass.data: the packed image store, its saliency maps, and the loader.

See docs/ARCHITECTURE.md section 1 for the on-disk format and the API.
"""

from salclass.data.store import SaliencyMapWriter, Store, default_crop

__all__ = ["Store", "StoreLoader", "SaliencyMapWriter", "Batch", "default_crop"]


def __getattr__(name: str):
    # The loader pulls in torch; `salclass prepare` and `inspect` should not pay for that.
    if name in ("StoreLoader", "Batch"):
        from salclass.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'salclass.data' has no attribute {name!r}")
