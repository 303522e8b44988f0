"""The demo's tasks: render thumbnails, send e-mails to a local SMTP sink, aggregate numbers
(and combine many aggregates in a chord callback).

Run a worker for them with ``streamtasks worker streamtasks.demo.tasks:app``; the bootstrap
address comes from ``STREAMTASKS_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import enum
import os
import smtplib
import statistics
import struct
import zlib
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from streamtasks import App

app = App(
    "demo",
    namespace=os.environ.get("STREAMTASKS_NAMESPACE", "demo"),
    # Low-latency consumer settings; fine on any Kafka, and needed for snappy group joins and
    # fetches on the embedded dev broker.
    consumer_config={
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "fetch.wait.max.ms": 10,
    },
    partitions=6,
)


class Pattern(enum.Enum):
    GRADIENT = "gradient"
    CHECKER = "checker"
    RINGS = "rings"


@dataclass(frozen=True)
class Image:
    name: str
    width: int
    height: int
    pattern: Pattern


@dataclass(frozen=True)
class Thumbnail:
    name: str
    width: int
    height: int
    png_bytes: int
    path: str


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class Stats:
    count: int
    mean: float
    median: float
    maximum: float


def _pixel(pattern: Pattern, x: int, y: int) -> int:
    if pattern is Pattern.GRADIENT:
        return (x * 3 + y * 5) & 0xFF
    if pattern is Pattern.CHECKER:
        return 255 if ((x // 8) + (y // 8)) % 2 else 30
    return ((x - 64) ** 2 + (y - 48) ** 2) // 16 & 0xFF


def _png(width: int, height: int, gray: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + gray[y * width : (y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@app.task(name="demo.render_thumbnail", queue="media")
def render_thumbnail(image: Image, max_side: int = 32) -> Thumbnail:
    """Render a procedural grayscale image, downscale it (box filter), write a PNG."""
    if image.width <= 0 or image.height <= 0:
        raise ValueError(f"image {image.name!r} has no pixels ({image.width}x{image.height})")
    src = [_pixel(image.pattern, x, y) for y in range(image.height) for x in range(image.width)]
    scale = max(1, max(image.width, image.height) // max_side)
    tw, th = image.width // scale, image.height // scale
    out = bytearray(tw * th)
    for ty in range(th):
        for tx in range(tw):
            total = 0
            for dy in range(scale):
                row = (ty * scale + dy) * image.width + tx * scale
                total += sum(src[row : row + scale])
            out[ty * tw + tx] = total // (scale * scale)
    png = _png(tw, th, bytes(out))
    folder = Path(os.environ.get("STREAMTASKS_DEMO_OUT", "/tmp/streamtasks-demo"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image.name}.png"
    path.write_bytes(png)
    return Thumbnail(image.name, tw, th, len(png), str(path))


@app.task(name="demo.send_email", queue="emails")
def send_email(email: Email) -> str:
    """Deliver an e-mail through the SMTP server at STREAMTASKS_DEMO_SMTP (host:port)."""
    if "@" not in email.to:
        raise ValueError(f"invalid recipient address {email.to!r}")
    host, _, port = os.environ.get("STREAMTASKS_DEMO_SMTP", "127.0.0.1:25").rpartition(":")
    msg = EmailMessage()
    msg["From"] = "demo@streamtasks.local"
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg.set_content(email.body)
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        smtp.send_message(msg)
    return f"sent to {email.to}"


@app.periodic(every=timedelta(minutes=1), name="demo.heartbeat")
def heartbeat() -> str:
    """A periodic task: `streamtasks scheduler streamtasks.demo.tasks:app` publishes it."""
    return "alive"


@app.task(name="demo.aggregate")
def aggregate(values: list[float]) -> Stats:
    """Summarise a batch of numbers."""
    if not values:
        raise ValueError("cannot aggregate an empty batch")
    return Stats(len(values), statistics.fmean(values), statistics.median(values), max(values))


@app.task(name="demo.combine")
def combine(parts: list[Stats]) -> Stats:
    """A chord callback: combine the summaries of many batches (median: of the batch medians)."""
    count = sum(p.count for p in parts)
    if not count:
        raise ValueError("nothing to combine")
    mean = sum(p.mean * p.count for p in parts) / count
    return Stats(
        count, mean, statistics.median(p.median for p in parts), max(p.maximum for p in parts)
    )
