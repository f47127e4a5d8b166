"""The network explorer: one page showing the network as a peer sees it.

Public API::

    Explorer(keeper, clock, *, peer_id="", role="full", ledger=True)
    Explorer.snapshot() -> dict          # plain JSON-ready data (docs/explorer.md); cheap:
                                         # never builds a view nor replays the ledger
    await Explorer.run(tick_s)           # background task: REP replayed once per epoch
    Explorer.refresh()                   # the same work, synchronously (tools, tests)
    ExplorerPending                      # no view built yet (servers answer 503)
    Explorer.routes(prefix="/explorer")  # [(path, handler)]: the page and its JSON
    page_html() -> bytes                 # the static page (no external assets)

The node's status endpoint serves the routes (``/explorer``, ``/explorer.json``); any other
HTTP server can mount them: a handler takes no arguments and returns
``(content type, body)``; whoever serves them also runs :meth:`Explorer.run` (the node and
the gateway do).
"""

from repp2p.explorer.snapshot import SNAPSHOT_VERSION, Explorer, ExplorerPending, Handler, page_html

__all__ = ["SNAPSHOT_VERSION", "Explorer", "ExplorerPending", "Handler", "page_html"]
