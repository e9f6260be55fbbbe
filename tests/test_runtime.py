"""Sizing the predictor pool, the units and the training workers to a cluster (no Ray needed)."""

import math

import pytest

from recog import runtime
from recog.config import InferConfig, TrainConfig, VehiclesConfig
from recog.errors import ClusterError
from recog.runtime import UNIT_IMAGES, choose_unit_size, images_per_unit, predictor_pool, training_workers

CFG = InferConfig(input="in", output="out")


def test_one_gpu_actor_per_gpu():
    res = predictor_pool({"CPU": 32, "GPU": 4}, CFG)
    assert (res.actors, res.gpus_per_actor, res.device) == (4, 1, "cuda")


def test_cpu_only_runs_one_single_threaded_actor_per_core_and_leaves_room_to_decode():
    for cpus in (1, 2, 16):
        res = predictor_pool({"CPU": cpus}, CFG, node_cpus=cpus)
        assert (res.actors, res.threads, res.device, res.batch_size) == (cpus, 1, "cpu", 16)
        assert res.actors * res.cpus_per_actor + res.decode_cpus <= cpus  # a decode task always fits
    res = predictor_pool({"CPU": 16, "memory": 6 << 30}, CFG)
    assert res.actors == 6  # no more actors than the RAM holds


def test_a_layout_that_would_never_be_placed_is_refused():
    with pytest.raises(ClusterError, match="largest node has 2 CPU"):
        predictor_pool({"CPU": 6}, InferConfig(input="in", output="out", cpus_per_actor=4), node_cpus=2)
    with pytest.raises(ClusterError, match="ask for at most 2"):
        predictor_pool({"CPU": 2}, InferConfig(input="in", output="out", actors=3))
    with pytest.raises(ClusterError, match="no GPUs"):
        predictor_pool({"CPU": 2}, InferConfig(input="in", output="out", device="cuda"))


def test_explicit_settings_win():
    cfg = InferConfig(input="in", output="out", actors=3, cpus_per_actor=2, batch_size=8, device="cpu")
    res = predictor_pool({"CPU": 64, "GPU": 8}, cfg)
    assert (res.actors, res.threads, res.batch_size, res.device) == (3, 2, 8, "cpu")


def test_a_cpu_actor_never_asks_for_more_than_one_node_has():
    # 3 nodes of 2 CPUs: two actors fit on each node, beside a decode task
    res = predictor_pool({"CPU": 6}, CFG, node_cpus=2)
    assert res.actors == 6 and 2 * res.cpus_per_actor + res.decode_cpus <= 2
    res = predictor_pool({"CPU": 64}, InferConfig(input="in", output="out", cpus_per_actor=2), node_cpus=2)
    assert (res.actors, res.threads) == (32, 2) and res.cpus_per_actor + res.decode_cpus <= 2


def test_workers_leave_a_cpu_for_data_and_gpus_are_checked():
    cfg = TrainConfig(train="t", output="o", workers=2)
    assert training_workers({"CPU": 2}, cfg).resources == {"CPU": 0.5}
    assert training_workers({"CPU": 16}, cfg).resources == {"CPU": 4.0}
    assert training_workers({"CPU": 16}, cfg, node_cpus=2).resources == {"CPU": 2.0}  # 8 nodes of 2
    gpu = TrainConfig(train="t", output="o", workers=4, gpus_per_worker=1)
    assert training_workers({"CPU": 32, "GPU": 4}, gpu).use_gpu
    with pytest.raises(ClusterError, match="need 4 GPUs; the cluster has 2"):
        training_workers({"CPU": 32, "GPU": 2}, gpu)


def test_units_hold_enough_images_that_scheduling_carries_twice_the_planned_rate():
    assert images_per_unit(400, 70, 10**6, 2) == 256  # this machine: 256 carries 17,920 images/s
    assert images_per_unit(30_000, 100, 10**6, 3) == 1024  # 3 GPUs: 600 needed, the next power of two
    assert images_per_unit(16_000, 100, 10**6, 2) == 512  # 320 needed
    assert images_per_unit(10**7, 1, 10**9, 1) == UNIT_IMAGES[1]  # never more than a block should hold
    # ... but each predictor keeps 4 units to work on, down to the smallest size
    assert images_per_unit(30_000, 100, 6_000, 3) == 256
    assert images_per_unit(80_000, 100, 100, 8) == UNIT_IMAGES[0]


def test_the_unit_size_is_measured_for_only_when_the_smallest_might_not_do():
    def never():
        raise AssertionError("measured Ray Data on a cluster the smallest unit size carries")

    cpu = choose_unit_size({"CPU": 2}, predictor_pool({"CPU": 2}, CFG), 10**6, measure=never)
    assert (cpu.images, cpu.planned_images_per_s, cpu.units_per_s) == (256, 200, None)
    assert "planned at 200 images/s" in cpu.describe()
    assert choose_unit_size({"CPU": 64}, predictor_pool({"CPU": 64}, CFG), 10**6, measure=never).images == 256
    cluster = {"CPU": 128, "GPU": 8}
    gpus = choose_unit_size(cluster, predictor_pool(cluster, CFG), 10**6, measure=lambda: 100.0)
    assert (gpus.images, gpus.planned_images_per_s, gpus.units_per_s) == (1024, 80_000, 100.0)
    assert gpus.describe().endswith("1024 a unit carries it 1.3x over")  # the most a unit holds
    # one GPU on a machine whose Ray Data moves 150 units/s: 256 carries 38,400 images/s, twice 10,000
    one = {"CPU": 16, "GPU": 1}
    assert choose_unit_size(one, predictor_pool(one, CFG), 10**6, measure=lambda: 150.0).images == 256


def test_the_vehicles_job_tracks_on_every_core_beside_its_classifier_and_a_writer():
    for cluster in ({"CPU": 1}, {"CPU": 2}, {"CPU": 16}, {"CPU": 64}, {"CPU": 16, "GPU": 1}):
        pool = runtime.crop_classifier_pool(cluster, VehiclesConfig(input="in", output="out"))
        held = pool.actors * pool.cpus_per_actor + runtime.WRITER_CPUS
        tasks = math.floor((cluster["CPU"] - held) / pool.decode_cpus + 1e-9)
        assert tasks == cluster["CPU"] and runtime.decode_slots(cluster, pool) >= cluster["CPU"]  # one a core, all of them


def test_segments_are_as_long_as_keeps_every_core_busy_to_the_end():
    one = runtime.choose_segment_seconds([120.0], 2, 11.0)  # two cores, one 2-minute clip: one half each
    assert (one.seconds, one.busiest_s) == (60, 71)
    assert runtime.choose_segment_seconds([120.5], 2, 11.0).seconds == 61  # not a third segment of half a second
    assert runtime.choose_segment_seconds([3600.0], 2, 11.0).seconds == 300  # the longest: the fewest warm-ups
    many = runtime.choose_segment_seconds([3600.0], 64, 11.0)  # 64 cores: about one segment each
    assert many.seconds < 60 and many.busiest_s < 1.2 * (3600 + 63 * 11) / 64
    assert runtime.choose_segment_seconds([30.0] * 1000, 64, 11.0).seconds == 300  # short files are segments already
    assert runtime.choose_segment_seconds([30.0], 64, 11.0).seconds >= 11  # never shorter than its warm-up
    assert "2 tracking slot(s)" in one.describe() and "1.18x an even share" in one.describe()
