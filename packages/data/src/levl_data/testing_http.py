"""A real HTTP image server on 127.0.0.1 for fetch tests: every way a web image can fail.

Each path names what the server does, so a test knows by construction how many fetches must
succeed and why each other one fails, and can compare that with the manifest's stats:

    /ok/<i>.jpg        200, a <w>x<h> JPEG (query w, h; default 48x40) in colour i
    /missing/<i>.jpg   404
    /slow/<i>.jpg      sleeps `slow_seconds` before answering (longer than the client timeout)
    /corrupt/<i>.jpg   200 image/jpeg, JPEG magic followed by garbage
    /html/<i>.jpg      200 text/html page (not an image)
    /huge/<i>.jpg      200, a JPEG of `huge_side`^2 pixels (small file, decompression-bomb size)
    /redirect/<i>.jpg  302 to /ok/<i>.jpg
    /checker/<i>.jpg   200, a 64x64 black/white checkerboard of 4-pixel squares (sharp edges,
                       so a blurred region is measurable)
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import PIL.Image

from levl_data.testing import COLORS, CORRUPT_IMAGE


@cache
def jpeg_bytes(index: int, width: int, height: int) -> bytes:
    """A solid JPEG in colour `index` (cached: tests ask for the same few many times)."""
    color = list(COLORS.values())[index % len(COLORS)]
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@cache
def checker_bytes(side: int = 64, square: int = 4) -> bytes:
    """A lossless-looking checkerboard (PNG) whose local contrast a blur visibly removes."""
    grid = (np.indices((side, side)) // square).sum(axis=0) % 2
    buffer = io.BytesIO()
    PIL.Image.fromarray((grid * 255).astype(np.uint8), "L").convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


class ImageServer:
    """Context manager: a threaded http.server on an ephemeral port; `hits` counts paths served."""

    def __init__(self, slow_seconds: float = 3.0, huge_side: int = 4000):
        self.slow_seconds = slow_seconds
        self.huge_side = huge_side
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, kind: str, index: int, **query: int) -> str:
        suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return f"{self.base_url}/{kind}/{index}.jpg{suffix}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's naming
                parsed = urlparse(self.path)
                server._record(parsed.path)
                parts = parsed.path.strip("/").split("/")
                kind = parts[0] if parts else ""
                index = int(parts[1].split(".")[0]) if len(parts) > 1 else 0
                query = {k: int(v[0]) for k, v in parse_qs(parsed.query).items()}
                server._serve(self, kind, index, query)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler, kind: str, index: int, query: dict) -> None:
        if kind == "ok":
            body = jpeg_bytes(index, query.get("w", 48), query.get("h", 40))
            self._reply(handler, 200, "image/jpeg", body)
        elif kind == "redirect":
            handler.send_response(302)
            handler.send_header("Location", f"/ok/{index}.jpg")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif kind == "slow":
            time.sleep(self.slow_seconds)
            self._reply(handler, 200, "image/jpeg", jpeg_bytes(index, 48, 40))
        elif kind == "corrupt":
            self._reply(handler, 200, "image/jpeg", CORRUPT_IMAGE)
        elif kind == "html":
            self._reply(handler, 200, "text/html", b"<html><body>not an image</body></html>")
        elif kind == "checker":
            self._reply(handler, 200, "image/png", checker_bytes())
        elif kind == "huge":
            self._reply(
                handler, 200, "image/jpeg", jpeg_bytes(index, self.huge_side, self.huge_side)
            )
        else:
            self._reply(handler, 404, "text/plain", b"not found")

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass
