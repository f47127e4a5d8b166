"""What a validator says about a gossip message: GossipSub v1.1's three answers.

* ``ACCEPT``: deliver and forward it.
* ``IGNORE``: drop it, do not forward it, and do **not** blame the peer that forwarded it
  (the message may be honest but of no use to us now: an older heartbeat overtaken by a
  newer one, a record that expired in transit, a failure of our own store).
* ``REJECT``: drop it and count it against the forwarder's score (P4, invalid messages):
  the message is one no honest peer forwards (bad signature, malformed, wrong topic...).

Imported by both :mod:`repp2p.net` (the validators) and :mod:`repp2p.node` (the record
pipeline that judges), so it imports nothing of repp2p.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    """A validator's answer for one message (values are stable metric/log names)."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"
