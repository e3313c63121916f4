"""Imports every model family so that its variants register themselves.

A family whose module is missing (e.g. during development) is simply not listed.
"""

import importlib

FAMILY_MODULES = (
    "edgepose.models.litepose",
    "edgepose.models.litehrnet",
    "edgepose.models.litehrnet_seg",
    "edgepose.models.higherhrnet",
    "edgepose.models.efficienthrnet",
)

for _module in FAMILY_MODULES:
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as exc:
        if exc.name != _module:
            raise
