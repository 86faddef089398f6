"""Where a measured kappa sits on the judge-quality curve (rlft.judge.quality), as `rlft eval --human-labels` says."""

from rlft.judge.quality import CURVE, CurvePoint, on_the_curve

POINTS = (CurvePoint(0.6, 1, -4.0), CurvePoint(0.87, 1, -1.5), CurvePoint(0.6, 3, -2.0))


def test_a_kappa_between_two_measured_judges_names_both_and_what_votes_bought():
    line = on_the_curve(0.7, POINTS)
    assert line.startswith("judge quality: kappa 0.70 is between two measured judges (kappa 0.60 changed "
                           "policy-following by -4.0 points; kappa 0.87 changed policy-following by -1.5 points)")
    assert "; 3 votes at kappa 0.60: -2.0" in line


def test_kappas_outside_the_measured_range_and_no_kappa():
    assert "is below every measured judge (kappa 0.60 changed policy-following by -4.0 points)" in on_the_curve(0.3, POINTS)
    assert "at or above the best measured judge (kappa 0.87" in on_the_curve(0.95, POINTS)
    assert on_the_curve(None, POINTS).startswith("judge quality: no kappa")


def test_the_shipped_curve_has_single_vote_points_in_range():
    single = [p for p in CURVE if p.votes == 1]
    assert len(single) >= 2 and all(-1.0 <= p.kappa <= 1.0 for p in CURVE)  # Cohen's kappa's range


def test_a_grpo_point_is_reported_apart_and_never_placed_on_the_rft_curve():
    points = POINTS + (CurvePoint(0.41, 1, -54.8, stage="grpo"),)
    line = on_the_curve(0.5, points)
    # 0.5 sits below the rft points (0.60, 0.87); the GRPO point at 0.41 is not "the measured judge below it"
    assert "is below every measured judge (kappa 0.60 changed policy-following by -4.0 points)" in line
    assert "; as GRPO's only reply reward from a weak start, kappa 0.41 changed it by -54.8 points" in line
