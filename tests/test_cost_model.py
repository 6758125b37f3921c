"""The preemption cost model: fit, save/load, and the cheaper mode per victim."""

from __future__ import annotations

from engine.local.cost_model import CostModel, Fit


def test_quadratic_fit_recovers_the_curve():
    tokens = [16, 64, 256, 1024, 4096]
    fit = Fit.of(tokens, [2e-8 * n * n + 1e-4 * n + 0.01 for n in tokens])
    assert abs(fit.seconds(2048) - (2e-8 * 2048**2 + 1e-4 * 2048 + 0.01)) < 1e-6


def test_mode_is_recompute_without_an_offload_path(tmp_path):
    model = CostModel(Fit(0, 1e-4, 0, 16, 8192), swap=None, machine="cpu", model="tiny")
    assert model.mode(10) == model.mode(8000) == "recompute"
    path = tmp_path / "profile.json"
    model.save(path)
    assert CostModel.load(path) == model


def test_swap_wins_where_it_is_cheaper():
    # Recompute grows quadratically, swap linearly with a fixed cost: swap wins for long prompts.
    model = CostModel(Fit(1e-7, 1e-5, 0, 16, 8192), swap=Fit(0, 1e-6, 0.02, 16, 8192))
    assert model.mode(64) == "recompute"
    assert model.mode(8000) == "swap"
