"""Epoch sampler: coverage, ranges, sharding, determinism, resume, and native == Python twin."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echoclr.data import (
    PLAN_FIELDS,
    AugmentDraws,
    EpochPlan,
    SamplerConfig,
    all_permutations,
    common_steps,
    index_from_permutation,
    num_orders,
    permutation_from_index,
    plan_epoch,
    rank_item_counts,
)
from echoclr.data import sampling
from echoclr.native import native

BACKENDS = ["native", "python"]
U64_MAX = (1 << 64) - 1


def make_index(n_studies: int, max_videos: int, seed: int, max_frames: int = 40):
    """Random index: studies with 1..max_videos videos, shuffled video order, sparse study ids."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_videos + 1, size=n_studies)
    study_ids = rng.choice(10 * n_studies, size=n_studies, replace=False)
    study = np.repeat(study_ids, sizes)
    study = study[rng.permutation(study.size)]
    frames = rng.integers(1, max_frames + 1, size=study.size)
    return study.astype(np.int64), frames.astype(np.int64)


def expected_pairs(study: np.ndarray) -> Counter:
    """Every unordered pair of distinct videos per study once; a singleton study pairs with itself."""
    out: Counter = Counter()
    for s in np.unique(study):
        vids = np.flatnonzero(study == s).tolist()
        if len(vids) == 1:
            out[(vids[0], vids[0])] += 1
        for a, b in itertools.combinations(vids, 2):
            out[(a, b)] += 1
    return out


def records(plan: EpochPlan) -> list[tuple[int, ...]]:
    return list(zip(*(plan.fields[name].tolist() for name in PLAN_FIELDS[plan.mode])))


def assert_same_plan(a: EpochPlan, b: EpochPlan) -> None:
    assert a.mode == b.mode
    assert tuple(a.fields) == tuple(b.fields) == PLAN_FIELDS[a.mode]
    for name in a.fields:
        assert a.fields[name].dtype == b.fields[name].dtype == np.int64, name
        np.testing.assert_array_equal(a.fields[name], b.fields[name], err_msg=name)


# --- permutations ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_permutation_numbering_is_lexicographic_and_round_trips(k):
    reference = list(itertools.permutations(range(k)))
    assert num_orders(k) == len(reference) == math.factorial(k)
    table = all_permutations(k)
    assert table.shape == (math.factorial(k), k) and table.dtype == np.int64
    for idx, perm in enumerate(reference):
        assert permutation_from_index(idx, k) == perm
        assert tuple(table[idx]) == perm
        assert index_from_permutation(perm) == idx
    assert tuple(table[0]) == tuple(range(k))  # 0 = identity


def test_permutations_refuse_bad_input():
    with pytest.raises(ValueError, match="720"):
        num_orders(6)
    with pytest.raises(ValueError, match="720"):
        all_permutations(6)
    with pytest.raises(ValueError, match=r"\[0, 24\)"):
        permutation_from_index(24, 4)
    with pytest.raises(ValueError, match="permutation of range"):
        index_from_permutation((0, 0, 1))
    with pytest.raises(ValueError, match=">= 1"):
        num_orders(0)


# --- configuration and input validation ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "triplets"}, "mode"),
        ({"mode": "pairs", "clip_len": 0}, "clip_len"),
        ({"mode": "pairs", "seed": -1}, "seed"),
        ({"mode": "pairs", "seed": 1 << 64}, "seed"),
        ({"mode": "eval", "n_clips": 0}, "n_clips"),
        ({"mode": "single", "clip_len": 16}, "reorder=False"),
        ({"mode": "pairs", "reorder": "yes"}, "reorder"),
        ({"mode": "pairs", "augment": {"pad": 8}}, "AugmentDraws or None"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplerConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pad": -1}, "pad"),
        ({"pad": 2.5}, "pad"),
        ({"flip_p": 1.5}, "flip_p"),
        ({"rotate_p": -0.1}, "rotate_p"),
        ({"max_angle_deg": 0.0}, "max_angle_deg"),
        ({"max_angle_deg": 0.0004}, "max_angle_deg"),
        ({"max_angle_deg": 200.0}, "max_angle_deg"),
    ],
)
def test_augment_draws_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentDraws(**kwargs)


def test_config_allows_long_clips_without_reordering():
    assert SamplerConfig("single", clip_len=16, reorder=False).num_orders == 1
    assert SamplerConfig("eval", clip_len=16).num_orders == 1
    assert SamplerConfig("pairs", clip_len=4).num_orders == 24


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "study, frames, kwargs, match",
    [
        ([0, 0, 1], [5, 5], {}, "lengths 3 and 2"),
        ([0, 0, 1], [5, -3, 5], {}, "video 1 has -3"),
        ([0, 0, 1], [5, 0, 5], {}, "video 1 has 0"),
        ([0.5, 0, 1], [5, 5, 5], {}, "integers"),
        ([[0, 1]], [[5, 5]], {}, "1-D"),
        ([0, 0, 1], [5, 5, 5], {"rank": 2, "world_size": 2}, "rank"),
        ([0, 0, 1], [5, 5, 5], {"world_size": 0}, "world_size"),
        ([0, 0, 1], [5, 5, 5], {"epoch": -1}, "epoch"),
        ([0, 0, 1], [5, 5, 5], {"start_item": 3}, "start_item 3"),  # 2 items: {0,1} and {2,2}
        ([0, 0, 1], [5, 5, 5], {"start_item": -1}, "start_item"),
    ],
)
def test_plan_rejects_bad_input(backend, study, frames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_epoch(SamplerConfig("pairs"), study, frames, **{"epoch": 0, **kwargs}, backend=backend)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        plan_epoch(SamplerConfig("pairs"), [0], [5], epoch=0, backend="cuda")


# --- pairs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_cover_every_study_pair_exactly_once(backend):
    study, frames = make_index(n_studies=60, max_videos=6, seed=1)
    plan = plan_epoch(SamplerConfig("pairs"), study, frames, epoch=0, backend=backend)
    vi, vj = plan.fields["video_i"], plan.fields["video_j"]
    got = Counter((min(a, b), max(a, b)) for a, b in zip(vi.tolist(), vj.tolist()))
    assert got == expected_pairs(study)
    assert (study[vi] == study[vj]).all()
    singles = Counter(study.tolist())
    for a, b in zip(vi.tolist(), vj.tolist()):
        assert (a == b) == (singles[study[a]] == 1)
    # which video is "i" is random: both orientations occur
    distinct = vi != vj
    assert 0.3 < np.mean(vi[distinct] < vj[distinct]) < 0.7
    # the order is shuffled, not grouped by study
    assert (np.diff(study[vi]) != 0).mean() > 0.5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pairs", "single"])
def test_starts_cover_every_valid_start_inclusive(backend, mode):
    k = 4
    frames = np.array([k + 2, k - 2, k, 1, 30], dtype=np.int64)  # last starts 2, 0, 0, 0, 26
    study = np.arange(frames.size, dtype=np.int64)  # singleton studies: pairs give (v, v)
    last = np.maximum(frames - k, 0)
    seen = [set() for _ in frames]
    for epoch in range(60):
        plan = plan_epoch(SamplerConfig(mode, clip_len=k), study, frames, epoch=epoch, backend=backend)
        names = ("video_i", "start_i", "video_j", "start_j") if mode == "pairs" else ("video", "start")
        for vname, sname in zip(names[::2], names[1::2]):
            v, s = plan.fields[vname], plan.fields[sname]
            assert ((s >= 0) & (s <= last[v])).all()
            for video, start in zip(v.tolist(), s.tolist()):
                seen[video].add(start)
    assert seen[0] == {0, 1, 2}  # the last valid start (n_frames - K) is reachable
    assert seen[1] == seen[2] == seen[3] == {0}
    assert len(seen[4]) > 15 and max(seen[4]) >= 24  # spread over 0..26


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip_len", [3, 4, 5])
def test_perms_in_range_and_roughly_uniform(backend, clip_len):
    n_classes = math.factorial(clip_len)
    study = np.arange(40 * n_classes, dtype=np.int64)
    frames = np.full(study.size, 10, dtype=np.int64)
    plan = plan_epoch(SamplerConfig("single", clip_len=clip_len), study, frames, epoch=2, backend=backend)
    perms = np.concatenate([plan.fields["perm_a"], plan.fields["perm_b"]])
    assert perms.min() >= 0 and perms.max() < n_classes
    counts = np.bincount(perms, minlength=n_classes)
    expected = perms.size / n_classes  # 80 per class
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < n_classes + 6 * math.sqrt(2 * n_classes)  # ~6 sigma above the chi2 mean
    assert not np.array_equal(plan.fields["perm_a"], plan.fields["perm_b"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reorder_off_gives_identity_perms(backend):
    study, frames = make_index(n_studies=30, max_videos=4, seed=2)
    for mode in ("pairs", "single"):
        plan = plan_epoch(SamplerConfig(mode, reorder=False), study, frames, epoch=1, backend=backend)
        perm_names = [n for n in PLAN_FIELDS[mode] if n.startswith("perm")]
        assert len(plan) > 0 and all((plan.fields[n] == 0).all() for n in perm_names)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_visits_each_video_once_shuffled(backend):
    study, frames = make_index(n_studies=50, max_videos=4, seed=3)
    plan = plan_epoch(SamplerConfig("single"), study, frames, epoch=0, backend=backend)
    video = plan.fields["video"]
    assert sorted(video.tolist()) == list(range(study.size))
    assert not np.array_equal(video, np.arange(study.size))


# --- sharding -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pairs", "single", "eval"])
@pytest.mark.parametrize("world_size", [2, 3, 5])
def test_shards_are_disjoint_cover_the_epoch_and_keep_studies_whole(backend, mode, world_size):
    study, frames = make_index(n_studies=40, max_videos=5, seed=4)
    config = SamplerConfig(mode)
    whole = plan_epoch(config, study, frames, epoch=7, backend=backend)
    counts = rank_item_counts(config, study, frames, epoch=7, world_size=world_size, backend=backend)
    assert counts.shape == (world_size,) and counts.sum() == len(whole)
    union: Counter = Counter()
    studies_of_rank = []
    for rank in range(world_size):
        shard = plan_epoch(config, study, frames, epoch=7, rank=rank, world_size=world_size, backend=backend)
        assert len(shard) == counts[rank]
        union.update(records(shard))
        video_names = [n for n in PLAN_FIELDS[mode] if n.startswith("video")]
        studies_of_rank.append(set(np.concatenate([study[shard.fields[n]] for n in video_names]).tolist()))
    # the union, item for item with every drawn field, is the single-rank epoch
    assert union == Counter(records(whole))
    for a, b in itertools.combinations(studies_of_rank, 2):
        assert not a & b  # a study (so both videos of a pair) lives on one rank


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_are_balanced_for_realistic_studies(backend):
    # ~3.3 videos per study as in the paper's cohort (29,978 videos / 9,122 studies), scaled down
    rng = np.random.default_rng(5)
    sizes = rng.choice([1, 2, 3, 4, 5, 6, 8], p=[0.15, 0.2, 0.25, 0.2, 0.1, 0.06, 0.04], size=1500)
    study = np.repeat(np.arange(sizes.size), sizes)
    frames = np.full(study.size, 50)
    for mode in ("pairs", "single"):
        for epoch in range(3):
            config = SamplerConfig(mode)
            counts = rank_item_counts(config, study, frames, epoch=epoch, world_size=8, backend=backend)
            assert counts.max() - counts.min() <= 1, counts
    steps = common_steps(counts, batch_size=49)
    assert steps == counts.min() // 49 and steps * 49 <= counts.min()


@pytest.mark.parametrize("backend", BACKENDS)
def test_study_assignment_changes_with_epoch(backend):
    study, frames = make_index(n_studies=40, max_videos=5, seed=6)
    config = SamplerConfig("pairs")
    shards = [
        plan_epoch(config, study, frames, epoch=e, rank=0, world_size=2, backend=backend) for e in (0, 1)
    ]
    studies = [set(study[shard.fields["video_i"]].tolist()) for shard in shards]
    assert studies[0] != studies[1]


def test_common_steps_validates():
    assert common_steps([10, 9, 12], 3) == 3
    with pytest.raises(ValueError, match="batch_size"):
        common_steps([10], 0)
    with pytest.raises(ValueError, match="empty"):
        common_steps([], 4)


# --- determinism and resume -----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pairs", "single"])
def test_plans_are_deterministic_and_vary_with_epoch_and_seed(backend, mode):
    study, frames = make_index(n_studies=30, max_videos=5, seed=7)
    def plan(seed: int, epoch: int) -> EpochPlan:
        return plan_epoch(SamplerConfig(mode, seed=seed), study, frames, epoch=epoch, backend=backend)

    reference = plan(11, 3)
    assert_same_plan(reference, plan(11, 3))
    video, start = PLAN_FIELDS[mode][:2]
    for other in (plan(11, 4), plan(12, 3)):
        assert not np.array_equal(other.fields[video], reference.fields[video])
        # same videos, re-drawn starts: compare each video's start across the two plans
        by_video = dict(zip(other.fields[video].tolist(), other.fields[start].tolist()))
        pairs = zip(reference.fields[video].tolist(), reference.fields[start].tolist())
        same = [by_video.get(v) == s for v, s in pairs]
        assert np.mean(same) < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pairs", "single", "eval"])
def test_start_item_resumes_at_the_tail(backend, mode):
    study, frames = make_index(n_studies=25, max_videos=4, seed=8)
    config = SamplerConfig(mode, seed=3)
    full = plan_epoch(config, study, frames, epoch=5, rank=1, world_size=3, backend=backend)
    for k in (0, 1, len(full) // 2, len(full)):
        tail = plan_epoch(config, study, frames, epoch=5, rank=1, world_size=3, start_item=k, backend=backend)
        assert len(tail) == len(full) - k
        assert_same_plan(tail, full[k:])


# --- augmentation draws ---------------------------------------------------------------------


def view_table(plan: EpochPlan, suffix: str) -> np.ndarray:
    """(n, 4) dy, dx, flip, angle_mdeg of one view."""
    return np.stack([plan.fields[name] for name in sampling.view_fields(suffix)], axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_augment_draws_follow_their_distributions(backend):
    study = np.arange(6000, dtype=np.int64)  # 6000 single-video studies: 6000 items
    frames = np.full(6000, 10, dtype=np.int64)
    draws = AugmentDraws(pad=3, flip_p=0.25, rotate_p=0.75, max_angle_deg=7.0)
    plan = plan_epoch(SamplerConfig("single", seed=5, augment=draws), study, frames, epoch=2, backend=backend)
    for suffix in ("a", "b"):
        dy, dx, flip, mdeg = view_table(plan, suffix).T
        for shift in (dy, dx):
            values, counts = np.unique(shift, return_counts=True)
            np.testing.assert_array_equal(values, np.arange(-3, 4))  # every shift in [-pad, pad]
            assert counts.min() > 0.8 * len(shift) / 7 and counts.max() < 1.2 * len(shift) / 7
        assert set(np.unique(flip)) == {0, 1} and abs(flip.mean() - 0.25) < 0.03
        rotated = mdeg != 0
        assert abs(rotated.mean() - 0.75) < 0.03
        assert mdeg.min() >= -7000 and mdeg.max() < 7000 and abs(mdeg[rotated].mean()) < 300
    # the two views are drawn independently
    assert np.mean(plan.fields["dy_a"] == plan.fields["dy_b"]) < 0.25


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pairs", "single"])
def test_augment_draws_are_a_pure_function_of_seed_epoch_and_item(backend, mode):
    # the same item gets the same parameters whatever the sharding, the item order or the resume point
    study, frames = make_index(n_studies=40, max_videos=4, seed=12)
    config = SamplerConfig(mode, seed=21)
    key = ("video_i", "video_j") if mode == "pairs" else ("video",)
    suffixes = ("i", "j") if mode == "pairs" else ("a", "b")

    def by_item(plan: EpochPlan) -> dict:
        ids = zip(*(plan.fields[k].tolist() for k in key))
        params = np.concatenate([view_table(plan, s) for s in suffixes], axis=1).tolist()
        return dict(zip(ids, map(tuple, params)))

    whole = by_item(plan_epoch(config, study, frames, epoch=3, backend=backend))
    sharded: dict = {}
    for rank in range(3):
        shard = plan_epoch(config, study, frames, epoch=3, rank=rank, world_size=3, start_item=0, backend=backend)
        sharded.update(by_item(shard))
    assert sharded == whole
    other_epoch = by_item(plan_epoch(config, study, frames, epoch=4, backend=backend))
    assert np.mean([other_epoch.get(k) == v for k, v in whole.items()]) < 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_augment_none_and_eval_plans_draw_no_augmentation(backend):
    study, frames = make_index(n_studies=10, max_videos=3, seed=13)
    plan = plan_epoch(SamplerConfig("pairs", augment=None), study, frames, epoch=0, backend=backend)
    for suffix in ("i", "j"):
        assert not view_table(plan, suffix).any()
    certain = AugmentDraws(pad=0, flip_p=1.0, rotate_p=0.0)
    plan = plan_epoch(SamplerConfig("single", augment=certain), study, frames, epoch=0, backend=backend)
    dy, dx, flip, mdeg = view_table(plan, "a").T
    assert not dy.any() and not dx.any() and flip.all() and not mdeg.any()
    assert tuple(plan_epoch(SamplerConfig("eval"), study, frames, epoch=0, backend=backend).fields) == (
        "video", "start", "clip_index")


# --- eval -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_clips_are_evenly_spaced_by_the_documented_rule(backend):
    frames = np.array([4, 5, 10, 100, 2], dtype=np.int64)  # K=4: last starts L = 0, 1, 6, 96, 0
    study = np.array([3, 3, 1, 0, 1], dtype=np.int64)
    config = SamplerConfig("eval", clip_len=4, n_clips=4, seed=99)
    plan = plan_epoch(config, study, frames, epoch=9, backend=backend)
    np.testing.assert_array_equal(plan.fields["video"], np.repeat(np.arange(5), 4))
    np.testing.assert_array_equal(plan.fields["clip_index"], np.tile(np.arange(4), 5))
    # start_k = floor(k * L / 3)
    expected = [[0, 0, 0, 0], [0, 0, 0, 1], [0, 2, 4, 6], [0, 32, 64, 96], [0, 0, 0, 0]]
    np.testing.assert_array_equal(plan.fields["start"], np.ravel(expected))
    one = plan_epoch(SamplerConfig("eval", clip_len=4, n_clips=1), study, frames, epoch=0, backend=backend)
    np.testing.assert_array_equal(one.fields["start"], [0, 0, 3, 48, 0])  # floor(L / 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_ignores_seed_and_epoch(backend):
    study, frames = make_index(n_studies=20, max_videos=4, seed=9, max_frames=200)
    shard = dict(rank=1, world_size=2, backend=backend)
    a = plan_epoch(SamplerConfig("eval", clip_len=16, seed=1), study, frames, epoch=0, **shard)
    b = plan_epoch(SamplerConfig("eval", clip_len=16, seed=2), study, frames, epoch=5, **shard)
    assert_same_plan(a, b)
    last = np.maximum(frames[a.fields["video"]] - 16, 0)
    k = a.fields["clip_index"]
    np.testing.assert_array_equal(a.fields["start"], (k * last) // 3)


# --- native == python twin ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pairs", "single", "eval"])
@pytest.mark.parametrize("seed, epoch, world_size", [(0, 0, 1), (12345, 17, 3), (U64_MAX, (1 << 64) - 1, 4)])
def test_native_equals_python_for_fixed_seeds(mode, seed, epoch, world_size):
    study, frames = make_index(n_studies=80, max_videos=7, seed=10)
    config = SamplerConfig(mode, seed=seed)
    for rank in range(world_size):
        args = dict(epoch=epoch, rank=rank, world_size=world_size)
        assert_same_plan(
            plan_epoch(config, study, frames, **args, backend="native"),
            plan_epoch(config, study, frames, **args, backend="python"),
        )
    np.testing.assert_array_equal(
        rank_item_counts(config, study, frames, epoch=epoch, world_size=world_size, backend="native"),
        rank_item_counts(config, study, frames, epoch=epoch, world_size=world_size, backend="python"),
    )


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    videos=st.lists(st.tuples(st.integers(-3, 6), st.integers(1, 12)), min_size=0, max_size=20),
    mode=st.sampled_from(["pairs", "single", "eval"]),
    clip_len=st.integers(1, 5),
    reorder=st.booleans(),
    n_clips=st.integers(1, 5),
    seed=st.integers(0, U64_MAX),
    epoch=st.integers(0, U64_MAX),
    world_size=st.integers(1, 4),
    augment=st.one_of(
        st.none(),
        st.builds(
            AugmentDraws,
            pad=st.integers(0, 20),
            flip_p=st.floats(0.0, 1.0),
            rotate_p=st.floats(0.0, 1.0),
            max_angle_deg=st.floats(0.001, 180.0),
        ),
    ),
)
def test_native_equals_python_for_random_indices(
    data, videos, mode, clip_len, reorder, n_clips, seed, epoch, world_size, augment
):
    study = np.array([s for s, _ in videos], dtype=np.int64)
    frames = np.array([f for _, f in videos], dtype=np.int64)
    config = SamplerConfig(mode, clip_len=clip_len, seed=seed, reorder=reorder, n_clips=n_clips, augment=augment)
    counts = rank_item_counts(config, study, frames, epoch=epoch, world_size=world_size, backend="native")
    np.testing.assert_array_equal(
        counts, rank_item_counts(config, study, frames, epoch=epoch, world_size=world_size, backend="python")
    )
    rank = data.draw(st.integers(0, world_size - 1), label="rank")
    start_item = data.draw(st.integers(0, int(counts[rank])), label="start_item")
    args = dict(epoch=epoch, rank=rank, world_size=world_size, start_item=start_item)
    native_plan = plan_epoch(config, study, frames, **args, backend="native")
    assert len(native_plan) == counts[rank] - start_item
    assert_same_plan(native_plan, plan_epoch(config, study, frames, **args, backend="python"))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, U64_MAX),
    epoch=st.integers(0, U64_MAX),
    stream=st.integers(0, 12),
    counter=st.integers(0, U64_MAX),
    bound=st.one_of(
        st.integers(1, 1000), st.integers(1, U64_MAX), st.integers((1 << 63) + 1, (1 << 63) + 1000)
    ),
)
def test_rng_primitives_match_including_rejections(seed, epoch, stream, counter, bound):
    key = sampling.stream_key(seed, epoch, stream, 0)
    assert key == native().stream_key(seed, epoch, stream, 0)
    value = int(sampling.uniform_below(key, np.array([counter], dtype=np.uint64), bound)[0])
    assert value == native().uniform_below(key, counter, bound)
    assert 0 <= value < bound


def test_uniform_below_rejects_to_stay_unbiased():
    # bound = 2/3 of 2**64: a plain x % bound would put 2/3 of the values below bound / 2
    # (raw draws in [bound, 2**64) fold onto [0, bound / 2)); rejection keeps it at 1/2.
    bound = (1 << 65) // 3
    key = sampling.stream_key(1, 2, 3, 0)
    values = sampling.uniform_below(key, np.arange(4000, dtype=np.uint64), bound)
    assert values.max() < np.uint64(bound)
    assert 0.45 < np.mean(values < np.uint64(bound // 2)) < 0.55


# --- EpochPlan ------------------------------------------------------------------------------


def test_epoch_plan_slicing_and_validation():
    plan = plan_epoch(SamplerConfig("single"), [0, 0, 1, 2], [9, 9, 9, 9], epoch=0, backend="python")
    assert len(plan) == 4 and len(plan[1:3]) == 2
    item = plan[1]
    assert set(item) == set(PLAN_FIELDS["single"]) and item["video"] == plan.fields["video"][1]
    with pytest.raises(IndexError, match="out of range"):
        plan[4]
    with pytest.raises(ValueError, match="fields"):
        EpochPlan("pairs", dict(plan.fields))
    bad = dict(plan.fields, start=plan.fields["start"][:2])
    with pytest.raises(ValueError, match="1-D int64"):
        EpochPlan("single", bad)
