from recog.config import InferConfig
from recog.pipeline import plan_resources

CFG = InferConfig(input="in", output="out")


def test_one_gpu_actor_per_gpu():
    res = plan_resources({"CPU": 32, "GPU": 4}, CFG)
    assert (res.actors, res.gpus_per_actor, res.device) == (4, 1, "cuda")


def test_cpu_only_keeps_half_the_cpus_for_decoding():
    res = plan_resources({"CPU": 2}, CFG)
    assert (res.actors, res.cpus_per_actor, res.device) == (1, 1, "cpu")
    res = plan_resources({"CPU": 16}, CFG)
    assert (res.actors, res.cpus_per_actor, res.device) == (2, 4, "cpu")


def test_explicit_settings_win():
    cfg = InferConfig(input="in", output="out", actors=3, cpus_per_actor=2, batch_size=8, device="cpu")
    res = plan_resources({"CPU": 64, "GPU": 8}, cfg)
    assert (res.actors, res.cpus_per_actor, res.batch_size, res.device) == (3, 2, 8, "cpu")


def test_a_cpu_actor_never_asks_for_more_than_one_node_has():
    # 3 nodes of 2 CPUs: 3 CPUs for the model, but an actor of 3 CPUs would never be placed
    res = plan_resources({"CPU": 6}, CFG, node_cpus=2)
    assert (res.actors, res.cpus_per_actor) == (1, 2)
    res = plan_resources({"CPU": 64}, CFG, node_cpus=2)
    assert (res.actors, res.cpus_per_actor) == (16, 2)
