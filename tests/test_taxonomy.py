import numpy as np

from recog import taxonomy
from recog.models import imagenet_classes
from recog.taxonomy import IMAGENET_VEHICLES, LABELS, NOT_VEHICLE, imagenet_matrix, labels_from_probs


def test_every_imagenet_class_maps_to_exactly_one_label():
    m = imagenet_matrix()
    assert m.shape == (1000, len(LABELS))
    assert np.all(m.sum(axis=1) == 1)
    assert m[:, LABELS.index(NOT_VEHICLE)].sum() == 1000 - len(IMAGENET_VEHICLES)


def test_mapping_names_match_the_imagenet_class_list():
    names = imagenet_classes()
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    assert names == tuple(_IMAGENET_CATEGORIES)  # recog's copy of torchvision's list
    assert names[717] == "pickup" and IMAGENET_VEHICLES[717] == "pickup"
    assert names[779] == "school bus" and IMAGENET_VEHICLES[779] == "bus"
    assert names[670] == "motor scooter" and IMAGENET_VEHICLES[670] == "motorcycle"
    assert names[404] == "airliner" and 404 not in IMAGENET_VEHICLES
    # at least the taxonomy: car, van, truck, bus, motorcycle, bicycle, other vehicle
    assert {"car", "van", "truck", "bus", "motorcycle", "bicycle", "other_vehicle"} <= set(IMAGENET_VEHICLES.values())


def _probs(**mass):
    p = np.zeros((1, 1000), dtype=np.float32)
    idx = {"cab": 468, "police_van": 734, "sports_car": 817, "tabby": 281}
    for k, v in mass.items():
        p[0, idx[k]] = v
    return p


def test_type_probability_is_the_sum_of_its_classes():
    # cab 0.3 + sports car 0.3 = car 0.6 beats police van 0.4 although police van is the top class
    names, scores = labels_from_probs(_probs(cab=0.3, sports_car=0.3, police_van=0.4), imagenet_matrix(), LABELS)
    assert names == ["car"] and np.isclose(scores[0], 0.6)


def test_little_vehicle_mass_is_not_vehicle():
    names, scores = labels_from_probs(_probs(cab=0.05, tabby=0.95), imagenet_matrix(), LABELS, 0.1)
    assert names == ["not_vehicle"] and np.isclose(scores[0], 0.95)
    names, _ = labels_from_probs(_probs(cab=0.05, tabby=0.95), imagenet_matrix(), LABELS, 0.01)
    assert names == ["car"]


def test_own_classes_map_to_themselves_or_to_their_types():
    matrix, labels = taxonomy.class_matrix(["bus", "car"])
    names, scores = labels_from_probs(np.array([[0.2, 0.8], [0.9, 0.1]]), matrix, labels)
    assert names == ["car", "bus"] and np.allclose(scores, [0.8, 0.9])
    label = taxonomy.labeler("identity", 3, ("truck", "car", "truck"))  # e.g. juggernaut, car, truck
    names, scores = label(np.array([[0.3, 0.4, 0.3]]))
    assert names == ["truck"] and np.allclose(scores, [0.6])  # the two truck classes together
    # a model with a not_vehicle class of its own judges alone: its top class's type, whatever
    # --min-vehicle-score says (that is ImageNet's bar), and in the vehicles job too
    for min_score in (0.1, None):
        own = taxonomy.labeler("identity", 3, ("car", "van", "not_vehicle"), min_vehicle_score=min_score)
        names, scores = own(np.array([[0.3, 0.1, 0.6], [0.5, 0.2, 0.3]]))
        assert names == ["not_vehicle", "car"] and np.allclose(scores, [0.6, 0.5])


def test_two_heads_imagenet_says_whether_a_vehicle_and_the_own_head_says_which():
    label = taxonomy.labeler("two-heads", 3, ("motorcycle", "car", "truck"), min_vehicle_score=0.1)
    sure_truck, unsure_truck = [0.02, 0.03, 0.95], [0.2, 0.3, 0.5]
    cases = [(sure_truck, _probs(cab=0.05, tabby=0.95)),  # a cat, however sure the own head is
             (sure_truck, _probs(cab=0.6, tabby=0.4)),  # a vehicle, and the own head is sure: its type
             (unsure_truck, _probs(cab=0.6, tabby=0.4))]  # a vehicle, the own head unsure: still its type
    probs = np.stack([np.concatenate([own, imagenet[0]]) for own, imagenet in cases])
    names, scores = label(probs)
    assert names == ["not_vehicle", "truck", "truck"] and np.allclose(scores, [0.95, 0.95, 0.5])

    # crops of tracked vehicles (the vehicles job): the type alone, the own head's, never not_vehicle
    known = taxonomy.labeler("two-heads", 3, ("motorcycle", "car", "truck"), min_vehicle_score=None)
    names, scores = known(probs)
    assert names == ["truck", "truck", "truck"] and np.allclose(scores, [0.95, 0.95, 0.5])
    names, _ = taxonomy.labeler("imagenet", 1000, (), min_vehicle_score=None)(_probs(cab=0.05, tabby=0.95))
    assert names == ["car"]  # ImageNet alone: the likeliest vehicle type, however little it holds
