"""GossipSub v1.1's IGNORE verdict, which py-libp2p 0.8.1 lacks.

A py-libp2p validator returns a bool, and ``Pubsub.push_msg`` charges every False to the
forwarder (``scorer.on_invalid_message``: P4, 10 points each with our parameters). The
spec (and go-libp2p's ``ValidationIgnore``) has a third answer: drop the message, do not
forward it, blame nobody. We need it for messages an honest peer forwards that are still of
no use to us (an older ``seq`` overtaken by a newer one, a record that expired in transit)
and for failures of our own (the store could not write): charging those to the forwarder
would push honest peers below the publish threshold, or graylist every peer at once when
our disk is full.

:class:`RecordPubsub` is py-libp2p's ``Pubsub`` with three-valued validators
(:meth:`RecordPubsub.set_topic_judge`). The penalty is skipped, not undone:

1. A judge that says IGNORE makes the validator remember the message ID (bounded) and
   return False; py-libp2p raises ``ValidationError`` and caches the failure.
2. Our ``validate_msg`` override sees the ``ValidationError`` of a remembered ID, whether
   the validator just ran or py-libp2p answered from its validation cache (the same
   message from a second forwarder), and *excuses* ``(forwarder, topics)`` just before
   re-raising it.
3. ``push_msg`` catches it and calls ``scorer.on_invalid_message(forwarder, topic)``,
   which is our guarded wrapper on the router's scorer: an excused call is skipped.
4. Our ``push_msg`` override clears the excuse when py-libp2p's returns.

Why this is race-free under trio: tasks switch only at checkpoints (an ``await`` that
yields). Between step 2 setting the excuse and step 3's calls there is none:
``push_msg`` goes from ``await self.validate_msg(...)`` raising straight to its
``except ValidationError`` and calls the scorer synchronously (``install()`` checks
py-libp2p's source for exactly that, :func:`check_penalty_follows_validation`), then
returns without a checkpoint to our ``finally``. No other message's validation can run in
between, so an excuse never covers another message; it matches the forwarder and topics
too. Were py-libp2p to move the penalty behind an ``await``, the excuse would be gone by
then and the forwarder penalised: the old behaviour, never a skipped REJECT.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import libp2p.pubsub.pubsub as _pubsub
from libp2p.exceptions import ValidationError
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import PeerScorer

from repp2p.net.libp2p_compat.guard import Expect, incompatible
from repp2p.net.libp2p_compat.hooks import count, counted
from repp2p.net.verdict import Verdict

#: judge(forwarder peer ID, message) -> verdict
TopicJudge = Callable[[Any, Any], Verdict]

#: the fewest IDs of ignored messages remembered (at least the validation cache's size, so
#: a cached failure of an ignored message is always recognised as one)
IGNORED_KEPT = 4096

VALIDATE_HOOK = "Pubsub.validate_msg"
PENALTY_HOOK = "PeerScorer.on_invalid_message"

log = logging.getLogger("repp2p.gossip")


class RecordPubsub(Pubsub):
    """py-libp2p's ``Pubsub`` whose validators can IGNORE as well as ACCEPT and REJECT.

    Args:
        *args: py-libp2p's ``Pubsub`` arguments (host, router, ...).
        **kwargs: py-libp2p's ``Pubsub`` keyword arguments.

    Raises:
        UnsupportedLibp2pError: py-libp2p's validation or scoring path changed shape.

    Attributes:
        ignored: messages a judge said IGNORE for (fresh judgements only).
        excused: penalties skipped (one per forwarder and topic of an ignored message,
            the validation cache's repeats included).
        judge_errors: messages whose judge raised (taken as IGNORE, logged).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check()
        super().__init__(*args, **kwargs)
        self.ignored = 0
        self.excused = 0
        self.judge_errors = 0
        cache_size = getattr(getattr(self, "validation_cache", None), "max_size", 0)
        self._ignored_kept = max(IGNORED_KEPT, int(cache_size))
        # message ID -> None, least recently seen first
        self._ignored_ids: OrderedDict[bytes, None] = OrderedDict()
        # (forwarder, topics) whose invalid-message penalty push_msg is about to apply
        self._excuse: tuple[Any, frozenset[str]] | None = None
        scorer = getattr(self.router, "scorer", None)
        if scorer is not None:
            if not isinstance(scorer, PeerScorer):
                raise incompatible(f"the router's scorer is a {type(scorer).__name__}")
            self._penalise: Callable[[Any, str], None] = scorer.on_invalid_message
            scorer.on_invalid_message = counted(PENALTY_HOOK, self._on_invalid_message)

    def set_topic_judge(self, topic: str, judge: TopicJudge) -> None:
        """Register ``judge`` as the (synchronous) validator of ``topic``.

        ACCEPT delivers and forwards the message; REJECT drops it and costs the forwarder
        (P4); IGNORE drops it without a penalty, for this forwarder and any other that
        sends the same message while py-libp2p's validation cache holds the verdict. A
        message on several topics is not one we publish (a record belongs to one topic):
        its IGNORE counts as REJECT.

        A judge that raises (a bug: judges turn hostile input into REJECT) is taken as
        IGNORE and logged with its traceback: an exception out of a validator ends
        py-libp2p's pubsub service, and with it the node, so one crafted message could
        stop every peer that received it. IGNORE drops the message without blaming its
        forwarder, who may only have relayed it.

        Args:
            topic: the topic.
            judge: ``judge(forwarder, msg) -> Verdict``.
        """

        def validator(forwarder: Any, msg: Any) -> bool:
            try:
                verdict = judge(forwarder, msg)
            except Exception:
                self.judge_errors += 1
                log.exception("the %s validator failed on a message; dropped (IGNORE)", topic)
                verdict = Verdict.IGNORE
            if verdict is Verdict.ACCEPT:
                return True
            msg_id = self.get_message_id(msg)
            if verdict is Verdict.IGNORE and len(msg.topicIDs) == 1:
                self.ignored += 1
                self._remember_ignored(msg_id)
            else:
                self._ignored_ids.pop(msg_id, None)  # judged anew (the cache expired)
            return False

        self.set_topic_validator(topic, validator, is_async_validator=False)

    def _remember_ignored(self, msg_id: bytes) -> None:
        self._ignored_ids[msg_id] = None
        self._ignored_ids.move_to_end(msg_id)
        while len(self._ignored_ids) > self._ignored_kept:
            self._ignored_ids.popitem(last=False)

    async def validate_msg(self, msg_forwarder: Any, msg: Any) -> None:
        """py-libp2p's validation; excuses the forwarder of a message judged IGNORE."""
        count(VALIDATE_HOOK)
        self._excuse = None
        try:
            await super().validate_msg(msg_forwarder, msg)
        except ValidationError:
            msg_id = self.get_message_id(msg)
            if msg_id in self._ignored_ids:
                # LRU order as py-libp2p's validation cache, which just touched it too.
                self._ignored_ids.move_to_end(msg_id)
                # No checkpoint from here to push_msg's scorer call (module docstring).
                self._excuse = (msg_forwarder, frozenset(msg.topicIDs))
            raise

    async def push_msg(self, msg_forwarder: Any, msg: Any) -> None:
        """py-libp2p's ``push_msg``; the excuse of an ignored message ends with it."""
        try:
            await super().push_msg(msg_forwarder, msg)
        finally:
            self._excuse = None

    def _on_invalid_message(self, peer: Any, topic: str) -> None:
        # Replaces the router scorer's on_invalid_message (push_msg's only caller).
        excuse = self._excuse
        if excuse is not None and excuse[0] == peer and topic in excuse[1]:
            self.excused += 1
            return
        self._penalise(peer, topic)


def check_penalty_follows_validation() -> None:
    """Check that ``Pubsub.push_msg`` penalises a failed validation synchronously.

    The excuse of :class:`RecordPubsub` relies on no ``await`` between ``await
    self.validate_msg(...)`` raising ``ValidationError`` and the
    ``scorer.on_invalid_message(...)`` calls of ``push_msg``'s handler.

    Raises:
        UnsupportedLibp2pError: the source is unavailable or no longer has that shape.
    """
    if getattr(_pubsub, "ValidationError", None) is not ValidationError:
        raise incompatible("Pubsub.push_msg no longer catches libp2p's ValidationError")
    try:
        source = inspect.getsource(Pubsub.push_msg)
    except (OSError, TypeError):
        raise incompatible("the source of Pubsub.push_msg is unavailable") from None
    call = source.find("await self.validate_msg(")
    handler = source.find("except ValidationError", call)
    penalty = source.find(".on_invalid_message(", handler)
    if min(call, handler, penalty) < 0:
        raise incompatible("Pubsub.push_msg no longer penalises a failed validate_msg")
    between = source[source.index(")", call) : penalty]
    if "await" in between or "async " in between:
        raise incompatible("Pubsub.push_msg awaits between validate_msg and the penalty")


#: py-libp2p methods RecordPubsub overrides or calls
EXPECTS: tuple[Expect, ...] = (
    Expect(Pubsub, "validate_msg", "self, msg_forwarder, msg"),
    Expect(Pubsub, "push_msg", "self, msg_forwarder, msg"),
    Expect(Pubsub, "set_topic_validator", "self, topic, validator, is_async_validator"),
    Expect(Pubsub, "get_message_id", "self, msg"),
    Expect(PeerScorer, "on_invalid_message", "self, peer, topic"),
)

#: RecordPubsub's hooks: py-libp2p calls our validate_msg, and the scorer wrapper
HOOKS: tuple[str, ...] = (VALIDATE_HOOK, PENALTY_HOOK)

_checked = False


def check() -> None:
    """Every check of the IGNORE path, once per process (``install()`` runs them too).

    Raises:
        UnsupportedLibp2pError: py-libp2p's validation or scoring path changed.
    """
    global _checked
    if _checked:
        return
    for expect in EXPECTS:
        expect.check()
    check_penalty_follows_validation()
    _checked = True
