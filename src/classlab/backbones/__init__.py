"""Transfer learning's backbones: where a pretrained backbone and its weights come from, one source per file
(torchvision_source.py, timm_source.py, run_source.py: an earlier classlab run), the plan that turns one into a
preprocessing contract (plan.py), the torch hub cache read without torch (hub_cache.py), cached frozen
features (features.py) and transfer's options (config.py). The network itself is the registry's ``transfer``
family (``classlab.models.transfer``); the ``classlab transfer`` pipeline is ``classlab.commands.transfer``.

Names are imported lazily: reading ``TransferConfig`` (the CLI's flags) does not import torch.
"""

from ..lazy import lazy_exports

_NAMES = {"TransferConfig": ".config", "BackbonePlan": ".plan", "plan_backbone": ".plan"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES)
