"""Exactly-once output under faults, resume, and a battery of bad inputs, on the real store and Ray.

Every fault here is real: a predictor actor's process is SIGKILLed, the driver's process group is
SIGKILLed, the SeaweedFS server is stopped. Each test ends by counting every input's rows in
what `recog query` sees: exactly one each.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib

from PIL import Image

from recog import storage, table
from recog.config import InferConfig
from recog.objectstore import EmbeddedStore
from recog.pipeline import run_inference
from recog.query import Results
from tests.conftest import REPO
from tests.imagedata import encode, jpeg, png, tar_shard
from tests.videodata import encode_video


def write_shards(prefix: str, opts, shards: int, per_shard: int) -> int:
    for s in range(shards):
        members = [(f"s{s:02d}-{i:03d}.jpg", jpeg(64 + i, 48, (s * 9 % 256, i * 7 % 256, 90))) for i in range(per_shard)]
        storage.write_bytes(f"{prefix}/shard-{s:03d}.tar", tar_shard(members), opts)
    return shards * per_shard


def assert_exactly_once(output: str, opts, inputs: int) -> None:
    r = Results(output, opts)
    total, distinct = r.sql("SELECT count(*) AS n, count(DISTINCT (source_uri, key)) AS d FROM results").to_pylist()[0].values()
    assert (total, distinct) == (inputs, inputs), f"{total} rows for {distinct} distinct inputs, expected {inputs}"


def unit_records(output: str, opts) -> int:
    """Units the results table holds now (from its log)."""
    uri = table.uri(output, "results")
    if not table.exists(uri, opts):
        return 0
    return len(set(table.unit_ids(table.live_files(table.load(uri, opts))).to_pylist()))


def job(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobs.infer", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for_units(output: str, opts, proc: subprocess.Popen, at_least: int = 1, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while unit_records(output, opts) < at_least:
        assert proc.poll() is None, f"the job ended before the fault: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no unit committed in time"
        time.sleep(0.2)


def test_killed_driver_resumes_and_a_finished_job_writes_nothing(bucket, opts, joined_env):
    inputs = write_shards(f"{bucket}/in", opts, shards=12, per_shard=4)
    output = f"{bucket}/out"
    args = ["--input", f"{bucket}/in/", "--output", output, "--batch-size", "2", "--commit-units", "1"]

    first = job(args, env=joined_env)  # a driver on the session's Ray: killed, Ray ends its job's tasks and actors
    wait_for_units(output, opts, first, at_least=2)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    committed_before = unit_records(output, opts)
    assert 2 <= committed_before < 12 and not storage.list_files(f"{output}/_runs/", opts)

    again = subprocess.run([sys.executable, "-m", "jobs.infer", *args], cwd=REPO, env=joined_env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{committed_before} of 12 unit(s) already committed by an earlier run; {12 - committed_before} to do" in again.stdout
    manifest = json.loads(storage.read_bytes(storage.list_files(f"{output}/_runs/", opts)[0].uri, opts))
    assert manifest["summary"]["units"] == 12 and manifest["summary"]["resumed_units"] == committed_before
    assert_exactly_once(output, opts, inputs)

    # The same command once more: nothing to do, nothing written, no Ray started.
    objects = {f.uri: f.size for f in storage.list_files(output + "/", opts)}
    third = subprocess.run([sys.executable, "-m", "jobs.infer", *args], cwd=REPO, env=joined_env, capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0 and "nothing to do" in third.stdout and "[recog] cluster" not in third.stdout
    assert {f.uri: f.size for f in storage.list_files(output + "/", opts)} == objects


def predictor_processes(ray, busy: bool = False) -> list:
    """The predictor actors' worker processes of this test session's Ray (children of its raylet);
    with `busy`, only those running a batch now (Ray titles such a process `ray::...Predictor)).submit`)."""
    import psutil

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    found = []
    for p in psutil.Process(raylet).children(recursive=True):
        try:
            title = " ".join(p.cmdline()).strip()
        except psutil.Error:
            continue
        if "Predictor" in title and (not busy or title.endswith(".submit")):
            found.append(p)
    return found


def test_a_killed_predictor_actor_loses_and_doubles_nothing(bucket, opts, ray_local):
    inputs = write_shards(f"{bucket}/in", opts, shards=16, per_shard=10)
    output = f"{bucket}/out"
    outcome = {}

    def run():
        try:
            outcome["manifest"] = run_inference(InferConfig(input=f"{bucket}/in/", output=output, batch_size=2, commit_units=1),
                                                out=io.StringIO())
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    # The victim is a predictor running a batch: its unit cannot be committed yet. (Waiting for a
    # committed unit first let a loaded machine predict everything before the first commit landed,
    # and the pool's actors were gone by then.)
    deadline = time.monotonic() + 240
    while not (victims := predictor_processes(ray_local, busy=True)):
        assert worker.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.05)
    victims[0].kill()  # SIGKILL, mid-run: the rows of its batch in flight are lost with it
    victims[0].wait(timeout=30)
    worker.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["manifest"]["summary"]["rows"] == inputs
    assert_exactly_once(output, opts, inputs)
    assert unit_records(output, opts) == 16 and victims[0].pid not in [p.pid for p in predictor_processes(ray_local)]


def test_force_redoes_committed_units(bucket, opts, ray_local):
    inputs = write_shards(f"{bucket}/in", opts, shards=1, per_shard=3)
    cfg = InferConfig(input=f"{bucket}/in/", output=f"{bucket}/out")
    first = run_inference(cfg, out=io.StringIO())
    log = io.StringIO()
    assert run_inference(cfg, out=log)["run_id"] == first["run_id"] and "nothing to do" in log.getvalue()
    forced = run_inference(InferConfig(input=f"{bucket}/in/", output=f"{bucket}/out", force=True), out=io.StringIO())
    assert forced["run_id"] != first["run_id"] and forced["summary"]["resumed_units"] == 0
    assert_exactly_once(f"{bucket}/out", opts, inputs)  # rewritten in place, not beside


def test_images_added_to_a_labeled_folder_are_labeled_once_and_nothing_twice(bucket, opts, ray_local):
    """A camera folder that grows between runs: new images sort in the middle and at the end. The
    rerun redoes only the units they fall in, and every image is in the table once."""
    names = [f"cam-1/{i:03d}" for i in range(0, 60, 2)]
    for name in names:
        storage.write_bytes(f"{bucket}/in/{name}.jpg", jpeg(40, 30), opts)
    cfg = InferConfig(input=f"{bucket}/in/", output=f"{bucket}/out", images_per_unit=4)
    first = run_inference(cfg, out=io.StringIO())
    added = ["cam-1/021", "cam-1/999", "cam-0/000"]  # in the middle, at the end, before all
    for name in added:
        storage.write_bytes(f"{bucket}/in/{name}.jpg", jpeg(40, 30), opts)
    log = io.StringIO()
    again = run_inference(cfg, out=log)
    assert_exactly_once(f"{bucket}/out", opts, len(names) + len(added))
    # 7 units before; "cam-1/021" ends a unit (sources.ends_unit), so it cuts the unit it falls in
    # in two: [004 .. 021] is new, [022 .. 028] keeps its place and replaces the old unit's rows.
    # With the first unit (cam-0/000 joins it) and the last (999), 4 are redone and 4 kept.
    assert first["summary"]["units"] == 7 and again["summary"]["units"] == 8
    assert "4 of 8 unit(s) already committed" in log.getvalue(), log.getvalue()


def test_store_outage_fails_clearly_and_the_rerun_finishes(tmp_path_factory, store, joined_env):
    """A store of its own, stopped under a running job and started again. It has the session store's
    credentials (the session Ray's workers hold those): the jobs join that Ray, pointed at this store."""
    data = tmp_path_factory.mktemp("outage-store")
    shutil.copy(store.data_dir / "credentials.env", data / "credentials.env")
    store = EmbeddedStore(data).start()
    port = int(store.endpoint_url.rsplit(":", 1)[1])
    env = {**joined_env, **store.env()}
    opts = storage.StorageOptions(endpoint_url=store.endpoint_url)
    saved = {k: os.environ.get(k) for k in store.env()}
    os.environ.update(store.env())  # this process's reads of that store
    try:
        inputs = write_shards("s3://outage/in", opts, shards=10, per_shard=4)
        args = ["--input", "s3://outage/in/", "--output", "s3://outage/out", "--batch-size", "2", "--commit-units", "1"]
        first = job(args, env=env)
        wait_for_units("s3://outage/out", opts, first, at_least=2)
        store.stop()
        t0 = time.monotonic()
        _, stderr = first.communicate(timeout=300)
        failed_after = time.monotonic() - t0
        assert first.returncode == 1, stderr[-3000:]
        assert "the job stopped after committing" in stderr and "run the same command again" in stderr
        # what stopped it, in words, not Ray Data's advice on retrying a task
        said = stderr.split("recog: error:")[-1]
        assert "the object store failed: cannot reach the store" in said and "retry attempts" not in said
        assert "Traceback" not in said
        print(f"job failed {failed_after:.1f} s after the store stopped: {stderr.strip().splitlines()[-1][:300]}")

        store = EmbeddedStore(data, port).start()  # the same data, the same address
        again = subprocess.run([sys.executable, "-m", "jobs.infer", *args], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "already committed by an earlier run" in again.stdout
        assert_exactly_once("s3://outage/out", opts, inputs)
    finally:
        store.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- the bad-input battery ------------------------------------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims another size (a decompression bomb in 70 bytes)."""
    data = bytearray(png("L", 4, 4))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def tar_of(entries: list[tuple[str, bytes | None]], encoding: str = "utf-8") -> bytes:
    """A tar with files (bytes) and directories (None), names written as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", encoding=encoding, errors="surrogateescape") as tar:
        for name, body in entries:
            info = tarfile.TarInfo(name)
            if body is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_bad_input_battery(bucket, opts, ray_local, tmp_path, capsys):
    whole = tar_shard([(f"t{i}.jpg", jpeg()) for i in range(8)])
    loose = {  # name -> expected error (None: processed, with this width)
        "truncated.jpg": (jpeg(200, 150)[:400], "cannot decode image"),
        "zero.jpg": (b"", "empty file (0 bytes)"),
        "text.jpg": (b"just some text, not an image" * 4, "not a recognised image format"),
        "bomb.png": (encode(Image.new("1", (11000, 11000)), "PNG"), "image too large: 11000 x 11000"),
        "claims-huge.png": (png_claiming(200_000, 200_000), "image too large: Image size (40000000000 pixels)"),
        "cmyk.jpg": (encode(Image.new("CMYK", (40, 30), (0, 50, 100, 0)), "JPEG"), 40),
        "sixteen.png": (png("I;16", 41, 30), 41),
        "gray.png": (png("L", 42, 30), 42),
        "alpha.png": (png("RGBA", 43, 30), 43),
        "palette.png": (png("P", 44, 30), 44),
        "wide.jpg": (jpeg(8000, 20), 8000),
    }
    for name, (body, _) in loose.items():
        storage.write_bytes(f"{bucket}/in/loose/{name}", body, opts)
    shards = {
        "cut.tar": whole[: len(whole) // 2],
        "empty.tar": b"",
        "odd.tar": tar_of([("dir", None), ("dir/a.jpg", jpeg()), ("notes.txt", b"x"), ("b.cls", b"car"), ("c.jpg", jpeg())]),
        "names.tar": tar_of([("caf\udce9.jpg", jpeg()), ("../../../etc/evil.jpg", jpeg()), ("/abs/olute.jpg", jpeg())]),
    }
    for name, body in shards.items():
        storage.write_bytes(f"{bucket}/in/shards/{name}", body, opts)
    good = encode_video(tmp_path / "good.mp4", frames=250, fps=25, faststart=True)  # 10 s, index first
    videos = {"good.mp4": good.read_bytes(), "zero.mp4": b"", "cut.mp4": good.read_bytes()[: good.stat().st_size // 2],
              "corrupt.mp4": b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500}
    for name, body in videos.items():
        storage.write_bytes(f"{bucket}/videos/{name}", body, opts)

    log = io.StringIO()
    run_inference(InferConfig(input=f"{bucket}/in/", output=f"{bucket}/out", images_per_unit=4), out=log)
    run_inference(InferConfig(input=f"{bucket}/videos/", output=f"{bucket}/out", media="video", fps=1.0), out=log)
    rows = Results(f"{bucket}/out", opts).sql("SELECT * FROM results").to_pylist()

    by_member = {r["member"]: r for r in rows if r["shard"] is None and r["pts_s"] is None and r["member"]}
    cases = 0
    for name, (_, expected) in loose.items():
        r = by_member[name]
        if isinstance(expected, str):
            assert r["label"] is None and expected in r["error"], (name, r["error"])
        else:
            assert r["error"] is None and r["label"] and r["width"] == expected, (name, r["error"])
        cases += 1
    in_shard = {}
    for r in rows:
        if r["shard"]:
            in_shard.setdefault(r["shard"], []).append(r)
    cut = in_shard["cut.tar"]
    assert 0 < sum(r["error"] is None for r in cut) < 8 and "corrupt or truncated tar shard" in cut[-1]["error"]
    assert [r["error"] for r in in_shard["empty.tar"]] == ["empty file (0 bytes)"] or \
        "empty" in in_shard["empty.tar"][0]["error"]
    odd = {r["key"]: r for r in in_shard["odd.tar"]}
    assert odd["dir/a"]["error"] is None and odd["c"]["error"] is None
    assert "no image in sample" in odd["notes"]["error"] and "no image in sample" in odd["b"]["error"]
    names = {r["key"]: r for r in in_shard["names.tar"]}
    assert set(names) == {"caf\ufffd", "../../../etc/evil", "/abs/olute"} and all(r["label"] for r in names.values())
    cases += 4
    frames = {}
    for r in rows:
        if r["source_uri"].startswith(f"{bucket}/videos/"):
            frames.setdefault(r["source_uri"].rsplit("/", 1)[-1], []).append(r)
    assert len(frames["good.mp4"]) == 10 and not any(r["error"] for r in frames["good.mp4"])
    assert [r["error"][:17] for r in frames["zero.mp4"]] == ["cannot open video"]
    assert [r["error"][:17] for r in frames["corrupt.mp4"]] == ["cannot open video"]
    cut_video = frames["cut.mp4"]
    assert 0 < sum(r["error"] is None for r in cut_video) < 10
    assert [r["error"][:16] for r in cut_video if r["error"]] == ["video ends early"]
    cases += 3
    assert len(rows) == len(loose) + sum(len(v) for v in in_shard.values()) + sum(len(v) for v in frames.values())

    # Keys from inside the data never become paths: every object is in the output's own layout.
    for f in storage.list_files(f"{bucket}/out/", opts):
        rel = f.uri[len(f"{bucket}/out/"):]
        assert rel.startswith(("results/camera=", "results/_delta_log/", "_runs/", "_probes/")) and ".." not in rel.split("/"), rel

    # The secret key appears nowhere: not in the job's output, the Parquet, the manifests, Ray's logs.
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in log.getvalue()
    for f in storage.list_files(f"{bucket}/out/", opts):
        assert secret.encode() not in storage.read_bytes(f.uri, opts), f.uri
    session = ray_local._private.worker._global_node.get_session_dir_path()
    for root, _, names_ in os.walk(session):
        for n in names_:
            path = os.path.join(root, n)
            if os.path.isfile(path) and os.path.getsize(path) < 50_000_000:
                with open(path, "rb") as fh:
                    assert secret.encode() not in fh.read(), path
    # Ray's local ports listen on every interface (Ray 2.60 has no bind option for them); its token
    # auth, on by default for a local Ray, is what keeps strangers out. The store binds 127.0.0.1.
    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert get_authentication_mode() == AuthenticationMode.TOKEN
    with capsys.disabled():
        print(f"\nbad-input battery: {cases} cases, {len(rows)} rows, job completed")
