"""The reference endpoint at scale: a 1,000-node chain in a server process of bounded memory, and save
names that ComfyUI's rules give without listing the output folder per save (issue 13 item 4).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import ROOT, wait_history
from harness.reference.storage import Storage


def _peak_rss_mb(pid: int) -> float:
    """A process's peak resident set size (VmHWM, in kB) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def _chain(length: int) -> dict:
    """``length`` nodes: EmptyImage → ImageInvert … → SaveImage, and a SaveImage half way down.

    Listed first, the middle output is validated first, so the final one's walk stops at the nodes
    already validated: a straight chain of 985 levels or more exceeds the real server's recursion limit
    and is refused (harness.comfy.validator), as it is on ComfyUI.
    """
    middle = length // 2
    chain = {
        "middle": {"class_type": "SaveImage", "inputs": {"images": [str(middle), 0], "filename_prefix": "middle"}},
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    }
    for i in range(2, length - 1):
        chain[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    chain["end"] = {"class_type": "SaveImage", "inputs": {"images": [str(length - 2), 0], "filename_prefix": "chain"}}
    return chain


def test_a_1000_node_chain_runs_in_a_server_under_200_mb(tmp_path: Path):
    profile = {"name": "scale", "catalogue": str(ROOT / "fixtures/object_info/stock.json"), "inputs": ["example.png"],
               "execution": {"node_seconds": 0}}
    (tmp_path / "scale.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "--profile", str(tmp_path / "scale.yaml"),
                             "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" listening on ")[1].split()[0]
        chain = _chain(1000)
        assert len(chain) == 1000
        with httpx.Client(base_url=url, timeout=30) as client:
            reply = client.post("/prompt", json={"prompt": chain})
            assert reply.status_code == 200 and reply.json()["node_errors"] == {}, reply.text
            entry = wait_history(client, reply.json()["prompt_id"], timeout=30)
        peak = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert entry["status"]["status_str"] == "success"
    assert [entry["outputs"][node]["images"][0]["filename"] for node in ("middle", "end")] == [
        "middle_00001_.png", "chain_00001_.png"]
    assert peak < 200, f"the server peaked at {peak:.0f} MB"


@pytest.fixture
def storage():
    folders = Storage()
    yield folders
    folders.close()


def test_save_counters_follow_the_files_there_as_get_save_image_path_reads_them(storage: Storage):
    # map_filename: "<base>_<digits>_..." counts int(digits), and 0 where no number follows.
    for name in ("p_00003_.png", "p_00010_extra.png", "p_x.png", "p_b_00007_.png", "q_00042_.png"):
        assert storage.save_upload("output", "", name, name.encode(), overwrite=False) == name
    storage.save_upload("output", "sub", "p_00020_.png", b"deeper", overwrite=False)
    assert storage.next_save_path("output", "p")[1:] == ("p", "", 11)
    assert storage.next_save_path("output", "p_b")[3] == 8
    assert storage.next_save_path("output", "sub/p")[2:] == ("sub", 21)
    assert storage.next_save_path("temp", "p")[3] == 1
    # A subfolder is an entry of its parent, as os.listdir shows it.
    storage.save_upload("output", "r_00004_", "x.png", b"in a folder", overwrite=False)
    assert storage.next_save_path("output", "r")[3] == 5
    listed = storage.listing()
    assert {"p_00003_.png", "sub/p_00020_.png", "r_00004_/x.png"} <= listed["output"]
    assert listed["input"] == set() and listed["temp"] == set()


def test_a_save_lists_no_folder(storage: Storage, monkeypatch):
    for index in range(3):
        storage.save_upload("output", "", f"ComfyUI_{index:05}_.png", b"x" * index, overwrite=False)

    def listed(*_args, **_kwargs):
        raise AssertionError("a save listed a folder")

    for module, name in ((os, "listdir"), (os, "scandir"), (Path, "iterdir"), (Path, "rglob"), (Path, "glob")):
        monkeypatch.setattr(module, name, listed)
    for expected in (3, 4):
        folder, base, subfolder, counter = storage.next_save_path("output", "ComfyUI")
        assert counter == expected
        (folder / f"{base}_{counter:05}_.png").write_bytes(b"saved")
        storage.added("output", f"{base}_{counter:05}_.png")
