"""The training and evaluation sets of the shipped `vehicle-types` model, built from ../shared/data.

- `build`: every source's crops (LTA expressway cameras, the Zenodo crops, CIFAR's cars and trucks,
  the shared clips' hand-labelled vehicles in `clips.csv`) and real negatives (vehicle-free
  backgrounds of the same cameras, the clips' phantoms, pictures a package ships), each class
  mapped to the traffic taxonomy (recog.taxonomy.SOURCE_TYPES), split camera-disjoint into
  train / val / test folder trees that `recog shards` and `recog train` take;
- `clips.csv`: the shared clips' vehicles typed by hand (video, vehicle, frame, box, type); the
  crops themselves are cut from ../shared/data/videos when the set is built, never stored here.
"""
