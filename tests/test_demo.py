"""The demo's sample data: the shared photos and clip when they are there, drawn ones otherwise."""

from __future__ import annotations

from recog.demo import drawn_image, sample_footage, sample_inputs


def test_demo_samples_from_the_shared_photos(shared_data):
    objects = sample_inputs(shared_data)
    shards = [k for k in objects if k.endswith(".tar")]
    photos = [k for k in objects if k.startswith("inputs/photos/") and k.endswith(".jpg")]
    assert len(shards) == 4 and len(photos) == 25  # 24 ImageNet photos and one broken file
    assert set(sample_footage(shared_data)) == {"footage/roadside.mp4", "footage/roadside.json"}


def test_without_shared_data_the_demo_draws_its_own():
    objects = sample_inputs(None)
    assert len([k for k in objects if k.endswith(".tar")]) == 4 and objects["inputs/photos/broken.jpg"]
    assert drawn_image(3) == drawn_image(3) != drawn_image(4)  # the same pictures every time
