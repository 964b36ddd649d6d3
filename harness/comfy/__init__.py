"""ComfyUI's own rules, reproduced offline: node catalogues (``catalogue``), prompt validation per
version (``validator``), UI-workflow conversion as the web frontend does it (``convert``), which
models/ folder a loader reads (``modelfiles``), which pack provides a class (``packs``), and loading
workflows in either format (``workflows``)."""
