import pytest

from catride_core.names import REFERENCE_SCORES, SCORES
from catride_core.retrieval.robustness import (
    ars,
    ers,
    ers_reference,
    robustness_summary,
)


def _row(*values: float) -> dict[str, float]:
    """Values in the order of ``names.SCORES``: CA+, CA-, QA+, QA-, TMA, ES:D, ES:R, LTM, GTM, GTT."""
    return dict(zip(SCORES, values, strict=True))


@pytest.mark.parametrize(
    "values, expected",
    [
        # docs/method.md section 7, CUB "ACT, 32 steps": terms 31, 62.3, 30.2, 67.8, 52.8, 58.95,
        # 11.1, 9.4, 14.9, 1.0 -> 339.45 / 10 = 33.945
        (_row(15.5, 37.7, 15.1, 32.2, 0.472, 0.821, 11.1, 9.4, 14.9, 1.0), 33.9),
        # CUB "none": 0, 0, 0, 0.1, 11.7, 11.9, 0, 0, 14.1, 0 -> 3.78
        (_row(0.0, 100.0, 0.0, 99.9, 0.883, 1.762, 0.0, 0.0, 14.1, 0.0), 3.8),
        # SOP "HM&ICS": 64, 95.8, 67.4, 97, 39.4, 89.65, 39.1, 39.8, 37.9, 45.6 -> 61.565
        (_row(32.0, 4.2, 33.7, 3.0, 0.606, 0.207, 39.1, 39.8, 37.9, 45.6), 61.6),
    ],
)
def test_ers_reproduces_the_published_rows(values, expected):
    assert ers(values) == pytest.approx(expected, abs=0.05)


def test_ers_of_an_unmovable_model_is_100():
    # the levels ERS assumes for a model no attack can move: 50 for CA+/QA+, 0 for CA-/QA-
    # and TMA and ES:D, 100 for the R@1 and retain scores
    assert ers(_row(50, 0, 50, 0, 0.0, 0.0, 100, 100, 100, 100)) == pytest.approx(100.0)


def test_ers_needs_every_score():
    values = _row(15.5, 37.7, 15.1, 32.2, 0.472, 0.821, 11.1, 9.4, 14.9, 1.0)
    del values["GTT"]
    with pytest.raises(KeyError, match="GTT"):
        ers(values)


def test_ars_on_hand_made_values():
    clean = _row(50.0, 2.0, 40.0, 4.0, 0.3, 0.0, 80.0, 80.0, 80.0, 100.0)
    adversarial = _row(10.0, 51.0, 60.0, 100.0, 0.65, 0.3, 40.0, 20.0, 100.0, 30.0)
    # r(CA+) = 10/50 = 0.2; r(CA-) = (100-51)/(100-2) = 0.5; r(QA+) = min(1, 60/40) = 1;
    # r(QA-) = 0/96 = 0; r(TMA) = 0.35/0.7 = 0.5; r(ES:D) = 1 - 0.3/1.2 = 0.75;
    # r(ES:R) = 40/80 = 0.5; r(LTM) = 20/80 = 0.25; r(GTM) = min(1, 100/80) = 1; r(GTT) = 0.3
    # mean = 5.0 / 10 = 0.5 -> ARS = 80 * 0.5 = 40
    assert ars(clean, adversarial, r1_clean=80.0, spread=1.2) == pytest.approx(40.0)


def test_ars_clips_and_treats_an_exhausted_clean_level_as_unharmed():
    clean = _row(0.0, 100.0, 0.0, 100.0, 1.0, 0.0, 0.0, 0.0, 0.0, 100.0)
    # every clean level is already the attack's worst case; the adversarial values stay there,
    # and ES:D beyond the spread clips at 0: ratios 1 x 5, 0, 1 x 3, 1 -> 9 / 10
    adversarial = _row(0.0, 100.0, 0.0, 100.0, 1.0, 2.0, 0.0, 0.0, 0.0, 100.0)
    assert ars(clean, adversarial, r1_clean=50.0, spread=1.0) == pytest.approx(45.0)
    with pytest.raises(ValueError, match="spread"):
        ars(clean, adversarial, r1_clean=50.0, spread=0.0)


def test_summary_needs_every_named_score():
    clean = _row(50.0, 2.0, 40.0, 4.0, 0.3, 0.0, 80.0, 80.0, 80.0, 100.0)
    adversarial = _row(10.0, 51.0, 60.0, 100.0, 0.65, 0.3, 40.0, 20.0, 100.0, 30.0)
    assert robustness_summary(clean, adversarial, 80.0, 1.2) == {"ERS": pytest.approx(ers(adversarial)), "ARS": pytest.approx(40.0)}
    del adversarial[SCORES[-1]]
    assert robustness_summary(clean, adversarial, 80.0, 1.2) == {"ERS": None, "ARS": None}


def test_ers_reference_puts_each_reference_score_in_place_of_its_ers_score():
    # the CUB "ACT" row with GTM 14.9 -> ERS 33.945
    values = _row(15.5, 37.7, 15.1, 32.2, 0.472, 0.821, 11.1, 9.4, 14.9, 1.0)
    same = {"GTM:ref": 14.9, "ES:D:ref": 0.821, "LTM:ref": 9.4}
    assert ers_reference(values | same) == pytest.approx(ers(values), abs=1e-12)
    # GTM:ref 24.9 adds (24.9 - 14.9) / 10 = 1.0; ES:D:ref 0.621 adds 100 * 0.2 / 2 / 10 = 1.0; LTM:ref 4.4 takes 0.5
    assert ers_reference(values | same | {"GTM:ref": 24.9}) == pytest.approx(34.945, abs=1e-9)
    assert ers_reference(values | same | {"ES:D:ref": 0.621}) == pytest.approx(34.945, abs=1e-9)
    assert ers_reference(values | same | {"LTM:ref": 4.4}) == pytest.approx(33.445, abs=1e-9)
    assert REFERENCE_SCORES == {"GTM:ref": "GTM", "ES:D:ref": "ES:D", "LTM:ref": "LTM"}
    # not every reference-rule attack run: no ERS:ref; a missing ERS score is still an error
    assert ers_reference(values) is None
    assert ers_reference(values | {"GTM:ref": 24.9, "LTM:ref": 4.4}) is None
    del values["GTT"]
    with pytest.raises(KeyError, match="GTT"):
        ers_reference(values | same)
