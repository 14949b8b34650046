"""Drive headless Chromium through the DevTools protocol (clicks, typing, file inputs, downloads, reloads).

``tests/test_qc.py`` runs Chromium once per page (``--dump-dom``, ``--screenshot``); an interactive
page (the QC decisions) needs a live browser: :class:`Browser` starts Chromium with
``--remote-debugging-port=0``, reads the port from ``DevToolsActivePort`` and talks to the page and
the browser targets over their websockets (aiohttp, already a dependency through Ray).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def chromium() -> str:
    """The Chromium executable; CI=true fails without one, elsewhere the test is skipped."""
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium not found (apt-get install chromium)")
        pytest.skip("chromium not installed")
    return exe


class Browser:
    """One headless Chromium with one page; every method blocks until the protocol answers."""

    def __init__(self, profile: Path, downloads: Path) -> None:
        self.profile, self.downloads = Path(profile), Path(downloads)
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--allow-file-access-from-files",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port, browser_path = port_file.read_text().splitlines()[:2]
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.loop.run_until_complete(self._connect(int(port), browser_path))

    async def _connect(self, port: int, browser_path: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in await r.json(content_type=None) if t["type"] == "page"]
        self.page = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self.browser = await self.session.ws_connect(f"ws://127.0.0.1:{port}{browser_path}", max_msg_size=0)

    async def _call(self, ws, method: str, params: dict) -> dict:
        i = next(self.ids)
        await ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = json.loads((await asyncio.wait_for(ws.receive(), 60)).data)
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def call(self, method: str, target: str = "page", **params: Any) -> dict:
        """One protocol command on the page (or ``target="browser"``)."""
        ws = self.page if target == "page" else self.browser
        return self.loop.run_until_complete(self._call(ws, method, params))

    def eval(self, expr: str) -> Any:
        """Value of a JavaScript expression in the page."""
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate (or reload when ``url`` is the current page) and wait until the document is complete."""
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href.startsWith(" + json.dumps(url) + ")")

    def reload(self) -> None:
        """Reload the page (as F5) and wait for it."""
        self.eval("window.__before_reload = 1")
        self.call("Page.reload", ignoreCache=True)
        self.wait_for("document.readyState === 'complete' && window.__before_reload === undefined")

    def wait_for(self, expr: str, timeout: float = 30.0) -> None:
        """Poll a JavaScript condition until it holds."""
        deadline = time.monotonic() + timeout
        while not self.eval(f"!!({expr})"):
            if time.monotonic() > deadline:
                raise TimeoutError(expr)
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element."""
        box = self.eval(
            f"(function(){{var e=document.querySelector({json.dumps(selector)});e.scrollIntoView();"
            "var r=e.getBoundingClientRect();return [r.left+r.width/2, r.top+r.height/2];})()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        """Focus an input and type ``text`` as keyboard input."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a ``<select>`` with the keyboard: focus it and type the option's first letter."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        key = value[0]
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key, unmodifiedText=key)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key)

    def set_file(self, selector: str, path: Path) -> None:
        """Put a file into an ``<input type=file>`` (fires its change event, as a user's pick does)."""
        doc = self.call("DOM.getDocument")
        node = self.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector=selector)
        self.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(path)])

    def allow_downloads(self) -> None:
        """Save downloads into ``downloads``."""
        self.call("Browser.setDownloadBehavior", target="browser", behavior="allow", downloadPath=str(self.downloads))

    def close(self) -> None:
        """Close the connections and stop Chromium."""
        if getattr(self, "loop", None) is not None:
            self.loop.run_until_complete(self.session.close())
            self.loop.close()
            self.loop = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
