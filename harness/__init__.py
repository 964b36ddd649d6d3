"""comfy-compat: replay ComfyUI workflows against endpoints, classify every failure, write a support matrix.

Where things live: ``comfy/`` (ComfyUI's own rules: catalogues, validation, UI conversion, models,
packs), ``run/`` (cases, endpoints, outcomes, classification, preflight, the engine), ``providers/`` (one
module per endpoint kind), ``report/`` (matrix.json, Markdown, HTML, verdict, drift), ``reference/`` (the
embedded reference endpoint), ``plugin`` (pytest), ``cli`` (``comfy-compat``).
"""
