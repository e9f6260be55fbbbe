"""Where JPEGs are decoded under `--decode auto`: the share of units whose JPEGs go to the
predictors' devices (nvJPEG on a GPU) rather than being decoded by the CPU tasks, set from rates
measured while the job runs.

The CPU tasks deliver S / (c - p * d) images/s, where S is how many run at once, c their seconds
per image when they decode (reading included), d the part of c that decoding is, and p the
share deferred. The predictors, which run the model and decode the deferred share in turn, take
1 / (1/M + p/D) images/s, M being their model rate and D their decode rate. Neither side waits
when the two are equal:

    p = (c - S/M) / (d + S/D)        clamped to [0, 1]; 0 when the CPUs outpace the model

On one H100 with 16 cores (bench/gpu.py: PIL 2,330/s on 16 cores, Lite0 19,078/s, nvJPEG 5,839/s)
that is p = 0.63 and about 6,200 images/s, against 2,330 with the CPUs decoding everything.

The job starts with p = 0 (every unit decoded on CPU), so the first units measure c; the first
predictor calls measure M; D is measured once some units are deferred. M is what the predictor
takes inside the job, not the model alone: on that H100 its host work (blocks to device tensors,
the output columns) held it to 1,400-2,900 images/s, so auto kept most decoding on the CPUs. `DecodeBalance` holds the
totals and the share: a plain class, which the job runs as one Ray actor that the decode tasks
ask before each unit and that both sides report their timings to.
"""

from __future__ import annotations

import hashlib


def gpu_share(task_s: float, read_s: float, slots: float, model_rate: float, device_rate: float | None) -> float:
    """The share of images to decode on the predictors' devices (module docstring): `task_s` the
    CPU tasks' seconds per image when decoding, `read_s` when not (reading and a header only),
    `slots` how many tasks run at once, `model_rate` and `device_rate` the predictors' images/s
    together (`device_rate` None while unmeasured: taken as unbounded)."""
    decode_s = max(task_s - read_s, 1e-9)
    spare = task_s - slots / model_rate  # > 0: the CPUs are slower than the model
    if spare <= 0:
        return 0.0
    return min(1.0, spare / (decode_s + (slots / device_rate if device_rate else 0.0)))


def deferred(unit_id: str, share: float) -> bool:
    """Whether a unit's JPEGs go to the device: a fixed position per unit (a hash of its id), so
    that `share` of the units go, whichever task asks."""
    position = int.from_bytes(hashlib.blake2b(unit_id.encode(), digest_size=8).digest(), "big") / 2**64
    return position < share


class DecodeBalance:
    """Totals of measured work and the share they give. `slots`: decode tasks that run at once;
    `actors`: predictors (each reports its own time; their rates add up)."""

    # Each report weighs the earlier ones of its kind down by this much, so that the rates follow
    # the last ten or so units, and a predictor's first call (new kernels, warm caches) soon fades.
    DECAY = 0.9

    def __init__(self, slots: float, actors: int):
        self.slots, self.actors = slots, actors
        # [images, seconds], weighted to the recent reports: CPU tasks that decoded their unit, those
        # that passed it on encoded, the predictors' model time, their decoding
        self.cpu, self.read, self.model, self.device = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        self.images = {"cpu": 0, "device": 0}  # decoded so far, where
        self._share = 0.0

    def share(self) -> float:
        return self._share

    def defers(self, unit_id: str) -> bool:
        return deferred(unit_id, self._share)

    def decoded(self, images: int, seconds: float, on_cpu: bool) -> None:
        """A CPU task's unit: `images` decoded there (`on_cpu`), or passed on encoded."""
        self.images["cpu"] += images if on_cpu else 0
        self._add(self.cpu if on_cpu else self.read, images, seconds)

    def predicted(self, images: int, seconds: float, decoded: int, decode_s: float) -> None:
        """A predictor's call: `images` through the model in `seconds`, `decoded` of them decoded
        on its device first, in `decode_s` more."""
        self.images["device"] += decoded
        self._add(self.model, images, seconds)
        if decoded:
            self._add(self.device, decoded, decode_s)

    def _add(self, total: list, images: int, seconds: float) -> None:
        total[0] = total[0] * self.DECAY + images
        total[1] = total[1] * self.DECAY + seconds
        if self.cpu[0] and self.model[0]:
            self._share = gpu_share(*self._inputs())

    def _inputs(self) -> tuple[float, float, float, float, float | None]:
        per = lambda t: t[1] / t[0] if t[0] else 0.0  # noqa: E731 - seconds per image
        rate = lambda t: self.actors * t[0] / t[1] if t[0] and t[1] else None  # noqa: E731
        return per(self.cpu), per(self.read), self.slots, rate(self.model), rate(self.device)

    def state(self) -> dict:
        """What the share rests on, for the run record and the job's last lines."""
        task_s, read_s, slots, model, device = self._inputs()
        return {"share": round(self._share, 3), "slots": slots, "actors": self.actors,
                "cpu_decode_images_per_s": round(slots / task_s, 1) if task_s else None,
                "model_images_per_s": model and round(model, 1), "device_decode_images_per_s": device and round(device, 1),
                "images": dict(self.images)}


def describe(state: dict) -> str:
    """`--decode auto: 6,720 of 40,000 images decoded on the predictors' devices, share now 0% (the
    CPU tasks decode 2,570 images/s on 15 slot(s), the model takes 1,367, the devices decode 3,972)`."""
    rates = (f"the CPU tasks decode {state['cpu_decode_images_per_s'] or 0:,.0f} images/s on {state['slots']:g} slot(s), "
             f"the model takes {state['model_images_per_s'] or 0:,.0f}")
    if state["device_decode_images_per_s"]:
        rates += f", the devices decode {state['device_decode_images_per_s']:,.0f}"
    n = state["images"]
    where = f"{n['device']:,} of {n['cpu'] + n['device']:,} images decoded on the predictors' devices"
    return f"--decode auto: {where}, share now {state['share']:.0%} ({rates})"


class RemoteBalance:
    """The job's `DecodeBalance` actor as the decode tasks and predictors use it: they ask for the
    share before each unit and report their timings without waiting."""

    def __init__(self, actor):
        self.actor = actor

    def defers(self, unit_id: str) -> bool:
        import ray

        return deferred(unit_id, ray.get(self.actor.share.remote()))

    def decoded(self, images: int, seconds: float, on_cpu: bool) -> None:
        self.actor.decoded.remote(images, seconds, on_cpu)

    def predicted(self, images: int, seconds: float, decoded: int, decode_s: float) -> None:
        self.actor.predicted.remote(images, seconds, decoded, decode_s)

    def state(self) -> dict:
        import ray

        return ray.get(self.actor.state.remote())
