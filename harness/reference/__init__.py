"""The embedded reference endpoint: a local server that answers like ComfyUI 0.3.64 for a profile.

Import from the submodules: ``profile`` (Profile, load_profile), ``server`` (ReferenceServer,
running_server, create_app). They are not re-exported here so importing a profile does not load aiohttp.
"""

from __future__ import annotations

__all__: list[str] = []
