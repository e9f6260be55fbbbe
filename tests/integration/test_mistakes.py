"""What a newcomer's mistakes and odd inputs do, through the `recog` entry point (`recog.cli.main`,
in this process, on the session's store and Ray): each numbered bug of issue 25 has its test here,
and a matrix of wrong paths, values, names and files asserts one line `recog: error: ...`, exit
status 2, no traceback, and nothing written under the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recog import cli, storage
from recog.query import Results
from tests.conftest import REPO
from tests.imagedata import jpeg
from tests.videodata import encode_video


def recog(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `recog ARGV` in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as e:  # argparse's own exit (--help, a bad value)
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


def photos(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"p{i}.jpg").write_bytes(jpeg(64 + i, 48, (40 * i, 90, 160)))
    return folder


# ---- 1 and 4: one input, one identity, however it is spelled -------------------------------------

def test_an_input_spelled_four_ways_is_labeled_once(tmp_path, bucket, opts, ray_local, capsys, monkeypatch):
    folder = photos(tmp_path / "data" / "cams")
    output = str(tmp_path / "out")
    (tmp_path / "elsewhere").mkdir()
    spellings = [str(folder), str(folder) + "/", f"file://{folder}/", "../data/./cams"]
    monkeypatch.chdir(tmp_path / "elsewhere")  # the relative spelling, from another folder
    for spelling in spellings:
        status, out, err = recog(capsys, "infer", "--input", spelling, "--output", output)
        assert status == 0, err
    (row,) = Results(output, opts).sql("SELECT count(*) AS n, count(DISTINCT source_uri) AS inputs, "
                                       "min(source_uri) AS first FROM results").to_pylist()
    assert (row["n"], row["inputs"]) == (3, 3) and row["first"] == f"{folder}/p0.jpg"
    assert "nothing to do" in out  # the last spelling found its units committed

    # A single file given by a relative path is stored by its absolute one (bug 4): the report,
    # made from another folder, finds its picture.
    single = str(tmp_path / "single")
    monkeypatch.chdir(tmp_path / "data")
    assert recog(capsys, "infer", "--input", "cams/p1.jpg", "--output", single)[0] == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    (source,) = [r["source_uri"] for r in Results(single, opts).sql("SELECT source_uri FROM results").to_pylist()]
    assert source == f"{folder}/p1.jpg"
    status, out, err = recog(capsys, "report", single, "--output", str(tmp_path / "r.html"))
    assert status == 0 and "1 thumbnails" in out and "could not be read" not in err
    (folder / "p1.jpg").unlink()  # the source gone: the report says so
    status, out, err = recog(capsys, "report", single, "--output", str(tmp_path / "r.html"))
    assert status == 0 and "0 thumbnails" in out and "1 source(s) of thumbnails could not be read" in err

    # An S3 prefix with and without its trailing slash (and a doubled one) is one input too.
    for i in range(2):
        storage.write_bytes(f"{bucket}/in/p{i}.jpg", jpeg(50 + i, 40), opts)
    for spelling in (f"{bucket}/in", f"{bucket}/in/", f"{bucket}//in//"):
        assert recog(capsys, "infer", "--input", spelling, "--output", f"{bucket}/out")[0] == 0
    assert Results(f"{bucket}/out", opts).sql("SELECT count(*) AS n FROM results").to_pylist() == [{"n": 2}]


# ---- 3, 7, 8: the vehicles job on a truncated video and a good one --------------------------------

def test_truncated_video_says_where_its_data_stops_and_is_no_vehicle(tmp_path, ray_local, capsys, shared_data):
    clips = tmp_path / "clips"
    clips.mkdir()
    whole = (shared_data / "videos" / "intel_car-detection.mp4").read_bytes()
    (clips / "parking.mp4").write_bytes(whole)
    (clips / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # its index is at the start: half of it decodes
    index_last = encode_video(tmp_path / "g.mp4", frames=50, fps=25).read_bytes()
    (clips / "cut-index-last.mp4").write_bytes(index_last[: len(index_last) // 2])  # an MP4 whose index was at its end
    output = str(tmp_path / "out")
    status, out, err = recog(capsys, "vehicles", "--input", str(clips), "--output", output, "--line", "mid=0,0.5,1,0.5")
    assert status == 0, err
    results = Results(output, storage.StorageOptions())
    errors = {r["source_uri"].rsplit("/", 1)[-1]: r["error"] for r in
              results.sql("SELECT source_uri, error FROM vehicles WHERE track_id IS NULL").to_pylist()}
    assert errors["cut.mp4"].startswith("video ends early in [0 s, end): data stops at ")  # bug 7
    assert errors["cut-index-last.mp4"].startswith("cannot open video: not a video FFmpeg can read, or cut short")
    assert "Errno" not in errors["cut-index-last.mp4"] and str(clips) not in errors["cut-index-last.mp4"]
    vehicles = results.sql("SELECT frames_seen FROM vehicles WHERE track_id IS NOT NULL").column("frames_seen").to_pylist()
    assert vehicles and min(vehicles) >= 3  # bug 3: no track seen in a frame or two (0.2 s at 12.5 fps)
    # and a track whose crops the model calls background is flagged, and none of its crossings counts
    (phantoms,) = results.sql("SELECT count(*) AS n, count(warning) AS flagged FROM vehicles WHERE label = 'not_vehicle'").to_pylist()
    assert phantoms["n"] == phantoms["flagged"]
    assert results.sql("SELECT count(*) AS n FROM crossings c JOIN vehicles v USING (track_id) "
                       "WHERE v.label = 'not_vehicle'").to_pylist() == [{"n": 0}]
    closing = next(line for line in out.splitlines() if " vehicle(s), " in line)
    assert closing.startswith(f"[recog] {len(vehicles) - phantoms['n']} vehicle(s), ")  # bug 8: not the error rows
    assert "2 video(s) or segment(s) with errors" in closing


# ---- 6: output piped into a reader that stops early ------------------------------------------------

def test_a_reader_that_stops_early_gets_no_traceback(tmp_path, ray_local, capsys):
    output = str(tmp_path / "out")
    assert recog(capsys, "infer", "--input", str(photos(tmp_path / "in", 4)), "--output", output)[0] == 0
    for command in (f"query {output} 'SELECT * FROM range(100000)' --format csv", f"summary {output}"):
        done = subprocess.run(f"{sys.executable} -m recog.cli {command} | head -1", shell=True, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.count("\n") == 1, done
        assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


# ---- the negative-input matrix ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory, shared_data):
    """Inputs for the matrix: photos, a clip, a results folder, a file where a folder belongs."""
    root = tmp_path_factory.mktemp("matrix")
    photos(root / "photos")
    (root / "clips").mkdir()
    (root / "clips" / "c.mp4").write_bytes((shared_data / "videos" / "intel_car-detection.mp4").read_bytes())
    (root / "a-file").write_text("not a folder")
    (root / "list.txt").write_text(str(root / "photos" / "nope.jpg") + "\n")
    (root / "labels").mkdir()
    return root


NO_SUCH = "/nonexistent/place"


def matrix(r: Path) -> list[tuple[list[str], str]]:
    """(arguments, what the one line must say) for every command and every kind of mistake."""
    out = str(r / "out")
    io_ = ["--input", str(r / "photos"), "--output", out]
    clip = ["--input", str(r / "clips"), "--output", out]
    return [
        # infer: wrong paths, values, names, files
        (["infer", "--input", NO_SUCH, "--output", out], "not found"),
        (["infer", "--input", str(r / "clips"), "--output", out], "no tar shards or images"),
        (["infer", "--input-list", str(r / "list.txt"), "--output", out], "do not exist"),
        (["infer", "--input", str(r / "photos"), "--output", str(r / "a-file")], "is a file"),
        (["infer", "--input", str(r / "photos"), "--output", "/proc/recog-out"], "no permission"),
        ([*["infer"], *io_, "--model", "no-such-model"], "unknown model 'no-such-model'"),
        ([*["infer"], *io_, "--model", str(r / "labels")], "not a model package"),
        ([*["infer"], *io_, "--batch-size", "0"], "--batch-size: must be at least 1"),
        ([*["infer"], *io_, "--images-per-unit", "many"], "must be a number of images or auto"),
        ([*["infer"], *io_, "--min-vehicle-score", "1.5"], "must be between 0 and 1"),
        ([*["infer"], *io_, "--fps", "1"], "unrecognized arguments: --fps 1"),
        (["infer", "--output", out], "one of the arguments --input --input-list is required"),
        # footage
        (["footage", *clip, "--fps", "0"], "--fps: must be greater than 0"),
        (["footage", *clip, "--every-n", "2", "--keyframes"], "not allowed with argument"),
        (["footage", *io_], "no videos"),
        # vehicles
        (["vehicles", *clip, "--line", "gate=0,0.5,1,0.5", "--line", "gate=0,0.6,1,0.6"], "--line gate given more than once"),
        (["vehicles", *clip, "--line", "gate=0,0.5,2,0.5"], "fractions of the frame"),
        (["vehicles", *clip, "--line", "gate"], "expected NAME=x1,y1,x2,y2"),
        (["vehicles", *clip, "--roi", "0,0,0.5,0.5,1,1"], "encloses no area"),
        (["vehicles", *clip, "--fps", "1"], "recog vehicles --help lists its options"),
        (["vehicles", *clip, "--detector", "fasterrcnn_resnet50_fpn"], "needs --detector-weights"),
        (["vehicles", *clip, "--detector-weights", NO_SUCH], "for a learned detector"),
        (["vehicles", *clip, "--segment-seconds", "a minute"], "--segment-seconds: must be a number of seconds or auto"),
        (["vehicles", *clip, "--analyze-fps", "0"], "--analyze-fps: must be greater than 0"),
        # train and eval
        (["train", "--train", NO_SUCH, "--output", out], "not found"),
        (["train", "--train", str(r / "photos"), "--output", out, "--arch", "vgg"], "unknown architecture 'vgg'"),
        (["train", "--train", str(r / "photos"), "--output", out, "--epochs", "0"], "--epochs: must be at least 1"),
        (["eval", "--model", "no-such-model", "--data", str(r / "photos"), "--output", out], "unknown model"),
        (["train", "--train", str(r / "photos"), "--output", out, "--init", "no-such-model"], "unknown model 'no-such-model'"),
        (["train", "--train", str(r / "photos"), "--output", out, "--init", "vehicle-types", "--classes", "a,b"], "drop --classes"),
        (["train", "--train", str(r / "photos"), "--output", out, "--register", "cam/7"], "a model name is letters"),
        # review and named models
        (["crops", NO_SUCH, "--to", out], "no recog tables here"),
        (["crops", NO_SUCH, "--to", out, "--since", "today"], "must be a day YYYY-MM-DD or a time"),
        (["crops", NO_SUCH, "--to", out, "--since", "2026-02-01", "--until", "2026-01-01"], "is not before --until"),
        (["crops", NO_SUCH, "--to", out, "--max-score", "2"], "must be between 0 and 1"),
        (["models", "alias", "cam-7", "three", "champion"], "a model's name, a version number and an alias"),
        (["models", "list", "cam/7"], "a model name is letters"),
        # the results
        (["query", NO_SUCH, "SELECT 1"], "no recog tables here"),
        (["summary", str(r / "photos")], "no recog tables here"),
        (["summary", str(r / "photos"), "--by", "colour"], "--by colour: not a dimension"),
        (["report", str(r / "photos"), "--output", "/nonexistent/r.html"], "the folder does not exist"),
        (["report", str(r / "photos"), "--output", "/proc/r.html"], "not writable"),
        (["errors", NO_SUCH], "no recog tables here"),
        (["purge", NO_SUCH, "--before", "2026-01-01"], "no recog tables here"),
        (["purge", str(r / "photos"), "--before", "yesterday"], "must be a day as YYYY-MM-DD"),
        (["shards", "--from", str(r / "photos"), "--to", str(r / "out" / "s"), "--per-shard", "-3"], "must be at least 1"),
        (["jobs", "logs"], "needs a job id"),
        (["submit", "--", "infer", "--input", "x"], "the following arguments are required: --output"),
        (["store", "start"], "invalid choice: 'start'"),
        (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    ]


def test_every_mistake_is_one_line_exit_two_and_writes_nothing(made, ray_local, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "")  # submit/jobs: no cluster here, and none needed to refuse
    for argv, says in matrix(made):
        status, out, err = recog(capsys, *argv)
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("recog: error: "), (argv, status, err)
        assert says in lines[0], (argv, lines[0])
        assert "Traceback" not in out + err, argv
        assert not (made / "out").exists(), (argv, os.listdir(made / "out"))
