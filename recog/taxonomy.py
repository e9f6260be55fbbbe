"""The vehicle taxonomy: how a classifier's classes become the vehicle types recog reports.

A model trained on ImageNet knows 1000 classes, about fifty of them land vehicles. Each of those
maps to one coarse type below; the probability of a type is the sum of the probabilities of its
ImageNet classes, and what is left over is `not_vehicle`. An image is labeled with the likeliest
vehicle type when the vehicle types together hold at least `min_vehicle_score` (default 0.1,
twice what 50 classes of 1000 get by chance), else `not_vehicle`. The bar sits low because tiny
or blurred crops spread their mass thinly. A model fine-tuned on vehicle types (`recog train`)
has its own classes; those map to themselves.

Mapping choices worth knowing (they follow the traffic taxonomy below, TRAFFIC_TYPES): ambulance,
police van and minibus are vans; moving van, fire engine and tow truck are trucks; minivan (an MPV),
station wagon, jeep, limousine, cab and the car parts "car wheel" and "grille" are cars;
mopeds and scooters are motorcycles; tandem, tricycle and unicycle are bicycles. Exotic classes
that a road camera's low-resolution view of an ordinary vehicle resembles are folded into that
type: amphibian (an amphibious car) is a car, half track a truck, snowmobile a motorcycle.
Trams, trains, tractors, forklifts, go-karts, golf carts, tanks, horse carts and rickshaws are
`other_vehicle`. Aircraft and boats are not road traffic: `not_vehicle`.
"""

from __future__ import annotations

import numpy as np

VEHICLE_TYPES = ("car", "pickup", "van", "truck", "bus", "motorcycle", "bicycle", "other_vehicle")
NOT_VEHICLE = "not_vehicle"
LABELS = VEHICLE_TYPES + (NOT_VEHICLE,)

# The traffic taxonomy: what each type recog reports holds, and the classes of traffic surveys it
# matches (UK DfT road traffic statistics' vehicle types; the US FHWA 13-class scheme's groups).
# `other_vehicle` (trams, tractors, ...) is only ImageNet's; the shipped model has no such class.
TRAFFIC_TYPES = {
    "car": "saloons, hatchbacks, estates, SUVs, MPVs and minivans, taxis; small car-derived vans with windows "
           "(DfT: cars and taxis; FHWA class 2, passenger cars)",
    "pickup": "pickup trucks: a cab and an open load bed (DfT: light goods vehicles; FHWA class 3)",
    "van": "panel vans, work vans, minibuses (DfT: light goods vehicles up to 3.5 t, and minibuses; FHWA class 3)",
    "truck": "rigid lorries (box, curtain-side, tipper, tanker), light cab trucks with a load bed or box, "
             "articulated lorries (DfT: HGVs, rigid and articulated; FHWA classes 5-13)",
    "bus": "buses and coaches (DfT: buses and coaches; FHWA class 4)",
    "motorcycle": "motorcycles, scooters, mopeds (DfT: two-wheeled motor vehicles; FHWA class 1)",
    "bicycle": "pedal cycles (DfT: pedal cycles; no FHWA class)",
    NOT_VEHICLE: "anything else a detector hands over: road, shadows, kerbs, verges, overlay text, people",
}

# Every training source's classes -> the traffic taxonomy (the README's table is this one).
SOURCE_TYPES = {
    # LTA expressway CCTV, YOLO boxes (data.gov.sg traffic images, boxes from CapstoneProj-G.A)
    "lta": {"car": "car", "lorry_truck": "truck", "van": "van", "bike": "motorcycle", "bus": "bus"},
    # "Tiny and Low Quality Images for Vehicle Classification", Zenodo 6634554: one Turkish camera's
    # side view; its "truck" is a light cab truck with a load bed, its "minibus" panel vans and minibuses
    "zenodo": {"bike": "motorcycle", "car": "car", "juggernaut": "truck", "minibus": "van", "pickup": "pickup",
               "truck": "truck"},
    # CIFAR-10's automobile and truck classes (its trucks are lorries: it has no pickups)
    "cifar10": {"automobile": "car", "truck": "truck"},
    # the shared clips, typed by hand into the taxonomy itself (recog/dataset/clips.csv)
    "clips": {t: t for t in TRAFFIC_TYPES},
    # vehicle-free views of the LTA cameras and the clips; pictures scikit-image ships
    "background": {NOT_VEHICLE: NOT_VEHICLE},
    "pictures": {NOT_VEHICLE: NOT_VEHICLE},
}

# ImageNet-1k class index -> vehicle type. Names as in torchvision's ImageNet category list.
IMAGENET_VEHICLES: dict[int, str] = {
    # cars
    436: "car",  # beach wagon
    468: "car",  # cab
    479: "car",  # car wheel
    511: "car",  # convertible
    581: "car",  # grille
    609: "car",  # jeep
    627: "car",  # limousine
    661: "car",  # Model T
    751: "car",  # racer
    817: "car",  # sports car
    408: "car",  # amphibian (an amphibious car)
    656: "car",  # minivan (an MPV)
    # pickups
    717: "pickup",  # pickup
    # vans
    407: "van",  # ambulance
    734: "van",  # police van
    654: "van",  # minibus
    757: "van",  # recreational vehicle
    # trucks
    555: "truck",  # fire engine
    569: "truck",  # garbage truck
    675: "truck",  # moving van
    803: "truck",  # snowplow
    864: "truck",  # tow truck
    867: "truck",  # trailer truck
    586: "truck",  # half track
    # buses
    779: "bus",  # school bus
    874: "bus",  # trolleybus
    # two wheelers
    665: "motorcycle",  # moped
    670: "motorcycle",  # motor scooter
    802: "motorcycle",  # snowmobile
    444: "bicycle",  # bicycle-built-for-two
    671: "bicycle",  # mountain bike
    870: "bicycle",  # tricycle
    880: "bicycle",  # unicycle
    # everything else that moves on land
    466: "other_vehicle",  # bullet train
    547: "other_vehicle",  # electric locomotive
    561: "other_vehicle",  # forklift
    565: "other_vehicle",  # freight car
    573: "other_vehicle",  # go-kart
    575: "other_vehicle",  # golfcart
    595: "other_vehicle",  # harvester
    603: "other_vehicle",  # horse cart
    612: "other_vehicle",  # jinrikisha
    705: "other_vehicle",  # passenger car (railway)
    820: "other_vehicle",  # steam locomotive
    829: "other_vehicle",  # streetcar
    847: "other_vehicle",  # tank
    866: "other_vehicle",  # tractor
}


def imagenet_matrix(num_classes: int = 1000) -> np.ndarray:
    """A (num_classes, len(LABELS)) 0/1 matrix: class probabilities @ matrix = label probabilities."""
    m = np.zeros((num_classes, len(LABELS)), dtype=np.float32)
    m[:, LABELS.index(NOT_VEHICLE)] = 1.0
    for idx, vtype in IMAGENET_VEHICLES.items():
        m[idx, LABELS.index(NOT_VEHICLE)] = 0.0
        m[idx, LABELS.index(vtype)] = 1.0
    return m


def class_matrix(types: list[str] | tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """For a model with its own classes, `types` giving each one's label (the classes themselves,
    or coarser types): the (classes, labels) 0/1 matrix, and the labels in order of first use."""
    labels = tuple(dict.fromkeys(types))
    m = np.zeros((len(types), len(labels)), dtype=np.float32)
    m[np.arange(len(types)), [labels.index(t) for t in types]] = 1.0
    return m, labels


def labels_from_probs(probs: np.ndarray, matrix: np.ndarray, labels: tuple[str, ...],
                      min_vehicle_score: float = 0.1) -> tuple[list[str], np.ndarray]:
    """Label and its probability for each row of class probabilities `probs` (N, C).

    When the labels include `not_vehicle`, an image is a vehicle if its vehicle types together
    hold at least `min_vehicle_score` of the probability, and then the likeliest type; otherwise
    it is `not_vehicle` with the remaining probability. Models with their own classes: argmax.
    """
    label_probs = probs @ matrix
    rows = np.arange(len(label_probs))
    if NOT_VEHICLE not in labels:
        best = label_probs.argmax(axis=1)
        return [labels[i] for i in best], label_probs[rows, best]
    nv = labels.index(NOT_VEHICLE)
    vehicle = np.delete(label_probs, nv, axis=1)
    vehicle_labels = [lab for i, lab in enumerate(labels) if i != nv]
    best = vehicle.argmax(axis=1)
    mass = vehicle.sum(axis=1)
    is_vehicle = mass >= min_vehicle_score
    names = [vehicle_labels[b] if v else NOT_VEHICLE for b, v in zip(best, is_vehicle)]
    return names, np.where(is_vehicle, vehicle[rows, best], 1.0 - mass).astype(np.float32)


def labeler(kind: str, num_classes: int, types: tuple[str, ...], min_vehicle_score: float | None = 0.1):
    """A function from class probabilities (N, C) to (labels, their probabilities), by taxonomy kind:

    - "imagenet": ImageNet's classes summed into vehicle types (`labels_from_probs`);
    - "identity": the model's own classes, each a label or mapped to the type `types` gives it: the
      likeliest type (the types' probabilities summed over their classes), `not_vehicle` too when
      the model has such a class: it judges vehicle or not itself, so the label is its top-1's type;
    - "two-heads": columns [:num_classes] are a fine-tuned head without a not_vehicle class (its
      classes mapped by `types`), the 1000 after it the ImageNet head of the same backbone pass.
      The ImageNet head decides vehicle or `not_vehicle` (a head of vehicle classes alone would
      force every picture into one); the type is the fine head's, however unsure: the label never
      trades what the model was trained for for ImageNet's guess (a row whose top class is `car`
      came out `bus` when an unsure fine head fell back to ImageNet's type).

    `min_vehicle_score=None` is for pictures already known to show a vehicle (the vehicles job's
    crops of tracked vehicles): the type alone, never `not_vehicle`; with two heads, the fine head's
    class, since such crops are what it was trained on and ImageNet's judgement of a 30-pixel
    vehicle is mostly "not a vehicle".
    """
    known_vehicle = min_vehicle_score is None
    min_vehicle_score = 0.0 if known_vehicle else min_vehicle_score
    if kind == "imagenet":
        matrix = imagenet_matrix(num_classes)
        return lambda probs: labels_from_probs(probs, matrix, LABELS, min_vehicle_score)
    own, own_labels = class_matrix(types)
    if kind == "identity":
        def likeliest(probs: np.ndarray) -> tuple[list[str], np.ndarray]:
            label_probs = probs @ own
            best = label_probs.argmax(axis=1)
            return [own_labels[b] for b in best], label_probs[np.arange(len(best)), best]

        return likeliest
    if known_vehicle:
        return lambda probs: labels_from_probs(probs[:, :num_classes], own, own_labels, 0.0)
    imagenet = imagenet_matrix(1000)

    def two_heads(probs: np.ndarray) -> tuple[list[str], np.ndarray]:
        names, scores = labels_from_probs(probs[:, num_classes:], imagenet, LABELS, min_vehicle_score)
        fine = probs[:, :num_classes] @ own
        best = fine.argmax(axis=1)
        for i in np.flatnonzero(np.asarray(names) != NOT_VEHICLE):
            names[i], scores[i] = own_labels[best[i]], fine[i, best[i]]
        return names, scores

    return two_heads
