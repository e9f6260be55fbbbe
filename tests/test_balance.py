import pytest

from recog.balance import DecodeBalance, deferred, describe, gpu_share


def rates_of(p: float, task_s: float, read_s: float, slots: float, model: float, device: float) -> tuple[float, float]:
    """What each side delivers at share p: the CPU tasks, the predictors (module docstring)."""
    return slots / (task_s - p * (task_s - read_s)), 1 / (1 / model + p / device)


def test_the_share_balances_the_measured_h100_rates():
    # bench/gpu.py on one H100, 16 cores: PIL 2,330/s on 16 cores, Lite0 19,078/s, nvJPEG 5,839/s
    p = gpu_share(16 / 2330, 0.0, 16, 19078, 5839)
    assert p == pytest.approx(0.628, abs=0.001)
    cpu, gpu = rates_of(p, 16 / 2330, 0.0, 16, 19078, 5839)
    assert cpu == pytest.approx(gpu) and cpu == pytest.approx(6255, rel=0.001)  # 2.7x the CPUs alone
    for q in (p - 0.05, p + 0.05):  # either side of the balance is slower
        assert min(rates_of(q, 16 / 2330, 0.0, 16, 19078, 5839)) < cpu


def test_the_share_counts_what_the_tasks_spend_reading():
    # a fifth of a task's time is reading: moving the decode away gains less, so more must move
    light, heavy = gpu_share(0.01, 0.0, 10, 10_000, 5_000), gpu_share(0.01, 0.002, 10, 10_000, 5_000)
    assert light == pytest.approx(0.75) and heavy == pytest.approx(0.9)
    cpu, gpu = rates_of(heavy, 0.01, 0.002, 10, 10_000, 5_000)
    assert cpu == pytest.approx(gpu)


def test_nothing_moves_when_the_cpus_keep_up_and_all_of_it_at_most():
    assert gpu_share(0.001, 0.0, 16, 10_000, 5_000) == 0.0  # CPUs 16,000/s > the model's 10,000
    assert gpu_share(1.0, 0.0, 1, 1e6, None) == pytest.approx(1.0, abs=1e-5)  # a device not yet measured: as fast as needed
    assert gpu_share(1.0, 0.9, 1, 1e6, 1e6) == 1.0  # clamped


def test_a_unit_is_deferred_by_its_place_so_the_share_holds_over_many_units():
    ids = [f"unit-{i}" for i in range(4000)]
    assert sum(deferred(u, 0.25) for u in ids) == pytest.approx(1000, abs=80)
    assert not any(deferred(u, 0.0) for u in ids) and all(deferred(u, 1.0) for u in ids)
    assert [deferred(u, 0.5) for u in ids] == [deferred(u, 0.5) for u in ids]  # the same answer each time
    assert all(deferred(u, 0.6) for u in ids if deferred(u, 0.3))  # a larger share moves more, never others


def test_the_balance_starts_on_the_cpus_and_moves_once_both_sides_are_measured():
    b = DecodeBalance(slots=4, actors=2)
    b.decoded(100, 2.0, on_cpu=True)  # a task: 50 images/s, so 200/s on 4 slots
    assert b.share() == 0.0  # the model is not measured yet
    b.predicted(256, 0.1, 0, 0.0)  # a predictor: 2,560 images/s, two of them 5,120/s
    assert b.share() == pytest.approx(gpu_share(0.02, 0.0, 4, 5120, None))
    b.predicted(256, 0.1, 256, 0.2)  # the device decodes 1,280/s, 2,560/s for both
    b.decoded(100, 0.5, on_cpu=False)  # a deferred unit's reading
    assert b.share() == pytest.approx(gpu_share(0.02, 0.005, 4, 5120, 2560))
    state = b.state()
    assert state["cpu_decode_images_per_s"] == 200 and state["model_images_per_s"] == 5120
    assert state["device_decode_images_per_s"] == 2560 and state["images"] == {"cpu": 100, "device": 256}
    assert describe(state).startswith(f"--decode auto: 256 of 356 images decoded on the predictors' devices, share now {state['share']:.0%}")


def test_the_rates_follow_the_recent_reports():
    b = DecodeBalance(slots=1, actors=1)
    b.decoded(100, 1.0, on_cpu=True)
    b.predicted(100, 10.0, 0, 0.0)  # a first call at 10 images/s: new kernels, cold caches
    for _ in range(60):
        b.predicted(100, 0.1, 0, 0.0)  # then 1,000 images/s
    assert b.state()["model_images_per_s"] > 950  # the cumulative mean would say 100 * 61 / 16 = 381
