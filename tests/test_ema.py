"""EMA warm-up: a short run's export must reflect its training, not its initialisation."""
import torch
from torch import nn

from flexivid.training.ema import EMA


def test_ema_warmup_tracks_short_runs_and_settles_to_decay():
    p = nn.Parameter(torch.zeros(3))
    ema = EMA({"p": p}, decay=0.999)
    with torch.no_grad():
        p.fill_(1.0)  # the parameter jumps after the first step and stays
    for step in range(1, 301):
        ema.update(step)
    # without warm-up: 1 - 0.999**300 = 0.26 of the way; with it the shadow has reached the trained value
    assert ema.shadow["p"].min() > 0.99
    assert ema.decay_at(1) < 0.2 and ema.decay_at(10**6) == 0.999


def test_ema_update_is_a_function_of_the_step():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    ea, eb = EMA({"p": a}, 0.99), EMA({"p": b}, 0.99)
    with torch.no_grad():
        a.fill_(2.0)
        b.fill_(2.0)
    for s in range(1, 6):
        ea.update(s)
    eb.load_state_dict(ea.state_dict())  # resume after step 5 ...
    ea.update(6)
    eb.update(6)  # ... continues identically
    assert torch.equal(ea.shadow["p"], eb.shadow["p"])
