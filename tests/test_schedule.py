"""The noise schedule's ε: a value outside [0, 1) masked nothing (the stay probability 0/0 = NaN) and
designs came back all MASK; it is refused (a checkpoint that holds one: ``test_checkpoint.py``)."""
import math

import pytest
import torch

from sedd.schedule import LogLinearSchedule


@pytest.mark.parametrize("eps", [1.0, 1.5, -0.1, math.nan])
def test_a_schedule_eps_outside_0_to_1_is_refused(eps):
    """eps = 1 masked nothing: the stay probability was 0/0 = NaN, tau-leaping revealed nothing and
    designs came back all MASK."""
    with pytest.raises(ValueError, match="eps must be a number from 0 up to"):
        LogLinearSchedule.from_dict({"kind": "loglinear", "eps": eps})


def test_eps_zero_and_the_default_still_work():
    assert LogLinearSchedule(eps=0.0).mask_prob(torch.tensor(1.0)) == 1.0
    assert LogLinearSchedule.from_dict(LogLinearSchedule().to_dict()) == LogLinearSchedule()
