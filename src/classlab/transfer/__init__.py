"""Transfer learning's parts: where a pretrained backbone and its weights come from (backbone.py,
weights.py), cached frozen features (features.py) and the options (config.py). The ``classlab
transfer`` pipeline is ``classlab.commands.transfer``; ``classlab.transfer(...)`` is the Python API.

Names are imported lazily: reading ``TransferConfig`` (the CLI's flags) does not import torch.
"""

from ..callable_module import callable_module
from ..lazy import lazy_exports

_NAMES = {"TransferConfig": ".config", "run_transfer": "..commands.transfer", "transfer": "..api"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES)

# classlab.transfer(...) is the API function, and stays callable once this module is imported
# (importing it makes ``classlab.transfer`` the module)
callable_module(__name__, "classlab.api", "transfer")
