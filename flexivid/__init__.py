"""flexivid: FlexiDiT for video diffusion transformers.

Public API (imported on first use, so ``import flexivid`` stays fast)::

    from flexivid import FlexiVideoDiT, ModeSpec, flexify, load_model, save_model, VideoPipeline, load_config
"""
__version__ = "0.1.0"

_EXPORTS = {
    "FlexiVideoDiT": "flexivid.models.dit",
    "MODEL_PRESETS": "flexivid.presets",
    "ModeSpec": "flexivid.models.modes",
    "flexify": "flexivid.models.modes",
    "load_model": "flexivid.models.serialization",
    "save_model": "flexivid.models.serialization",
    "forward_flops": "flexivid.models.flops",
    "VideoPipeline": "flexivid.pipeline",
    "load_config": "flexivid.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flexivid' has no attribute {name!r}")
