"""Where a judge's measured agreement sits on rlft's judge-quality curve (docs/judge.md#judge-curve).

The curve was measured with `benchmarks/judge_curve.py`: the deployed Bitext support agent's rejection-sampling stage,
its kept replies chosen by a SIMULATED judge of set quality (the rubric's verdicts flipped at a set rate), every
resulting agent scored by the rubric on the same 270 held-out rows. `rlft eval --human-labels` prints
`on_the_curve(kappa)` beside the kappa it measured against the user's labels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CurvePoint:
    """One measured arm: the judge's per-request kappa against the ground truth, its votes per judgment, and the
    trained agent's policy-following minus that of the agent trained on the ground truth itself (points)."""

    kappa: float
    votes: int
    policy_change: float
    stage: str = "rft"  # "rft": the judge picks which sampled replies are kept; "grpo": it is GRPO's reply reward


# benchmarks/results/judge_curve.json (2026-12-06, seed 42, one run per arm, 270 held-out rows; the reference
# agent, kept by the rubric itself, follows the policy on 0.752 of them).
CURVE: tuple[CurvePoint, ...] = (
    CurvePoint(kappa=0.604, votes=1, policy_change=0.0),   # flip rate 0.2: policy-following 0.752
    CurvePoint(kappa=0.867, votes=1, policy_change=-0.4),  # flip rate 0.1: 0.748
    CurvePoint(kappa=0.574, votes=3, policy_change=-0.4),  # flip rate 0.2, 3 votes (kappa per vote): 0.748
    CurvePoint(kappa=-0.007, votes=1, policy_change=+1.5),  # flip rate 0.5, a coin: 0.767 (this stage is flat)
    # stage 2 from the head, the judge as the reply's only policy reward (benchmarks/results/judge_curve_grpo.json;
    # the rubric-trained stage 2 follows the policy on 0.707): flip rate 0.1, kappa 0.41 on that stream: 0.159
    CurvePoint(kappa=0.407, votes=1, policy_change=-54.8, stage="grpo"),
)
SOURCE = (
    "policy-following of the support agent kept by the judge in its rejection-sampling stage, minus the rubric-kept "
    "agent's, where most sampled replies already pass; docs/judge.md#judge-curve: one seed, a simulated judge whose "
    "errors are independent of the text")


def on_the_curve(kappa: float | None, curve: tuple[CurvePoint, ...] = CURVE) -> str:
    """One line: the measured single-vote points nearest `kappa` below and above it (with what each cost the agent's
    policy-following), and what votes bought where they were measured."""
    if kappa is None:
        return "judge quality: no kappa (every row abstained or one class only), so no place on the judge curve"
    single = sorted((p for p in curve if p.votes == 1 and p.stage == "rft"), key=lambda p: p.kappa)
    if not single:
        return "judge quality: no measured curve"

    def said(p: CurvePoint) -> str:
        return f"kappa {p.kappa:.2f} changed policy-following by {p.policy_change:+.1f} points"

    below = [p for p in single if p.kappa <= kappa]
    above = [p for p in single if p.kappa > kappa]
    if not below:
        where = f"below every measured judge ({said(single[0])})"
    elif not above:
        where = f"at or above the best measured judge ({said(below[-1])})"
    else:
        where = f"between two measured judges ({said(below[-1])}; {said(above[0])})"
    votes = [p for p in curve if p.votes > 1 and p.stage == "rft"]
    vote_note = "".join(f"; {p.votes} votes at kappa {p.kappa:.2f}: {p.policy_change:+.1f}" for p in votes)
    grpo = "".join(f"; as GRPO's only reply reward from a weak start, kappa {p.kappa:.2f} changed it by "
                   f"{p.policy_change:+.1f} points" for p in curve if p.stage == "grpo")
    return f"judge quality: kappa {kappa:.2f} is {where}{vote_note}{grpo} ({SOURCE})"
