"""FlexiDiT for transformers flexivid did not write (diffusers models).

``flexivid.integrations.wan``: diffusers' ``WanTransformer3DModel`` (Wan 2.1 / 2.2). diffusers is imported only by
the modules that need it, so ``import flexivid`` works without it.
"""
