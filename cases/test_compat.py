"""Every case × endpoint as one test; the comfy-compat plugin parametrises ``compat_cell``."""


def test_compat(compat_cell):
    assert compat_cell.ok, compat_cell.summary()
