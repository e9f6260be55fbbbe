"""Sizing the predictor pool and the training workers to a cluster (no Ray needed)."""

import pytest

from recog.config import InferConfig, TrainConfig
from recog.errors import ClusterError
from recog.runtime import predictor_pool, training_workers

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
