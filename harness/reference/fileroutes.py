"""The file routes of the reference endpoint: ``GET /view`` and ``POST /upload/image``, with ComfyUI
0.3.64's status rules (400 bad name, 403 subfolder escape, 404 missing) and response headers.
"""

from __future__ import annotations

import mimetypes
from io import BytesIO
from pathlib import Path

from aiohttp import web
from PIL import Image

from harness.reference.state import STATE

__all__ = ["file_routes"]

file_routes = web.RouteTableDef()

# Served as downloads so a browser never renders them (ComfyUI's list).
_DOWNLOAD_ONLY = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}


def _image_response(img: Image.Image, filename: str, image_format: str = "png", quality: int = 90) -> web.Response:
    buffer = BytesIO()
    img.save(buffer, format=image_format.upper() if image_format == "png" else image_format, quality=quality)
    return web.Response(
        body=buffer.getvalue(),
        content_type=f"image/{image_format}",
        headers={"Content-Disposition": f'filename="{filename}"'},
    )


def _converted(path: Path, filename: str, query) -> web.Response:
    """``?preview=webp;90`` or ``?channel=rgb|a``: the image re-encoded as ComfyUI does."""
    channel = query.get("channel", "")
    with Image.open(path) as img:
        if "preview" in query:
            preview = query["preview"].split(";")
            image_format = preview[0] if preview[0] in ("webp", "jpeg") and "a" not in channel else "webp"
            quality = int(preview[-1]) if preview[-1].isdigit() else 90
            converted = img.convert("RGB") if image_format == "jpeg" or channel == "rgb" else img.copy()
            return _image_response(converted, filename, image_format, quality)
        if channel == "rgb":
            return _image_response(img.convert("RGB"), filename)
        alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
        alpha_image = Image.new("RGBA", img.size)
        alpha_image.putalpha(alpha)
        return _image_response(alpha_image, filename)


@file_routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    query = request.rel_url.query
    if "filename" not in query:
        return web.Response(status=404)
    found = request.app[STATE].storage.view_path(query["filename"], query.get("type", "output"), query.get("subfolder"))
    if isinstance(found, int):
        return web.Response(status=found)
    filename = found.name
    if "preview" in query or query.get("channel", "rgba") in ("rgb", "a"):
        return _converted(found, filename, query)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if content_type in _DOWNLOAD_ONLY:
        content_type = "application/octet-stream"
    return web.FileResponse(found, headers={"Content-Disposition": f'filename="{filename}"', "Content-Type": content_type})


@file_routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    post = await request.post()
    image = post.get("image")
    if not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    kind = post.get("type")
    subfolder = str(post.get("subfolder", ""))
    overwrite = post.get("overwrite") in ("true", "1")
    name = request.app[STATE].storage.save_upload(kind, subfolder, image.filename, image.file.read(), overwrite)
    if name is None:
        return web.Response(status=400)
    return web.json_response({"name": name, "subfolder": subfolder, "type": kind or "input"})
