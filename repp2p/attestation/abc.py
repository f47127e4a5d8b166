"""Interfaces of the attestation core."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from repp2p.attestation.claims import Claims


class TEEBackendAPI(ABC):
    """Verifies one kind of TEE evidence, offline and without reading the clock.

    A backend checks that evidence is genuine (signatures, certificate chain to a pinned
    root, revocation, collateral) and returns the claims it proves. It applies no policy:
    debug enclaves, measurements and TCB minimums are the policy's business
    (:func:`repp2p.attestation.check_policy`). Every backend must pass the conformance suite
    in ``repp2p.attestation.testing``.
    """

    #: The ``tee_kind`` string this backend verifies.
    kind: ClassVar[str]

    @abstractmethod
    def verify(self, evidence: bytes, collateral: bytes, now: int) -> Claims:
        """Verify ``evidence`` at unix time ``now``.

        Args:
            evidence: the evidence bytes as carried on the wire.
            collateral: what the format needs beside the evidence (DCAP collateral JSON,
                certificate chains); may be empty where the format is self-contained.
            now: unix seconds at which to check certificates and collateral (formats with
                their own signing time check certificates at that time instead).

        Returns:
            The verified :class:`Claims`.

        Raises:
            AttestationError: with the reason; never any other exception, whatever the input.
        """
