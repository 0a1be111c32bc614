"""A backend that writes one ``.eml`` file per message into a directory."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..config import ENV_PREFIX
from ..exceptions import ConfigurationError
from ..message import EmailMessage, ValidatedMessage
from ..mime import render
from ..status import SENT, SendStatus
from .base import BaseBackend, addresses

__all__ = ["FileBackend"]


class FileBackend(BaseBackend):
    """Write each message, as sent on the wire, to ``<file_path>/<unique>.eml``.

    ``file_path`` defaults to ``AMSDAL_EMAIL_FILE_PATH``; the directory is
    created if needed. Files are written whole and then renamed into place, so
    a reader never sees half a message.
    """

    def __init__(
        self,
        *,
        fail_silently: bool = False,
        file_path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **options)
        path = file_path if file_path is not None else os.environ.get(ENV_PREFIX + "FILE_PATH")
        if not path:
            raise ConfigurationError(
                "the file backend needs a directory: pass file_path=... or set "
                "AMSDAL_EMAIL_FILE_PATH"
            )
        self.file_path = Path(path)
        if self.file_path.exists() and not self.file_path.is_dir():
            raise ConfigurationError(f"file_path {str(self.file_path)!r} is not a directory")
        try:
            self.file_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create file_path {str(self.file_path)!r}: {exc}"
            ) from exc

    def _deliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        data = render(valid)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(6)}.eml"
        tmp = self.file_path / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.file_path / name)
        return SendStatus.uniform(addresses(valid), SENT)

    async def _adeliver(self, message: EmailMessage, valid: ValidatedMessage) -> SendStatus:
        return await asyncio.to_thread(self._deliver, message, valid)
