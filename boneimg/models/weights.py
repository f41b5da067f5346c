"""Model files: where the shipped weights are, checksums, safe loading, saving with a card.

A model is three files with one stem: ``<stem>.pt`` (a torch state dict), ``<stem>.json``
(architecture, working resolution, post-processing, SHA-256 of the ``.pt``, training record,
evaluation figures) and ``<stem>.md`` (the model card, rendered from the JSON).
"""

import hashlib
import json
from importlib.resources import files
from pathlib import Path

from ..errors import BoneImgError
from ..io.atomic import atomic_path

#: The model ``segment_nuclei(method="model")`` uses unless told otherwise.
DEFAULT_MODEL = "nuclei_he"


def shipped_models():
    """Names of the models installed with boneimg (in ``boneimg._weights``)."""
    try:
        root = files("boneimg._weights")
        return sorted(p.name[:-5] for p in root.iterdir()
                      if p.name.endswith(".json") and root.joinpath(p.name[:-5] + ".pt").is_file())
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, OSError):
        return []


def model_paths(model):
    """(weights, metadata) paths of a shipped model name or of a ``.pt``/``.json`` path or stem."""
    if isinstance(model, str) and model in shipped_models():
        root = files("boneimg._weights")
        return Path(str(root.joinpath(f"{model}.pt"))), Path(str(root.joinpath(f"{model}.json")))
    path = Path(model)
    stem = path.with_suffix("") if path.suffix in (".pt", ".json", ".md") else path
    weights, meta = stem.with_name(stem.name + ".pt"), stem.with_name(stem.name + ".json")
    if not weights.is_file() or not meta.is_file():
        known = ", ".join(shipped_models()) or "none installed"
        raise BoneImgError(f"model {str(model)!r} not found: need {weights.name} and {meta.name} "
                           f"(shipped models: {known})")
    return weights, meta


def sha256(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(model):
    """The JSON metadata of a model (see the module docstring)."""
    _, meta_path = model_paths(model)
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BoneImgError(f"unreadable model metadata ({exc})", path=meta_path) from None


def load_model(model=DEFAULT_MODEL, device="cpu"):
    """The network of `model` in eval mode, and its metadata.

    The weights file must match the SHA-256 recorded in the metadata (a tampered or truncated
    file is refused) and is read with ``torch.load(weights_only=True)``, which never runs
    code from the file.
    """
    import torch

    from .network import NucleusNet

    weights_path, _ = model_paths(model)
    meta = read_metadata(model)
    expected = meta.get("sha256")
    actual = sha256(weights_path)
    if actual != expected:
        raise BoneImgError(f"checksum mismatch: the weights' SHA-256 is {actual}, the model card says "
                           f"{expected}; the file is damaged or was altered", path=weights_path)
    try:
        state = torch.load(weights_path, map_location=device, weights_only=True)
        net = NucleusNet(**meta["architecture"])
        net.load_state_dict(state)
    except Exception as exc:  # any failure to read the tensors means the file is unusable
        raise BoneImgError(f"cannot load the weights ({type(exc).__name__}: {exc})", path=weights_path) from None
    return net.to(device, memory_format=torch.channels_last).eval(), meta


def save_model(net, meta, stem):
    """Write ``<stem>.pt``, ``<stem>.json`` and the card ``<stem>.md`` atomically; returns the JSON dict."""
    import torch

    stem = Path(stem)
    weights = stem.with_name(stem.name + ".pt")
    with atomic_path(weights) as tmp:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    meta = {**meta, "name": stem.name, "sha256": sha256(weights)}
    with atomic_path(stem.with_name(stem.name + ".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    with atomic_path(stem.with_name(stem.name + ".md")) as tmp:
        tmp.write_text(model_card(meta), encoding="utf-8")
    return meta


def model_card(meta):
    """The model card (Markdown) of a model's metadata."""
    arch = meta["architecture"]
    train = meta.get("training", {})
    lines = [
        f"# {meta['name']}: {meta.get('title', 'nucleus segmentation and classification')}",
        "",
        "## Architecture",
        f"U-Net-style encoder-decoder (`boneimg.models.network.NucleusNet`), channels {list(arch['widths'])} "
        f"per level, {meta.get('n_parameters', '?')} parameters. Outputs on the input grid: nucleus "
        f"probability, nucleus-centre map, distance to the nucleus boundary, cell type "
        f"({', '.join(meta['cell_types'])}).",
        "",
        f"Working resolution: {meta['working_pixel_size_um']} µm/px; inputs are resampled to it by their pixel "
        "size, so 20x and 40x images are read at the same scale.",
        "",
        "## Training data and licence terms",
    ]
    lines += [f"- {item}" for item in train.get("data", [])]
    lines += ["", "## Training", f"Command (from the repository root): `{train.get('command', '?')}`", ""]
    lines += [f"- {k}: {v}" for k, v in train.items() if k not in ("data", "command")]
    lines += ["", "## Evaluation on held-out images", ""]
    evaluation = meta.get("evaluation", {})
    if evaluation:
        lines += ["| data set | figures |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in evaluation.items()]
        lines += ["", "Detection: one-to-one matching of predicted to true centres within 6 px (CRCHisto) or "
                  "3.3 µm (the others). Cell types: HoVer-Net's F_c per type (`boneimg.metrics.classification_f1`), "
                  "which detection errors lower too; CRCHisto's unclassified nuclei are left out of it."]
    else:
        lines += ["Not evaluated."]
    lines += ["", "## Post-processing", ""]
    lines += [f"- {k}: {v}" for k, v in meta.get("postprocess", {}).items()]
    lines += ["", "## Checksum", "", f"SHA-256 of `{meta['name']}.pt`: `{meta['sha256']}` (verified on every load).", ""]
    return "\n".join(lines)
