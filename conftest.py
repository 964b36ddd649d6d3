"""Project root conftest: the comfy-compat plugin is loaded through its pytest11 entry point.

Put project-wide fixtures here; the compatibility cases live in cases/, the harness's own tests in
tests/ (``pytest tests``).
"""
