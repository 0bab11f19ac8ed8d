"""Recognition models an operator supplies: registered, pinned by sha256, calibrated before use.

Regard never fetches a model. An operator who holds a licence for a network (or trained their own)
registers its ONNX file with `regard models add`: Regard reads what it can from the graph (input
name, size and layout, output width), takes the family's usual preprocessing unless told
otherwise, runs the network on a real face to check it, and records the file's sha256 with the
licence text and source the operator gives. Every later use checks the file's sha256 again and
refuses a file that changed.

The registrations live in one JSON file, `models.json` in the models folder (the setting
`models_dir`, by default `<data>/models`), written atomically; each carries the model's calibration
once `regard audit --model NAME --calibrate` has measured one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from regard.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    ModelError,
    NotFoundError,
)
from regard.match import ThresholdTable
from regard.models.recognizer import (
    BUILT_IN,
    FAMILY_PREPROCESS,
    OPERATOR_DISTANCE_AT_ZERO,
    Preprocess,
    Recognizer,
)
from regard.models.registry import sha256_of

REGISTRY_VERSION = 1
_lock = threading.Lock()
_verified: set[tuple[str, str, int, int]] = set()
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def models_dir() -> Path:
    from regard import config

    settings = config.current()
    return settings.models_dir or settings.data_dir / "models"


def registry_path(folder: Path | None = None) -> Path:
    return (folder or models_dir()) / "models.json"


def _read(folder: Path | None) -> list[Recognizer]:
    path = registry_path(folder)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        if data.get("version") != REGISTRY_VERSION:
            raise ModelError(f"{path} is a registry of version {data.get('version')!r}; this Regard reads {REGISTRY_VERSION}")
        return [Recognizer.from_dict(entry) for entry in data["models"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read the model registry {path}: {exc}") from exc


def _write(models: list[Recognizer], folder: Path | None) -> None:
    path = registry_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": REGISTRY_VERSION, "models": [m.to_dict() for m in models]}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def registered(folder: Path | None = None) -> list[Recognizer]:
    """Every operator model registered, in the order they were added (not checked: see `resolve`)."""
    with _lock:
        return _read(folder)


def all_models(folder: Path | None = None) -> list[Recognizer]:
    """The built-in model, then every registered one."""
    return [BUILT_IN, *registered(folder)]


def resolve(model: str | None, folder: Path | None = None) -> Recognizer:
    """The model named by `model` (its name or its id, name:sha256[:16]; None: the built-in), with
    its file checked against its sha256. NotFoundError for an unknown model, ModelError for a file
    that is missing or changed."""
    if model is None or model in (BUILT_IN.name, BUILT_IN.id):
        return BUILT_IN
    for candidate in registered(folder):
        if model in (candidate.name, candidate.id):
            verify(candidate)
            return candidate
    name = model.split(":")[0]
    for candidate in registered(folder):
        if candidate.name == name:
            raise ModelError(
                f"model {model!r} is not registered here: {name!r} is registered with another file "
                f"(sha256 {candidate.sha256[:16]}...); the collection's vectors come from the other one"
            )
    raise NotFoundError(f"no model {model!r}: `regard models` lists them, `regard models add` registers one")


def verify(model: Recognizer) -> Path:
    """The model's file, after checking it exists and still has its registered sha256."""
    if model.path is None:
        raise ModelError("the built-in model has no operator file")
    path = Path(model.path)
    try:
        stat = path.stat()
    except OSError:
        raise ModelError(f"model {model.name!r}: its file {path} is missing; put it back or register the model again") from None
    # Hashed again whenever the file's size or modification time changes (an operator's file may be
    # replaced while Regard runs; the files Regard ships are checked once per process).
    key = (str(path), model.sha256, stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _verified:
            return path
    actual = sha256_of(path)
    if actual != model.sha256:
        raise ModelError(
            f"model {model.name!r}: {path} has sha256 {actual}, but {model.sha256} was registered; the file changed "
            "since, so Regard will not use it (put the registered file back, or register the new one under another name)"
        )
    with _lock:
        _verified.add(key)
    return path


def inspect_graph(path: Path) -> dict[str, Any]:
    """What the ONNX graph says about its input and output: names, the chip size and layout where
    its input shape is fixed, and its output width where fixed (None where not)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - onnx raises many kinds for a file that is not a model
        raise InvalidArgumentError(f"{path} is not an ONNX model: {exc}") from exc
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1 or not graph.output:
        raise InvalidArgumentError(f"{path}: a recognition model has one image input and an output, not {len(inputs)} inputs")

    def dims(value: Any) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]

    shape = dims(inputs[0])
    layout = size = None
    if len(shape) == 4:
        if shape[1] == 3:
            layout, size = "NCHW", shape[2] if shape[2] == shape[3] else None
        elif shape[3] == 3:
            layout, size = "NHWC", shape[1] if shape[1] == shape[2] else None
    out = dims(graph.output[0])
    return {
        "input_name": inputs[0].name,
        "output_name": graph.output[0].name,
        "layout": layout,
        "size": size,
        "width": out[-1] if out and out[-1] else None,
    }


def add(
    file: Path,
    *,
    name: str,
    family: str,
    license: str,
    source: str = "",
    actor: str = "",
    check_photo: Path,
    channels: str | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    size: int | None = None,
    folder: Path | None = None,
) -> Recognizer:
    """Register an operator's ONNX file as a recognition model (see the module's docstring).

    The network is run on the main face of `check_photo` (a photo of the operator's) and must give
    finite numbers, not all equal, as many as the graph declares. The file stays where it is; its absolute path and
    sha256 are recorded."""
    from regard.align import template_of

    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS or name in (BUILT_IN.name,):
        raise InvalidArgumentError(f"a model name is 1-64 of A-Z a-z 0-9 . _ - and not {BUILT_IN.name!r}, not {name!r}")
    if not license.strip():
        raise InvalidArgumentError("say under which licence you may use the model (--licence): Regard records it with the model")
    try:
        template = template_of(family)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    file = Path(file).resolve()
    if not file.is_file():
        raise InvalidArgumentError(f"no model file {file}")
    graph = inspect_graph(file)
    usual = FAMILY_PREPROCESS[family]
    chip = size or graph["size"] or template.size
    if chip != template.size and family != "dlib":
        raise InvalidArgumentError(f"{file} takes {chip} x {chip} chips; the {family} family's alignment is {template.size} x {template.size}")
    try:
        preprocess = Preprocess(
            chip, channels or usual.channels, graph["layout"] or usual.layout, tuple(mean or usual.mean), tuple(std or usual.std)  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    model = Recognizer(
        name=name,
        family=family,
        sha256=sha256_of(file),
        width=int(graph["width"] or 0),
        preprocess=preprocess,
        input_name=graph["input_name"],
        output_name=graph["output_name"],
        license=license.strip(),
        source=source.strip(),
        path=str(file),
        added_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        added_by=actor,
        # dlib's family keeps the built-in scale, so the same network gives the same scores.
        distance_at_zero=BUILT_IN.distance_at_zero if family == "dlib" else OPERATOR_DISTANCE_AT_ZERO,
    )
    model = replace(model, width=check_on_face(model, check_photo))
    with _lock:
        models = _read(folder)
        if any(m.name == name for m in models):
            raise AlreadyExistsError(f"a model named {name!r} is registered already (`regard models remove {name}` first)")
        _write([*models, model], folder)
    return model


def check_on_face(model: Recognizer, photo: Path) -> int:
    """Run the model on the main face of a real photo and return its output width; ModelError if
    the network fails or gives something that is not an embedding (not finite, constant, a width
    other than the graph declares)."""
    from regard import align
    from regard.image import load_image
    from regard.models.embedder import Embedder
    from regard.models.runtime import default_threads
    from regard.pipeline import detect as find_faces
    from regard.pipeline import primary_face

    rgb = load_image(photo)
    main = primary_face(find_faces(rgb, embed=False), rgb.shape[1], rgb.shape[0])
    if main is None:
        raise InvalidArgumentError(f"no face in {photo} to check the model on")
    chip = align.align(rgb, main.landmarks, model.preprocess.size, family=model.family)
    try:
        vectors = Embedder(model, default_threads()).embed_chips(chip[None], check_width=False)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors for a graph that does not run
        raise ModelError(f"model {model.name!r} does not run on a {model.preprocess.size} x {model.preprocess.size} chip: {exc}") from exc
    vector = vectors[0]
    if not np.isfinite(vector).all() or np.ptp(vector) == 0:
        raise ModelError(f"model {model.name!r} gives {vector.shape[0]} numbers that are not an embedding (constant or not finite)")
    if model.width and vector.shape[0] != model.width:
        raise ModelError(f"model {model.name!r} declares {model.width} outputs but gives {vector.shape[0]}")
    if not 2 <= vector.shape[0] <= 4096:
        raise ModelError(f"model {model.name!r} gives {vector.shape[0]} numbers per face; Regard stores 2 to 4096")
    return int(vector.shape[0])


def remove(name: str, folder: Path | None = None) -> Recognizer:
    """Unregister a model (its file is left alone). Collections pinned to it can no longer enrol or
    search until it is registered again with the same file."""
    with _lock:
        models = _read(folder)
        kept = [m for m in models if m.name != name]
        if len(kept) == len(models):
            raise NotFoundError(f"no registered model {name!r}")
        _write(kept, folder)
    return next(m for m in models if m.name == name)


def set_calibration(model: str, table: ThresholdTable, folder: Path | None = None) -> Recognizer:
    """Store a measured threshold table with a registered model: from now on it may compare and
    search. (The built-in model's table ships with Regard; a collection's own threshold is set with
    `regard audit --apply-to`.)"""
    with _lock:
        models = _read(folder)
        for i, candidate in enumerate(models):
            if model in (candidate.name, candidate.id):
                models[i] = candidate.with_calibration(table)
                _write(models, folder)
                return models[i]
    if model in (BUILT_IN.name, BUILT_IN.id):
        raise InvalidArgumentError("the built-in model's calibration ships with Regard; to set a collection's threshold use --apply-to")
    raise NotFoundError(f"no registered model {model!r}")


def operator_status(folder: Path | None = None) -> list[dict[str, Any]]:
    """Every registered model as a row of `regard models` (the shape of `registry.model_status`'s,
    plus family, width, id and calibration), its file checked against its sha256."""
    rows = []
    for model in registered(folder):
        pre = model.preprocess
        row: dict[str, Any] = {
            "name": model.name,
            "id": model.id,
            "package": "(supplied by the operator)",
            "sha256": model.sha256,
            "license": model.license,
            "source": model.source,
            "input_size": f"{pre.size} x {pre.size} {pre.channels} chip, {pre.layout}, (x - {pre.mean}) / {pre.std}",
            "card": (
                f"A recognition model the operator registered ({model.family} family, {model.width}-d vectors), "
                f"added {model.added_at} by {model.added_by or 'an unnamed operator'}. Regard has not measured it: "
                "its thresholds are those of its own calibration, if any."
            ),
            "family": model.family,
            "width": model.width,
            "calibrated": model.calibrated,
            "calibration_table": model.calibration,
        }
        try:
            row.update(path=str(verify(model)), verified=True, status="ok (sha256 verified)")
        except ModelError as exc:
            row.update(path=model.path, verified=False, status=str(exc))
        rows.append(row)
    return rows
