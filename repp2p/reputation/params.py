"""``ReputationParams``: every knob of the reputation computation, documented and validated.

One frozen object per concern. Construction validates every field and
raises :class:`~repp2p.errors.ConfigError`, so a params object that exists is usable. Epochs
are the network's epochs (``epoch = now // epoch_s``); "evidence" means feedback, claims,
receipts and heartbeats accepted into the view.
"""

from __future__ import annotations

import dataclasses

from repp2p.errors import ConfigError
from repp2p.params_check import bool_field, float_field, int_field


@dataclasses.dataclass(frozen=True)
class ReputationParams:
    """Weights, windows, half-lives and thresholds of the reputation score.

    Component weights (each a float in [0, 100]; at least one > 0; the score is the
    weighted mean of the components, so only their ratios matter). Success dominates
    (12 of 16) because it is the one component a cheater cannot earn by being online, fast
    and attested: with a smaller share, a node that is wrong half the time stayed above a
    typical task minimum. The price: everyone starts lower, and slander weighs more on a
    node whose history is still thin. The simulator set the value
    (``simulations/results/README.md``; measurements: docs/design-notes.md, "Reputation
    weights").

    Attributes:
        w_uptime: weight of uptime (share of epochs in the window with a heartbeat).
        w_success: weight of success (trust-weighted feedback outcomes).
        w_throughput: weight of throughput (claimed tasks delivered with a receipt).
        w_latency: weight of latency (reported latency against the task's deadline budget).
        w_attestation: weight of attestation consistency.

    Windows and decay:

    Attributes:
        window_epochs: how many past epochs of evidence count, epochs, 1..100000. Older
            heartbeats, feedback, claims and receipts are ignored.
        half_life_epochs: evidence ``a`` epochs old weighs ``2 ** (-a / half_life)``,
            epochs, 0.5..100000.
        heartbeat_period_epochs: ``H``, a node heartbeats once every ``H`` epochs (in the
            epochs of its slot, :func:`repp2p.reputation.heartbeats.heartbeat_slot`), and
            a heartbeat of epoch ``h`` counts ``h .. h + H - 1`` as up in uptime, epochs,
            1..``min(1000, window_epochs)`` (default 1: one per epoch). A large network
            sets it to spread its heartbeats thin (``H`` about ``nodes / 1000`` keeps the
            heartbeat topic near 1,000 records per epoch); ``matching.heartbeat_max_age_epochs``
            must then be at least ``heartbeat_lag + H - 1`` (``NetworkParams`` checks it).

    Bayesian priors (each component starts at ``prior_*`` with the strength of
    ``prior_strength_*`` pseudo-observations, so newcomers and thin histories sit near the
    prior instead of at 0 or 1):

    Attributes:
        prior_uptime, prior_success, prior_throughput, prior_latency: prior value, [0, 1].
        prior_strength_uptime: pseudo-epochs, [0, 10000].
        prior_strength_success: pseudo-feedback of average trust, [0, 10000].
        prior_strength_throughput: pseudo-claims, [0, 10000].
        prior_strength_latency: pseudo-feedback of average trust, [0, 10000].
        rating_weight_pct: how much the 0-100 ``rating`` moves an ``ok`` outcome, percent,
            0..100: an ok is worth ``1 - rw + rw * rating / 100``.
        timeout_penalty_pct: how much a ``timeout`` counts against a node in the client's
            local trust (EigenTrust edge), percent of a ``wrong``, 0..100.

    Client trust (EigenTrust, see docs/core.md):

    Attributes:
        trust_alpha: teleport probability to the pre-trusted set, (0, 1).
        trust_iterations: power-iteration steps, a fixed count so no data-dependent branch
            can differ between peers, 1..1000.
        trust_weight_cap: cap on one client's feedback weight, (0, 1e6]. A client's weight
            is its trust in units of ``trust_alpha / |pre-trusted|`` (the teleport share of
            one attested node), so one "feedback of average trust" in the priors below
            means one feedback of weight 1 on that scale.
        trust_view_steps: 0 (the default): the exact path, ``trust_iterations`` steps from
            the pre-trusted vector at every view. 1..1000: streaming EigenTrust
            (docs/core.md, "Streaming EigenTrust"): the view runs this many steps on its
            own trust graph from the warm vector of a trust chain.
        trust_chain_steps: streaming only: steps each live trust chain takes on each
            epoch's graph, 1..100.
        trust_chain_epochs: streaming only: a chain starts at every view epoch that is a
            multiple of this (R) and is read by the views ``R .. 2R - 1`` epochs after its
            start, 1..10000. ``trust_chain_steps * (R + 1) + trust_view_steps`` must be at
            least ``trust_iterations``: the vector a view uses has taken at least as many
            steps as the exact path, the latest on the latest graphs; and ``2R`` at most
            ``window_epochs``.

    Attestation consistency:

    Attributes:
        reattest_period_s: a node must be re-attested this often, seconds, 60..30 days;
            after that the component falls linearly to 0 over one more period.
        tcb_degraded_factor: multiplier for a degraded TCB status, [0, 1].

    Newcomers, phase-out and penalties:

    Attributes:
        newcomer_min_feedback: a node with less trusted feedback mass than this (in
            feedback of average trust) is a newcomer, [0, 1e6]. Newcomers are ranked in the
            exploration pool (matching), whose total share is bounded whatever their number.
        phase_out_permille: score below which a node is phasing out, permille, 0..1000.
        phase_out_epochs: consecutive epochs below the threshold before a phase-out (M),
            1..10000.
        phase_out_penalty_epochs: length of the first phase-out, epochs, 1..1000000.
        phase_out_growth: each repeat multiplies the phase-out length by this, 1..16.
        phase_out_max_epochs: cap on a phase-out's length, epochs, >= phase_out_penalty_epochs.
        hard_penalty_epochs: ineligibility after equivocation or a proven wrong result,
            epochs, 1..2**40 (the default is about forever).
        wrong_quorum: a receipt is proven wrong when at least this many other claimants'
            receipts for the same task agree on a different output and they are a strict
            majority of the task's receipts, 2..16. Such a count proves nothing colluders
            cannot manufacture, so it is a hard penalty only with ``wrong_result_hard``;
            otherwise disputes are judged by standing (below).
        wrong_result_hard: a count-quorum proven wrong result is a hard penalty (the rule
            before issue 15). Off by default: colluders can outvote an honest replica.

    Estimates with uncertainty (docs/core.md, "Quality"):

    Attributes:
        bad_weight: one ``wrong``/``bad_proof``/``timeout`` feedback counts this many times
            its weight against success, 1..1000: a cheater that camouflages (wrong on a
            share of tasks) must not average its bad results away.
        bad_half_life_epochs: half-life of bad evidence, epochs, 0.5..100000; longer than
            ``half_life_epochs`` so a bad record fades slower than a good one.
        quality_z: quality = the posterior mean of success minus ``quality_z`` posterior
            standard deviations (a lower confidence bound), 0..10. Thin histories sit low,
            so a node earns a place at the front of matching with evidence.
        dispute_weight: a lost dispute (a receipt outvoted by a confident, standing-weighted
            verdict) counts as this many bad feedback of average trust, 0..10000.
        dispute_confidence: a verdict is confident when the winning output holds more than
            this share of the standing of all receipts of the task, 0.5..0.999.
        dispute_min_support: ... and its receipts' standing sums to at least this, 0..16;
            standing is a node's quality before disputes count, so thin or shaken
            identities cannot decide a verdict by themselves.
        dispute_rounds: verdicts are judged this many times, each round with the quality
            the previous round's verdicts gave (round 1: quality before disputes), 1..8.
        slander_penalty: a client's feedback weight is multiplied by
            ``(1 + upheld) / (1 + upheld + slander_penalty * refuted)``, 0..1e6, where
            ``refuted`` counts its ``wrong`` verdicts on receipts a confident verdict upheld
            and ``upheld`` its verdicts a confident verdict agreed with (``wrong`` on an
            outvoted receipt, ``ok`` on an upheld one); both decayed.
    """

    w_uptime: float = 1.0
    w_success: float = 12.0
    w_throughput: float = 1.0
    w_latency: float = 1.0
    w_attestation: float = 1.0

    window_epochs: int = 168
    half_life_epochs: float = 48.0
    heartbeat_period_epochs: int = 1

    prior_uptime: float = 0.8
    prior_success: float = 0.7
    prior_throughput: float = 0.8
    prior_latency: float = 0.7
    prior_strength_uptime: float = 4.0
    prior_strength_success: float = 5.0
    prior_strength_throughput: float = 3.0
    prior_strength_latency: float = 3.0
    rating_weight_pct: int = 20
    timeout_penalty_pct: int = 50

    trust_alpha: float = 0.15
    trust_iterations: int = 30
    trust_weight_cap: float = 10.0
    trust_view_steps: int = 0
    trust_chain_steps: int = 1
    trust_chain_epochs: int = 30

    reattest_period_s: int = 3600
    tcb_degraded_factor: float = 0.5

    newcomer_min_feedback: float = 5.0
    phase_out_permille: int = 400
    phase_out_epochs: int = 6
    phase_out_penalty_epochs: int = 24
    phase_out_growth: int = 2
    phase_out_max_epochs: int = 24 * 30
    hard_penalty_epochs: int = 2**40
    wrong_quorum: int = 2
    wrong_result_hard: bool = False

    bad_weight: float = 4.0
    bad_half_life_epochs: float = 192.0
    quality_z: float = 1.0
    dispute_weight: float = 20.0
    dispute_confidence: float = 0.67
    dispute_min_support: float = 1.5
    dispute_rounds: int = 3
    slander_penalty: float = 10.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the first bad one.

        Float fields given as integers are stored as floats, so equal parameters have one
        canonical form (and digest).
        """
        weights = ("w_uptime", "w_success", "w_throughput", "w_latency", "w_attestation")
        for name in weights:
            float_field(self, name, 0.0, 100.0)
        if sum(getattr(self, n) for n in weights) <= 0.0:
            raise ConfigError("ReputationParams: at least one component weight must be > 0")
        int_field(self, "window_epochs", 1, 100_000)
        float_field(self, "half_life_epochs", 0.5, 100_000.0)
        int_field(self, "heartbeat_period_epochs", 1, min(1000, self.window_epochs))
        for name in ("prior_uptime", "prior_success", "prior_throughput", "prior_latency"):
            float_field(self, name, 0.0, 1.0)
        for name in (
            "prior_strength_uptime",
            "prior_strength_success",
            "prior_strength_throughput",
            "prior_strength_latency",
        ):
            float_field(self, name, 0.0, 10_000.0)
        int_field(self, "rating_weight_pct", 0, 100)
        int_field(self, "timeout_penalty_pct", 0, 100)
        float_field(self, "trust_alpha", 1e-6, 1.0 - 1e-6)
        int_field(self, "trust_iterations", 1, 1000)
        float_field(self, "trust_weight_cap", 1e-9, 1e6)
        int_field(self, "trust_view_steps", 0, 1000)
        int_field(self, "trust_chain_steps", 1, 100)
        int_field(self, "trust_chain_epochs", 1, 10_000)
        if self.is_streaming_trust:
            steps = self.trust_chain_steps * (self.trust_chain_epochs + 1) + self.trust_view_steps
            if 2 * self.trust_chain_epochs > self.window_epochs:
                raise ConfigError(
                    "ReputationParams: streaming EigenTrust needs 2 * trust_chain_epochs <= "
                    f"window_epochs, got 2 * {self.trust_chain_epochs} > {self.window_epochs}"
                )
            if steps < self.trust_iterations:
                raise ConfigError(
                    "ReputationParams: streaming EigenTrust needs trust_chain_steps * "
                    "(trust_chain_epochs + 1) + trust_view_steps >= trust_iterations, got "
                    f"{steps} < {self.trust_iterations}"
                )
        int_field(self, "reattest_period_s", 60, 30 * 86400)
        float_field(self, "tcb_degraded_factor", 0.0, 1.0)
        float_field(self, "newcomer_min_feedback", 0.0, 1e6)
        int_field(self, "phase_out_permille", 0, 1000)
        int_field(self, "phase_out_epochs", 1, 10_000)
        int_field(self, "phase_out_penalty_epochs", 1, 1_000_000)
        int_field(self, "phase_out_growth", 1, 16)
        # Checked after phase_out_penalty_epochs: its lower bound is that field.
        int_field(self, "phase_out_max_epochs", self.phase_out_penalty_epochs, 2**40)
        int_field(self, "hard_penalty_epochs", 1, 2**40)
        int_field(self, "wrong_quorum", 2, 16)
        bool_field(self, "wrong_result_hard")
        float_field(self, "bad_weight", 1.0, 1000.0)
        float_field(self, "bad_half_life_epochs", 0.5, 100_000.0)
        float_field(self, "quality_z", 0.0, 10.0)
        float_field(self, "dispute_weight", 0.0, 10_000.0)
        float_field(self, "dispute_confidence", 0.5, 0.999)
        float_field(self, "dispute_min_support", 0.0, 16.0)
        float_field(self, "slander_penalty", 0.0, 1e6)
        int_field(self, "dispute_rounds", 1, 8)

    @property
    def is_streaming_trust(self) -> bool:
        """True when views run streaming EigenTrust (``trust_view_steps > 0``)."""
        return self.trust_view_steps > 0

    @property
    def weights(self) -> tuple[float, float, float, float, float]:
        """Component weights in the order uptime, success, throughput, latency, attestation."""
        return (
            self.w_uptime,
            self.w_success,
            self.w_throughput,
            self.w_latency,
            self.w_attestation,
        )
