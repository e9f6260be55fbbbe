"""From a name to a spec (`resolve`, on the driver, before any cluster work) and from a spec to a
network with its weights (`build`, on each worker)."""

from __future__ import annotations

import dataclasses

from recog.errors import ModelError
from recog.models import named, weights
from recog.models.registry import ARCHITECTURES, BUILTIN_ARCH, BUILTIN_PACKAGES, DEFAULT_MODEL, ModelSpec, imagenet_classes, is_package
from recog.storage import StorageOptions


def package_location(model: str) -> str | None:
    """Where the model package `model` names lies: a built-in package's folder, the path or URI as
    given, or the source of a version in MLflow's model registry (models:/NAME@ALIAS,
    models:/NAME/VERSION); None for an architecture."""
    if model in BUILTIN_PACKAGES:
        return str(BUILTIN_PACKAGES[model])
    if named.is_registered(model):
        return named.locate(model).source
    return model if is_package(model) else None


def resolve(model: str = DEFAULT_MODEL, weights_uri: str | None = None, classes: list[str] | None = None,
            opts: StorageOptions = StorageOptions()) -> ModelSpec:
    """Check that the model can be built and return its spec.

    `model` is a registered architecture (with `weights_uri` where it has none built in), a model
    package (a built-in name, a path or URI) or a version of one in MLflow's registry, resolved
    here, once, to its package (the spec says where its weights are: workers never ask MLflow);
    `classes` names the classes of a checkpoint that is not ImageNet's."""
    if named.is_registered(model):
        version = named.locate(model)
        return dataclasses.replace(weights.package_spec(version.source, opts), name=version.label)
    if location := package_location(model):
        return weights.package_spec(location, opts)
    if model not in ARCHITECTURES:
        raise ModelError(f"unknown model {model!r}; known: {', '.join(sorted([*BUILTIN_PACKAGES, *ARCHITECTURES]))}, "
                         f"a model package, or models:/NAME@ALIAS")
    if weights_uri is None and model != BUILTIN_ARCH:
        raise ModelError(f"{model} needs --weights: a checkpoint file, local or s3:// "
                         f"(only {BUILTIN_ARCH} has weights built in)")
    uri = weights_uri or weights.BUILTIN_WEIGHTS
    data = weights.read_weights(uri, opts)
    n = weights.num_classes(weights.state_dict_from_bytes(data, uri))
    if classes is None and n != 1000:
        raise ModelError(f"{uri} has {n} classes: name them with --classes (comma-separated, in order)")
    if classes is not None and len(classes) != n:
        raise ModelError(f"--classes names {len(classes)} classes but {uri} has {n}")
    return ModelSpec(
        name=model if weights_uri is None else f"{model}:{uri.rsplit('/', 1)[-1]}",
        arch=model,
        classes=imagenet_classes() if classes is None else tuple(classes),
        taxonomy="imagenet" if classes is None else "identity",
        preprocessing=ARCHITECTURES[model].preprocessing(),
        weights=uri,
        version=weights.version_of(data),
    )


def _base(spec: ModelSpec, opts: StorageOptions):
    base = ARCHITECTURES[spec.arch].build(1000)
    base.load_state_dict(weights.load_state(spec.base, opts, like=base.state_dict()))
    return base


def own_state(spec: ModelSpec, opts: StorageOptions, like: dict, base=None) -> dict:
    """The whole state dict of a package's own network (`like`: that network's state dict, for the
    names and shapes): what the package stores, completed from its base when it stores only what a
    fine-tune changed. (`base`: the base network, if the caller has built it.)"""
    state = weights.load_state(spec.weights, opts, like=like)
    if not spec.base:
        return state
    base = base if base is not None else _base(spec, opts)
    return {**{k: v for k, v in base.state_dict().items() if k in like and like[k].shape == v.shape},
            **{k: v.float() if v.is_floating_point() else v for k, v in state.items()}}


def build(spec: ModelSpec, opts: StorageOptions):
    """The network of `spec` with its weights loaded, in eval mode on the CPU. A package that stores
    only what a fine-tune changed is completed from its base; one whose early stages are the base's
    (`shared_stages`) runs as two heads on one backbone pass: its own and the base's ImageNet head."""
    net = ARCHITECTURES[spec.arch].build(len(spec.classes))
    base = _base(spec, opts) if spec.base else None
    net.load_state_dict(own_state(spec, opts, net.state_dict(), base))
    if spec.taxonomy == "two-heads":
        from recog.models.lite0 import TwoHeads

        return TwoHeads(base, net, spec.shared_stages).eval()
    return net.eval()
