import io

import numpy as np
import pytest
from PIL import Image

from recog import preprocess
from recog.preprocess import DecodeError, Preprocessing, decode_image, model_input
from recog.sources import RECORD_SCHEMA
from tests.imagedata import encode, jpeg, png

PREP = Preprocessing(input_size=32, resize_size=36)


def test_decode_resizes_short_side_and_centre_crops_keeping_uint8():
    # left half black, right half white, 200x100: after resize (72x36) and a 32 crop from the
    # middle, the left columns are black and the right columns white.
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (100, 0, 200, 100))
    pixels, w, h = decode_image(encode(img, "PNG"), PREP)
    assert (w, h) == (200, 100)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert pixels[:, :10].max() < 10 and pixels[:, -10:].min() > 245


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "I;16"])
def test_any_png_mode_becomes_rgb(mode):
    pixels, w, h = decode_image(png(mode), PREP)
    assert pixels.shape == (32, 32, 3) and (w, h) == (40, 30)


def test_sixteen_bit_png_is_scaled_not_clipped():
    pixels, _, _ = decode_image(png("I;16"), PREP)
    assert 0 < pixels.mean() < 250  # PIL's plain convert() would clip it all to white


def test_cmyk_jpeg_decodes():
    pixels, _, _ = decode_image(encode(Image.new("CMYK", (50, 50), (0, 255, 255, 0)), "JPEG"), PREP)
    assert pixels[..., 0].mean() > 200 and pixels[..., 1].mean() < 60  # red


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 30), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    _, w, h = decode_image(encode(img, "JPEG", exif=exif.tobytes()), PREP)
    assert (w, h) == (30, 60)


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"hello, I am text with a .jpg name", "not a recognised image format"),
    (jpeg(64, 64)[:300], "cannot decode image"),
])
def test_bad_bytes_raise_a_specific_error(data, message):
    with pytest.raises(DecodeError, match=message):
        decode_image(data, PREP)


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DecodeError, match="too large"):
        decode_image(png("RGB", 100, 100), PREP)


def _record(**fields):
    return {**{f: None for f in RECORD_SCHEMA.names}, "unit_id": "u", "record": 0, "end": False, **fields}


def test_model_input_keeps_every_row_and_marks_failures():
    frame = Image.new("RGB", (320, 240), (0, 255, 0))
    records = [
        _record(key="good", data=jpeg()),
        _record(key="bad", data=b"junk"),
        _record(key="read-failed", error="object disappeared"),
        _record(key="frame", frame=frame, frame_index=25, pts_s=1.0),
        _record(record=4, end=True),
    ]
    out = model_input(records, PREP, RECORD_SCHEMA)
    assert out.column_names == RECORD_SCHEMA.names + ["width", "height", "encoded", "image"]
    assert out.column("encoded").null_count == 5  # decoded here: nothing left for the predictor
    errors = out.column("error").to_pylist()
    assert errors[0] is None and "not a recognised image format" in errors[1]
    assert errors[2] == "object disappeared" and errors[3] is None and errors[4] is None
    assert out.column("width").to_pylist() == [64, None, None, 320, None]
    images = out.column("image").combine_chunks().to_numpy()
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert images[0].mean() > 0 and images[1].max() == 0 and images[4].max() == 0
    assert images[3][..., 1].min() > 250  # the green frame


def _photo_like(width: int, height: int) -> Image.Image:
    """Smooth gradients with some edges, like a photo: what JPEG and resampling are made for."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // width, y * 255 // height, ((x // 97 + y // 61) % 2) * 200], axis=-1)
    return Image.fromarray(arr.astype(np.uint8))


def test_large_jpeg_is_decoded_reduced_and_gives_the_same_pixels(monkeypatch):
    prep = Preprocessing()  # 256 -> 224: a 1920x1080 frame decodes at 1/4 scale (480x270)
    data = encode(_photo_like(1920, 1080), "JPEG", quality=90)
    reduced, w, h = decode_image(data, prep)
    sizes = []
    monkeypatch.setattr(preprocess, "resize_crop", lambda img, p: sizes.append(img.size) or np.zeros(1))
    decode_image(data, prep)
    monkeypatch.undo()
    monkeypatch.setattr(preprocess, "reduce_jpeg", lambda img, p: None)
    full, _, _ = decode_image(data, prep)
    assert (w, h) == (1920, 1080)  # the original size is reported, not the reduced one
    assert sizes == [(480, 270)]
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 2  # measured 0.1 on a real frame


def test_reduced_decode_keeps_exif_orientation_and_original_size():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(_photo_like(2000, 1000), "JPEG", exif=exif.tobytes())
    pixels, w, h = decode_image(data, Preprocessing())
    assert (w, h) == (1000, 2000) and pixels.shape == (224, 224, 3)


def test_defer_jpeg_passes_plain_jpegs_on_and_decodes_the_rest_here():
    exif = Image.Exif()
    exif[0x0112] = 6
    records = [
        _record(key="jpeg", data=jpeg(64, 48)),
        _record(key="grey", data=encode(Image.new("L", (40, 40), 90), "JPEG")),
        _record(key="png", data=png()),
        _record(key="turned", data=encode(Image.new("RGB", (60, 30)), "JPEG", exif=exif.tobytes())),
        _record(key="cmyk", data=encode(Image.new("CMYK", (50, 50), (0, 255, 255, 0)), "JPEG")),
        _record(key="junk", data=b"\xff\xd8\xff\xe0 not really"),
    ]
    out = model_input(records, PREP, RECORD_SCHEMA, defer_jpeg=True)
    deferred = [e is not None for e in out.column("encoded").to_pylist()]
    assert deferred == [True, True, False, False, False, False]
    assert out.column("encoded")[0].as_py() == records[0]["data"]
    assert out.column("width").to_pylist()[:4] == [64, 40, 40, 30]  # header sizes, upright
    assert out.column("error").to_pylist()[5].startswith("cannot decode image")


def test_decode_jpegs_matches_the_cpu_path_and_reports_bad_files():
    import torch

    prep = Preprocessing()
    good = [encode(_photo_like(640, 352), "JPEG"), encode(_photo_like(1280, 960), "JPEG", quality=80)]
    pixels, errors = preprocess.decode_jpegs(good + [jpeg(64, 64)[:300]], prep, torch.device("cpu"))
    assert pixels.shape == (3, 224, 224, 3) and pixels.dtype == torch.uint8
    assert errors[:2] == [None, None] and errors[2].startswith("cannot decode image")
    for i, data in enumerate(good):
        cpu = decode_image(data, prep)[0].astype(int)
        assert np.abs(pixels[i].numpy().astype(int) - cpu).mean() < 3


def test_the_tensor_resize_crops_where_the_pil_one_does():
    """An odd margin (219 - 128 = 91 px) is split the same way: torchvision's center_crop rounds it
    up, which shifted the predictor's pixels by one against the workers' (a label flipped)."""
    import torch

    prep = Preprocessing(input_size=128, resize_size=146)
    img = Image.open(io.BytesIO(encode(_photo_like(300, 200), "PNG"))).convert("RGB")
    cpu = preprocess.resize_crop(img, prep).astype(int)
    tensor = preprocess.resize_crop_tensor(torch.from_numpy(np.array(img)).permute(2, 0, 1), prep).numpy().astype(int)
    assert np.abs(tensor - cpu).mean() < 0.1


def test_load_units_asks_the_balance_where_each_unit_decodes_and_tells_it_how_long_units_took(tmp_path):
    import pyarrow as pa

    from recog import sources, storage
    from recog.balance import DecodeBalance
    from recog.storage import StorageOptions

    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg(64, 48))
    found = sources.image_units(storage.list_files(str(tmp_path), StorageOptions()), str(tmp_path), "fp", 3)
    units = pa.Table.from_pylist([u.to_row() for u in found.units])
    for share in (0.0, 1.0):
        balance = DecodeBalance(slots=1, actors=1)
        balance._share = share  # what the job's balance would have measured
        out = pa.concat_tables(preprocess.load_units(units, StorageOptions(), PREP, None, balance=balance))
        inputs = [not end for end in out.column("end").to_pylist()]
        encoded = [e is not None for e, i in zip(out.column("encoded").to_pylist(), inputs) if i]
        assert encoded == [share == 1.0] * 6
        timed, untouched = (balance.cpu, balance.read) if share == 0.0 else (balance.read, balance.cpu)
        assert timed[0] > 0 and timed[1] > 0 and untouched == [0, 0]  # each unit's time, where it was decoded
        assert balance.images["cpu"] == (6 if share == 0.0 else 0)
