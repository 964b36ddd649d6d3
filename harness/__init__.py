"""comfy-compat: replay ComfyUI workflows against endpoints, classify every failure, write a support matrix.

Where things live: ``validator`` (ComfyUI's prompt validation offline), ``classify`` (native shapes →
outcomes), ``preflight`` and ``packs`` (forecast and remedies), ``providers/`` (one module per endpoint
kind), ``engine`` (cells), ``report/`` (matrix.json, matrix.md), ``plugin`` (pytest), ``reference/`` (the
embedded reference endpoint), ``cli`` (``comfy-compat``).
"""
