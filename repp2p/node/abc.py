"""Interfaces of the node's parts.

A full node is a handful of parts wired together by :class:`repp2p.node.Node`; the task
server (:mod:`repp2p.serving`) and the client (:mod:`repp2p.client`) depend on these
interfaces, never on ``Node`` itself, so each can run against other implementations (the
in-memory ones of the task-protocol tests, say) and no module imports its user back.

* :class:`RecordPipelineAPI`: the only way a record enters the store.
* :class:`RecordPublisherAPI`: signs, stores and spreads this peer's own records.
* :class:`DiscoveryAPI`: peers, the DHT, the first sync.
* :class:`ViewServiceAPI`: the per-epoch views matching runs on.
* :class:`EnclaveSupervisorAPI`: the enclave process (started, restarted, attested).
* :class:`TaskLoadAPI`: how busy the task server is (heartbeats and status report it).
* :class:`OperatorStatusAPI`: what ``repp2p status`` and ``/metrics`` show.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

from repp2p.matching import View
from repp2p.net.verdict import Verdict
from repp2p.network_params import NetworkParams
from repp2p.records import Outcome, Receipt, Record, SignedRecord
from repp2p.reputation import AttestedNode, ReputationParams

#: listener(signed, outcome) for every record the pipeline accepts
RecordListener = Callable[[SignedRecord, Outcome], None]


class RecordPipelineAPI(abc.ABC):
    """Decode, validate and store records from any source; never raises for bad input."""

    @abc.abstractmethod
    def judge(self, data: bytes, *, topic: str | None = None, source: str = "local") -> Verdict:
        """Decode, validate and store one record; the gossip verdict on it.

        ``ACCEPT``: stored (or held already), it travels on. ``REJECT``: a record no honest
        peer forwards (bad signature, malformed, wrong topic, expiring too far ahead...).
        ``IGNORE``: dropped, but the forwarder is not to blame (an older ``seq`` than the
        one held, expired in transit, our own store failed).

        ``topic`` is the gossip topic it arrived on (its type must belong there); ``source``
        labels metrics (``gossip``, ``sync``, ``feed``, ``task``, ``local``).
        """

    @property
    @abc.abstractmethod
    def store_fault(self) -> Any:
        """A ``StoreFault`` while the store cannot write (the node is degraded), else None."""

    @abc.abstractmethod
    def accept(self, data: bytes, *, topic: str | None = None, source: str = "local") -> bool:
        """``judge(...) is Verdict.ACCEPT``: True when the record should travel on."""

    @abc.abstractmethod
    def accept_many(
        self, batch: list[bytes], *, topic: str | None = None, source: str = "local"
    ) -> list[bool]:
        """:meth:`accept` for several records, stored in one transaction."""

    @abc.abstractmethod
    def judge_many(
        self, batch: list[bytes], *, topic: str | None = None, source: str = "local"
    ) -> list[Verdict]:
        """:meth:`judge` for several records, stored in one transaction."""

    @abc.abstractmethod
    def accept_decoded(self, signed: SignedRecord, *, source: str) -> bool:
        """:meth:`accept` for a record the caller decoded (so verified) with our clock."""

    @abc.abstractmethod
    def accept_decoded_many(self, batch: list[SignedRecord], *, source: str) -> list[bool]:
        """:meth:`accept_decoded` for several records, stored in one transaction."""

    @abc.abstractmethod
    def arrived_at(self, record_id: bytes) -> float | None:
        """Unix time this peer first accepted the record (recent records only), or None."""

    @abc.abstractmethod
    def on_record(self, listener: RecordListener) -> None:
        """Call ``listener(signed, outcome)`` for every record accepted from now on."""


class RecordPublisherAPI(abc.ABC):
    """This peer's own records: signed with its identity, stored, then spread."""

    @abc.abstractmethod
    def next_seq(self) -> int:
        """A fresh ``seq`` for our own records: unix milliseconds, strictly increasing."""

    @abc.abstractmethod
    async def publish(self, record: Record) -> SignedRecord:
        """Sign, store and gossip ``record``; returns it once stored.

        Raises:
            RecordError: our own pipeline refused it (expired, or a stale ``seq``).
        """

    @abc.abstractmethod
    def publish_soon(self, record: Record) -> SignedRecord:
        """Sign and store ``record`` now; it travels in the background."""

    @abc.abstractmethod
    def spread(self, data: bytes, record_type: str) -> None:
        """Make a stored record travel (gossip, or our feed for per-task records)."""


class DiscoveryAPI(abc.ABC):
    """Finding and keeping peers; the first sync."""

    @abc.abstractmethod
    def is_synced(self) -> bool:
        """True once a first pull of the record set completed (or nobody to pull from)."""

    @abc.abstractmethod
    async def wait_synced(self) -> None:
        """Return once :meth:`is_synced`."""

    @abc.abstractmethod
    def connected_peers(self) -> list[str]:
        """Peer IDs of the peers connected now."""

    @abc.abstractmethod
    def feed_candidates(self) -> list[str]:
        """Connected full nodes (peers with a stored ad): where task records are pulled."""


class ViewServiceAPI(abc.ABC):
    """Per-epoch views and what they say about peers."""

    @property
    @abc.abstractmethod
    def params(self) -> NetworkParams:
        """The network's parameters the views are built with."""

    @property
    @abc.abstractmethod
    def epoch_s(self) -> int:
        """The network's epoch length in seconds."""

    @property
    @abc.abstractmethod
    def reputation_params(self) -> ReputationParams:
        """The reputation parameters views are built with."""

    @abc.abstractmethod
    def current_epoch(self) -> int:
        """The epoch now, on this peer's clock."""

    @abc.abstractmethod
    def view(self, epoch: int) -> View:
        """The view of ``epoch`` (built on first use, then kept)."""

    @abc.abstractmethod
    def enclave_keys(self, peer_id: str) -> tuple[bytes, bytes] | None:
        """``(enc_key, result_key)`` of a peer whose attestation verified, else None."""

    @abc.abstractmethod
    def verdict_of(self, peer_id: str) -> AttestedNode | None:
        """The latest verdict on a peer's attestation, if judged."""

    @abc.abstractmethod
    def verdicts(self, records: Iterable[SignedRecord], now: int) -> dict[str, AttestedNode]:
        """``peer_id -> AttestedNode`` for every current Attestation among ``records``."""

    @abc.abstractmethod
    def reputation_of(self, peer_id: str) -> int | None:
        """The peer's reputation (permille) in the current epoch's view, if built."""


class EnclaveSupervisorAPI(abc.ABC):
    """The node's enclave: started, replaced when it dies, attested on schedule."""

    @property
    @abc.abstractmethod
    def kind(self) -> str:
        """The TEE kind of the enclave (``simulated`` is development only)."""

    @property
    @abc.abstractmethod
    def engine_measurements(self) -> dict[str, bytes]:
        """``engine id -> measurement`` of the engines the enclave runs."""

    @abc.abstractmethod
    async def execute(self, **task: Any) -> tuple[bytes, Receipt]:
        """Run one task in the enclave: ``(encrypted output, enclave-signed receipt)``.

        Raises:
            EnclaveError, EngineError: the enclave or the engine refused or failed.
        """

    @abc.abstractmethod
    def describe(self) -> dict[str, Any] | None:
        """A JSON-ready summary for status (kind, label, pid, measurement), or None."""

    @property
    def enc_key(self) -> bytes | None:
        """The running enclave's X25519 key (what clients seal to), or None when this
        supervisor cannot say (the enclave then checks the client's input signature)."""
        return None


class TaskLoadAPI(abc.ABC):
    """How busy the task server is."""

    @property
    @abc.abstractmethod
    def active(self) -> int:
        """Tasks running now."""

    @property
    @abc.abstractmethod
    def done(self) -> int:
        """Tasks completed since start."""


class OperatorStatusAPI(abc.ABC):
    """What operators see: ``repp2p status``, ``/status``, ``/metrics``, ``/record``."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """A JSON-ready summary of the node."""

    @abc.abstractmethod
    def metrics_text(self) -> bytes:
        """Prometheus text exposition of the node's metrics."""

    @abc.abstractmethod
    def record_status(self, hex_id: str) -> dict[str, Any]:
        """Whether the node holds a record, and when it first accepted it (if recent)."""
