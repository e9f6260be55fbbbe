"""Named models: model packages registered in MLflow's model registry, the one ML teams already run.

    recog train ... --output s3://models/cam-07-v3 --register cam-07      # a new version of cam-07
    recog models alias cam-07 3 champion                                   # what cam-07@champion means
    recog vehicles --model models:/cam-07@champion ...                     # or models:/cam-07/3

A registered version is a pointer: its `source` is the model package where `recog train` wrote it
(model.json + weights.pt, local or on the job's object store), so nothing is copied. `--model
models:/...` is resolved to that package once, by the job's driver (`builder.resolve`); workers read
the package from the store and never talk to MLflow. Rows labeled with it say `NAME/VERSION` in
their `model` column (and the weights' hash in `model_version`), so a camera's history stays
traceable after its alias moves on. The training run is logged beside it: its configuration as
parameters, each epoch's metrics, the package's location and hash as tags.

Where the registry is: MLFLOW_TRACKING_URI (a tracking server, or a database), else a SQLite file
in recog-data/ (MLflow no longer takes a plain folder). MLflow is an optional extra
(`pip install 'recog[mlflow]'`); this module imports it only when a named model is used.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from recog.errors import ConfigError, ModelError

PREFIX = "models:/"
EXPERIMENT = "recog"  # where recog train logs its runs
DEFAULT_STORE = Path("recog-data") / "mlflow.db"
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_registered(model: str) -> bool:
    """A model given as models:/NAME@ALIAS or models:/NAME/VERSION."""
    return model.startswith(PREFIX)


def check_name(name: str, what: str = "--register") -> str:
    if not NAME_RULE.fullmatch(name):
        raise ConfigError(f"{what} {name!r}: a model name is letters, digits, '.', '_' and '-' (it becomes models:/{name}@ALIAS)")
    return name


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the SQLite file under recog-data/ (made on first use)."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    DEFAULT_STORE.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_STORE.resolve()}"


def _client():
    """An MLflow client on the tracking URI, or the one line that says what to install."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError("named models (models:/..., --register, recog models) need MLflow: "
                          "pip install 'recog[mlflow]' (or mlflow-skinny, sqlalchemy and alembic)") from None
    for name in ("mlflow", "alembic"):  # its database set-up lines; recog says what matters
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow.MlflowClient(tracking_uri=tracking_uri())


def require() -> None:
    """Fail now, before any work, if MLflow is missing (a run that trains for an hour and then cannot register)."""
    _client()


def _explain(e: Exception, what: str) -> ModelError:
    """MLflow's exception, as one line that says what to fix."""
    code = getattr(e, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return ModelError(f"{what}: not in the model registry at {tracking_uri()} (recog models list shows what is)")
    return ModelError(f"{what}: the model registry at {tracking_uri()} said: {str(e).strip().splitlines()[0]}")


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    source: str  # the model package

    @property
    def label(self) -> str:
        """What rows labeled with it say in their `model` column."""
        return f"{self.name}/{self.version}"


def locate(model: str) -> Version:
    """The registered version `model` (models:/NAME@ALIAS or models:/NAME/VERSION) names."""
    rest = model[len(PREFIX):]
    name, at, alias = rest.partition("@")
    if not at:
        name, _, alias = rest.rpartition("/")
    if not name or not alias or (not at and not alias.isdigit()):
        raise ModelError(f"--model {model}: a registered model is models:/NAME@ALIAS or models:/NAME/VERSION")
    client = _client()
    try:
        mv = client.get_model_version_by_alias(name, alias) if at else client.get_model_version(name, alias)
    except Exception as e:  # noqa: BLE001 - MLflow raises its own and its transports' errors; each means the same here
        if at and (known := _aliases(client, name)) is not None:
            raise ModelError(f"{model}: {name} has no alias {alias!r}; " + (
                f"its aliases: {', '.join(f'{a} -> version {v}' for a, v in sorted(known.items()))}" if known else
                f"it has none yet (recog models alias {name} VERSION {alias})")) from None
        raise _explain(e, model) from None
    return Version(name, str(mv.version), mv.source)


def _aliases(client, name: str) -> dict | None:
    """The aliases of registered model `name` (alias -> version), or None if there is no such model."""
    try:
        return dict(client.get_registered_model(name).aliases or {})
    except Exception:  # noqa: BLE001
        return None


def register(name: str, package_uri: str, package: dict) -> Version:
    """Log the training run of the package at `package_uri` (its model.json is `package`) and
    register it as a new version of `name`, with the package itself as the version's source."""
    from mlflow.entities import Metric, Param

    client = _client()
    training = package.get("training", {})
    try:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        tags = {"recog.package": package_uri, "recog.version": package["version"], "recog.model": package["name"],
                "recog.arch": package["arch"], "recog.classes": ",".join(package["classes"])}
        run = client.create_run(experiment_id, run_name=f"{name}-{package['version']}", tags=tags)
        now = int(time.time() * 1000)
        params = [Param(k, str(v)[:6000]) for k, v in sorted(training.get("config", {}).items()) if v is not None]
        metrics = [Metric(k, float(v), now, h["epoch"]) for h in training.get("history", [])
                   for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))]
        for i in range(0, len(params), 100):  # MLflow takes 100 params a call, and 1000 metrics
            client.log_batch(run.info.run_id, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
        client.set_terminated(run.info.run_id)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name, description="a recog model package (model.json + weights.pt)")
        mv = client.create_model_version(name, package_uri, run_id=run.info.run_id, tags=tags,
                                         description=f"{package['name']} {package['version']}: {package_uri}")
    except Exception as e:  # noqa: BLE001 - MLflow raises its own and its transports' errors; each means the same here
        raise _explain(e, f"--register {name}") from None
    return Version(name, str(mv.version), package_uri)


def versions(name: str | None = None) -> list[dict]:
    """Every registered version (of `name`, or of every model): name, version, aliases, the package, its hash, when."""
    client = _client()
    try:
        models = client.search_registered_models(f"name = '{name}'" if name else None)
        rows = []
        for m in sorted(models, key=lambda m: m.name):
            aliases: dict[str, list[str]] = {}
            for alias, version in (m.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            for mv in sorted(client.search_model_versions(f"name = '{m.name}'"), key=lambda v: int(v.version)):
                rows.append({"name": m.name, "version": int(mv.version), "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
                             "model_version": (mv.tags or {}).get("recog.version"), "source": mv.source,
                             "created": time.strftime("%Y-%m-%d %H:%M", time.gmtime(mv.creation_timestamp / 1000))})
    except Exception as e:  # noqa: BLE001
        raise _explain(e, f"models {name}" if name else "models") from None
    if name and not rows:
        raise ModelError(f"{name}: no such registered model in {tracking_uri()} (recog models list shows what is)")
    return rows


def set_alias(name: str, version: str, alias: str) -> Version:
    """Point `name@alias` at `version`; returns that version."""
    client = _client()
    try:
        mv = client.get_model_version(name, version)
        client.set_registered_model_alias(name, alias, version)
    except Exception as e:  # noqa: BLE001
        raise _explain(e, f"{name} version {version}") from None
    return Version(name, str(mv.version), mv.source)
