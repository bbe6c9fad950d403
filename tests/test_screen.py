"""imagecluster._screen and imagecluster._ivf: the faster pair searches for large libraries.

The screen must never lose a pair (it only proves pairs dissimilar); the
approximate search may lose pairs but never invents one, and every
similarity it reports is the full one.
"""

import numpy as np
import pytest

from imagecluster._edges import similarity_edges
from imagecluster._ivf import approximate_edges
from imagecluster._screen import _CANDIDATE_COST, _MARGIN, _PASS_COST, Screen, _candidate_shares, fit_screen


def decaying_library(n, dim=1024, seed=0):
    """Unit rows like fingerprints: bursts around shared scenes, a decaying spectrum."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(1 + np.arange(dim) / 20.0)
    scenes = rng.standard_normal((n // 3, dim)) * scale
    rows = scenes[rng.integers(0, len(scenes), n)] + 0.5 * rng.standard_normal((n, dim)) * scale
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def pairs(edges):
    return {(int(a), int(b)): float(s) for a, b, s in zip(edges.i, edges.j, edges.sim)}


@pytest.mark.parametrize("floor", [0.5, 0.7])
def test_screened_search_finds_exactly_the_pairs_of_the_plain_one(floor):
    unit = decaying_library(6000)
    screen = fit_screen(unit, floor, min_rows=0)
    assert isinstance(screen, Screen) and screen.k < unit.shape[1]  # it really screens
    plain = pairs(similarity_edges(unit, floor, screen=False))
    screened = pairs(similarity_edges(unit, floor, screen=screen))
    assert len(plain) > 1000
    undecided = {p for p, s in plain.items() if abs(s - floor) < 1e-5}
    assert set(screened) - undecided == set(plain) - undecided
    assert max(abs(screened[p] - plain[p]) for p in set(screened) & set(plain)) < 1e-5


def test_the_bound_really_is_a_bound():
    unit = decaying_library(6000)
    screen = fit_screen(unit, 0.5, min_rows=0)
    full = unit[:500] @ unit[500:].T
    bound = screen.projected[:500] @ screen.projected[500:].T + np.multiply.outer(
        screen.residual[:500], screen.residual[500:])
    assert (bound >= full - 1e-5).all()
    # The tiles get it as one product of the lifted rows (projection, then the rest's length).
    assert screen.lifted.shape == (len(unit), screen.k + 1)
    np.testing.assert_allclose(screen.lifted[:500] @ screen.lifted[500:].T, bound, atol=1e-5)
    # ... and a useful one: most pairs are ruled out without their full product.
    assert (bound >= 0.5).mean() < 0.05


def test_candidate_shares_grown_by_columns_are_those_of_each_projection():
    """fit_screen projects its sample once and grows one product; each k must see what its own projection gives."""
    unit = decaying_library(6000)
    basis = np.linalg.eigh((unit[:3000].T @ unit[:3000]).astype(np.float64))[1][:, ::-1].astype(np.float32)
    sample, ks = unit[3000:], range(128, 513, 64)
    lengths = np.einsum("ij,ij->i", sample, sample)
    grown = list(_candidate_shares(sample @ basis[:, : ks[-1]], lengths, ks, 0.5))
    for k, share in zip(ks, grown):
        p = sample @ basis[:, :k]
        residual = np.sqrt(np.maximum(lengths - np.einsum("ij,ij->i", p, p), 0) + 1e-6)
        bound = p[:1500] @ p[1500:].T + np.multiply.outer(residual[:1500], residual[1500:])
        assert share == pytest.approx(float((bound >= 0.5 - _MARGIN).mean()), abs=1e-4), k
    assert grown[0] > 10 * grown[-1]  # the shares really differ from one k to the next


def test_fit_stops_early_only_where_no_larger_k_could_be_chosen():
    """fit_screen stops judging k once the candidates cost less than 64 more columns: the k it picks is the
    cheapest of all."""
    unit = decaying_library(6000)
    screen = fit_screen(unit, 0.5, min_rows=0)
    rng = np.random.default_rng(0)
    drawn = rng.permutation(len(unit))[: 2 * 16384]
    fit, sample = unit[np.sort(drawn[::2])], unit[np.sort(drawn[1::2])]
    order = np.linalg.eigh((fit.T @ fit).astype(np.float64))[1][:, ::-1].astype(np.float32)
    ks = range(128, unit.shape[1] // 2 + 1, 64)
    shares = list(_candidate_shares(sample @ order[:, : ks[-1]], np.einsum("ij,ij->i", sample, sample), ks, 0.5))
    costs = [k + 1 + _PASS_COST + share * unit.shape[1] * _CANDIDATE_COST for k, share in zip(ks, shares)]
    assert screen.k == ks[int(np.argmin(costs))]
    assert screen.k < ks[-1]  # there were larger k to skip


def test_no_screen_where_it_cannot_pay():
    rng = np.random.default_rng(0)
    iid = rng.standard_normal((3000, 512)).astype(np.float32)  # no principal components to speak of
    iid /= np.linalg.norm(iid, axis=1, keepdims=True)
    assert fit_screen(iid, 0.5, min_rows=0) is None
    assert fit_screen(decaying_library(3000), 0.5) is None  # small: the plain product is fast enough
    assert fit_screen(decaying_library(3000, dim=64), 0.5, min_rows=0) is None


def test_approximate_search_finds_most_pairs_and_invents_none():
    unit = decaying_library(6000)
    exact = pairs(similarity_edges(unit, 0.5, screen=False))
    found = pairs(approximate_edges(unit, 0.5, cells=24, probes=4))
    assert set(found) <= set(exact)
    assert max(abs(found[p] - exact[p]) for p in found) < 1e-5
    assert len(found) >= 0.9 * len(exact)
    # Probing every cell is the exact search.
    assert set(pairs(approximate_edges(unit, 0.5, cells=24, probes=24))) == set(exact)


def test_approximate_search_progress_and_tiny_inputs():
    seen = []
    unit = decaying_library(600)
    approximate_edges(unit, 0.5, cells=6, probes=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (6, 6) and len(seen) == 6
    assert len(approximate_edges(unit[:1], 0.5)) == 0
