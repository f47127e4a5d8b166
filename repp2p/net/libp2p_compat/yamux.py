"""Yamux window updates batched as go-yamux does.

py-libp2p 0.8.1 answers every read that leaves the receive window short by less than half
with a WINDOW_UPDATE frame anyway, so every small gossip message cost a second encrypted
frame back (measurements: docs/design-notes.md, "Yamux").
"""

from __future__ import annotations

from typing import Any

from libp2p.stream_muxer.yamux.yamux import YamuxStream

from repp2p.net.libp2p_compat.guard import Expect
from repp2p.net.libp2p_compat.patch import Patch


async def send_window_update_go_style(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's rule for a read: credit the sender only once the bytes read since the
    last update reach half the receive window (then grow it to the target, auto-tuned).

    Replaces ``YamuxStream._auto_tune_and_send_window_update`` (called after each read).
    The sender may have a whole window in flight, so a reader that keeps reading never
    stalls it; flow control still holds back a sender whose reader stopped.

    Args:
        self: the yamux stream that was read.
        bytes_read: bytes the read returned (py-libp2p's argument; the window state
            already accounts for them).
    """
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        read_since_update = self.target_recv_window - (self.recv_window + buffered)
        if read_since_update <= 0 or read_since_update < self._grow_threshold():
            return
        increment = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
        self._pending_recv_release = 0
    if increment > 0:
        await self.send_window_update(increment, skip_lock=True)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "yamux.YamuxStream._auto_tune_and_send_window_update",
        Expect(YamuxStream, "_auto_tune_and_send_window_update", "self, *, bytes_read"),
        send_window_update_go_style,
        requires=(
            Expect(YamuxStream, "_grow_threshold", "self"),
            Expect(YamuxStream, "_grow_to_delta", "self, buffered"),
            Expect(YamuxStream, "_apply_autotune_epoch", "self, buffered"),
            Expect(YamuxStream, "send_window_update", "self, increment, skip_lock"),
        ),
    ),
)
