"""Rendering alone, no network: messages per second, ours and Django's.

Each repetition builds fresh message objects, then renders each to the bytes
that go on the wire: ``amsdal_mail.mime.render`` for ours, and for Django
what its SMTP backend calls, ``message().as_bytes(linesep="\\r\\n")``. Two
figures per library: rendering only, and building plus rendering (our
constructor validates addresses and headers; Django's does little).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import profiles
from .profiles import Content, Profile


@dataclass(frozen=True)
class Renderer:
    name: str
    label: str
    build: Callable[[Content], Any]
    render: Callable[[Any], bytes]


def _ours_render(message: Any) -> bytes:
    from amsdal_mail.mime import render

    return render(message)


def _django_render(message: Any) -> bytes:
    return bytes(message.message().as_bytes(linesep="\r\n"))


RENDERERS = [
    Renderer("ours", "amsdal_mail render()", profiles.ours, _ours_render),
    Renderer("django", "Django message().as_bytes()", profiles.django, _django_render),
]


def measure(
    profile: Profile, count: int, reps: int, on_tick: Callable[[], None]
) -> dict[str, dict[str, list[float]]]:
    """Return {renderer: {"render": [msgs/s...], "build_render": [...]}}, interleaved."""
    contents = [Content(profile, i) for i in range(count)]
    results: dict[str, dict[str, list[float]]] = {
        r.name: {"render": [], "build_render": []} for r in RENDERERS
    }
    for r in RENDERERS:  # warm-up: imports, caches, mimetypes
        r.render(r.build(contents[0]))
    for rep in range(reps):
        order = RENDERERS[rep % 2 :] + RENDERERS[: rep % 2]
        for r in order:
            on_tick()
            gc.collect()
            t0 = time.perf_counter()
            messages = [r.build(c) for c in contents]
            t1 = time.perf_counter()
            for m in messages:
                r.render(m)
            t2 = time.perf_counter()
            results[r.name]["render"].append(count / (t2 - t1))
            results[r.name]["build_render"].append(count / (t2 - t0))
            del messages
    return results
