"""A tiny headless-browser driver for tests: Chromium over the DevTools protocol, on trio.

Starts ``chromium --headless --remote-debugging-port=0`` with a throw-away profile, reads
the port Chromium chose from the profile's ``DevToolsActivePort`` file, opens one page
target and talks to it over one WebSocket (``trio-websocket``, which py-libp2p already
depends on) in the protocol's flat session mode. Commands are sent one at a time and their
answers awaited (events are skipped), which is all a page test needs::

    async with headless_chromium() as page:
        await page.navigate("http://127.0.0.1:8000/explorer")
        rows = await page.wait_for("document.querySelectorAll('tr').length", timeout=10)
        png = await page.screenshot()

:func:`find_chromium` returns None where no browser is installed; tests skip then. Every
wait is bounded; the browser process and its profile are removed on exit.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from repp2p.errors import ReppError

#: binaries tried in order (Debian's package is ``chromium``); REPP2P_CHROMIUM overrides
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(ReppError):
    """The browser did not start, a command failed, or a page script threw."""


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$REPP2P_CHROMIUM`` first), or None when none is found."""
    override = os.environ.get("REPP2P_CHROMIUM")
    if override:
        return shutil.which(override)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One browser tab, driven over a DevTools session (see :func:`headless_chromium`)."""

    def __init__(self, ws: WebSocketConnection, session: str, timeout: float) -> None:
        self._ws = ws
        self._session = session
        self._timeout = timeout
        self._ids = itertools.count(1000)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one DevTools command on the page; returns its ``result``."""
        return await _command(self._ws, self._ids, method, params, self._session, self._timeout)

    async def navigate(self, url: str) -> None:
        """Load ``url`` and wait until its document has loaded."""
        answer = await self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"navigating to {url}: {answer['errorText']}")
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises are awaited)."""
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"page script failed: {text}")
        return answer.get("result", {}).get("value")

    async def wait_for(self, expression: str, *, timeout: float | None = None) -> Any:
        """Evaluate ``expression`` every 0.1 s until it is truthy; returns that value.

        Raises:
            trio.TooSlowError: still falsy after ``timeout`` seconds (default: the page's).
        """
        with trio.fail_after(self._timeout if timeout is None else timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await trio.sleep(0.1)

    async def screenshot(self, width: int = 1400, height: int = 900) -> bytes:
        """A PNG of the page at ``width`` x ``height`` CSS pixels."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        answer = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(answer["data"])


async def _command(
    ws: WebSocketConnection,
    ids: itertools.count,
    method: str,
    params: dict[str, Any],
    session: str | None,
    timeout: float,
) -> dict[str, Any]:
    """Send one command and wait for the answer with its id (events on the way are
    dropped: nothing here subscribes to them)."""
    request_id = next(ids)
    message: dict[str, Any] = {"id": request_id, "method": method, "params": params}
    if session is not None:
        message["sessionId"] = session
    with trio.fail_after(timeout):
        await ws.send_message(json.dumps(message))
        while True:
            answer = json.loads(await ws.get_message())
            if answer.get("id") != request_id:
                continue
            if "error" in answer:
                raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
            return answer.get("result", {})


async def _devtools_url(profile: Path, process: trio.Process, timeout: float) -> str:
    """The browser's DevTools WebSocket URL, from the port file Chromium writes at start."""
    port_file = profile / "DevToolsActivePort"
    with trio.fail_after(timeout):
        while True:
            if process.returncode is not None:
                raise BrowserError(f"the browser exited at start (status {process.returncode})")
            try:
                lines = port_file.read_text().split()
            except OSError:
                lines = []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
            await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def headless_chromium(
    binary: str | None = None, *, timeout: float = 30.0
) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page; stopped and its profile removed on exit.

    Args:
        binary: the browser (default: :func:`find_chromium`).
        timeout: seconds allowed for the start and for each command.

    Raises:
        BrowserError: no browser, it did not start, or it refused the session.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise BrowserError("no Chromium binary found (install Debian's chromium)")
    # ignore_cleanup_errors: a browser child still exiting may write into the profile
    with tempfile.TemporaryDirectory(
        prefix="repp2p-chromium-", ignore_cleanup_errors=True
    ) as folder:
        profile = Path(folder)
        args = [
            binary,
            "--headless",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers give /dev/shm a few MiB
            "--disable-extensions",
            "--window-size=1400,900",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
        process = await trio.lowlevel.open_process(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            url = await _devtools_url(profile, process, timeout)
            connection = open_websocket_url(
                url,
                message_queue_size=64,
                max_message_size=64 * 1024 * 1024,  # screenshots arrive as one message
                connect_timeout=timeout,
                disconnect_timeout=5,
            )
            async with connection as ws:
                ids = itertools.count(1)
                target = await _command(
                    ws, ids, "Target.createTarget", {"url": "about:blank"}, None, timeout
                )
                attached = await _command(
                    ws,
                    ids,
                    "Target.attachToTarget",
                    {"targetId": target["targetId"], "flatten": True},
                    None,
                    timeout,
                )
                page = Page(ws, attached["sessionId"], timeout)
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                yield page
        finally:
            with trio.move_on_after(5) as waited:
                waited.shield = True
                process.terminate()
                await process.wait()
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
