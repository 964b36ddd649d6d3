"""The reference endpoint's files on disk: ComfyUI's ``input/``, ``output/`` and ``temp/`` folders in a
temporary directory, with the path rules of ComfyUI's ``folder_paths``, ``/view`` and ``/upload/image``.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from harness.comfy.modelfiles import INPUT_FOLDER
from harness.reference.profile import InputImage

__all__ = ["FOLDER_TYPES", "Storage"]

FOLDER_TYPES = ("input", "output", "temp")


class Storage:
    """One server's folders; removed by ``close()``."""

    def __init__(self, inputs: Iterable[InputImage] = (), *, output_megabytes: float | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="comfy-compat-ref-"))
        self.dirs = {kind: self.root / kind for kind in FOLDER_TYPES}
        for folder in self.dirs.values():
            folder.mkdir()
        self._files: dict[str, set[str]] = {kind: set() for kind in FOLDER_TYPES}
        """Relative paths of every file per folder type. The root is new and every write goes through
        this object, so the folders are never walked: each write adds its file (``added``)."""
        self._counters: dict[tuple[str, str, str], int] = {}
        """Per (folder type, subfolder, base name): the highest counter ``get_save_image_path`` would read
        off that subfolder's entries, kept up to date by ``added`` so a save lists no folder."""
        self.save_lock = threading.Lock()
        """Held from choosing a save's file name to writing it: with capacity > 1 workers save at once
        (in threads), and two saves must never pick the same counter. Uploads hold it too."""
        self.without_metadata: set[str] = set()
        """Client ids whose saved PNGs carry no prompt/workflow text: worker-comfyui's start.sh runs
        ComfyUI with ``--disable-metadata`` (seen on a real 5.8.5 worker), the native server does not."""
        for image in inputs:
            Image.new("RGB", (image.width, image.height), (128, 128, 128)).save(self.dirs["input"] / image.name)
            self.added("input", image.name)
        self.large_output: Path | None = None
        """With ``output_megabytes``: the noise PNG every SaveImage output is a hard link to."""
        if output_megabytes is not None:
            self.large_output = self.root / "large-output.png"
            write_noise_png(self.large_output, output_megabytes)

    def place_large_output(self, target: Path) -> None:
        """Put the large output at ``target``: a hard link (a copy where links are refused), so a save costs nothing."""
        assert self.large_output is not None
        try:
            os.link(self.large_output, target)
        except OSError:
            shutil.copyfile(self.large_output, target)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def listing(self) -> dict[str, set[str]]:
        """Relative paths of every file per folder type, as validation and LoadImage see them.

        The live sets, not copies (read them, never change them): every POST /prompt asks, and a copy
        of 20,000 saved outputs per prompt would make the server's cost grow with its history.
        """
        return {INPUT_FOLDER if kind == "input" else kind: names for kind, names in self._files.items()}

    def added(self, kind: str, relative: str) -> None:
        """A file was written under ``kind`` (``input``, ``output``, ``temp``): listed, and counted for
        every base name its path's entries (its subfolders too, as ``os.listdir`` shows them) match.
        Callers hold ``save_lock``."""
        self._files[kind].add(relative)
        subfolder = ""
        for entry in relative.split("/"):
            for base, counter in _entry_counters(entry):
                key = (kind, subfolder, base)
                self._counters[key] = max(counter, self._counters.get(key, counter))
            subfolder = os.path.join(subfolder, entry)

    def annotated_path(self, name: str) -> Path:
        """``folder_paths.get_annotated_filepath``: "x.png", "sub/x.png" or "x.png [output]"."""
        for kind in FOLDER_TYPES:
            suffix = f" [{kind}]"
            if name.endswith(suffix):
                return self.dirs[kind] / name[: -len(suffix)]
        return self.dirs["input"] / name

    def view_path(self, filename: str, kind: str, subfolder: str | None) -> Path | int:
        """The file ``/view`` serves, or the status it answers instead (ComfyUI's ``view_image``)."""
        for annotated in FOLDER_TYPES:
            suffix = f" [{annotated}]"
            if filename.endswith(suffix):
                filename, kind = filename[: -len(suffix)], annotated
                break
        if not filename:
            return 400
        if filename[0] == "/" or ".." in filename:
            return 400
        if kind not in self.dirs:
            return 400
        folder = str(self.dirs[kind])
        if subfolder is not None:
            full = os.path.join(folder, subfolder)
            if os.path.commonpath((os.path.abspath(full), folder)) != folder:
                return 403
            folder = full
        path = Path(folder) / os.path.basename(filename)
        return path if path.is_file() else 404

    def save_upload(self, kind: str | None, subfolder: str, filename: str, data: bytes, overwrite: bool) -> str | None:
        """Store an uploaded file like ComfyUI's ``image_upload``; its stored name, or None on a path escape.

        Without overwrite a clash is renamed "<stem> (1)<ext>", unless the content is the same (#3465).
        An unknown ``kind`` raises as ComfyUI's ``get_dir_by_type`` does (the server answers 500).
        """
        upload_dir = str(self.dirs[kind or "input"])
        full_folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(full_folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return None
        os.makedirs(full_folder, exist_ok=True)
        stem, ext = os.path.splitext(filename)
        duplicate = False
        # Under the save lock: a save choosing its counter meanwhile must see this file.
        with self.save_lock:
            if not overwrite:
                i = 1
                while os.path.exists(filepath):
                    if _sha256(filepath) == hashlib.sha256(data).hexdigest():
                        duplicate = True
                        break
                    filename = f"{stem} ({i}){ext}"
                    filepath = os.path.join(full_folder, filename)
                    i += 1
            if not duplicate:
                Path(filepath).write_bytes(data)
                self.added(kind or "input", os.path.relpath(filepath, upload_dir))
        return filename

    def next_save_path(self, kind: str, prefix: str) -> tuple[Path, str, str, int]:
        """``folder_paths.get_save_image_path``: the folder, base name, subfolder and first free counter.

        ComfyUI lists the folder for the counter; the reference reads the one ``added`` kept (the caller
        holds ``save_lock``). ComfyUI also expands %date% style tokens in the prefix; the reference
        keeps the prefix literal.
        """
        subfolder = os.path.dirname(os.path.normpath(prefix))
        base = os.path.basename(os.path.normpath(prefix))
        folder = self.dirs[kind] / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        highest = self._counters.get((kind, subfolder, base))
        return folder, base, subfolder, 1 if highest is None else highest + 1


def _entry_counters(entry: str) -> Iterator[tuple[str, int]]:
    """``get_save_image_path``'s ``map_filename`` for every base name a folder entry matches: the entry
    "<base>_<digits>_..." has counter int(digits), or 0 where no number follows the underscore
    ("a_b_00001_.png": 0 for "a", 1 for "a_b", 0 for "a_b_00001")."""
    for i, char in enumerate(entry):
        if char == "_":
            try:
                yield entry[:i], int(entry[i + 1:].split("_")[0])
            except ValueError:
                yield entry[:i], 0


def write_noise_png(path: Path, megabytes: float) -> None:
    """A square RGB PNG of random pixels, about ``megabytes`` MB (10^6 bytes): noise does not compress."""
    side = max(1, math.ceil(math.sqrt(megabytes * 1_000_000 / 3)))
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, compress_level=0)


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()
