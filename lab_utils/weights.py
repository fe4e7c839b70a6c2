"""OpenAI's GPT-2 weights: download from the Hugging Face Hub and load into GPTModel.

The published ``model.safetensors`` uses GPT-2's original names and Conv1D layout
([in, out]); GPTModel uses nn.Linear ([out, in]) and the lesson's names. This module
holds the whole mapping, and loading is strict: a missing, unexpected or mis-shaped
tensor is an error that names it.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .config import GPTConfig, gpt_config
from .download import REDOWNLOAD, RemoteFile, verify
from .errors import ChecksumError, DownloadError, WeightsError
from .model import GPTModel, build_model
from .paths import cache_dir, hf_hub_dir
from .french import fr_number
from .progress import notice, progress_enabled

ENV_WEIGHTS_FILE = "TP3_GPT2_WEIGHTS"  # path of a manually downloaded model.safetensors
HUB = "https://huggingface.co"


@dataclass(frozen=True)
class HubCheckpoint:
    """A checkpoint file on the Hugging Face Hub, pinned to a commit."""

    repo_id: str
    filename: str
    revision: str
    sha256: str
    size: int

    @property
    def url(self) -> str:
        return self.url_at(HUB)

    def url_at(self, endpoint: str) -> str:
        return f"{endpoint.rstrip('/')}/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def model_id(self) -> str:
        return f"{self.repo_id}@{self.revision[:7]}"


GPT2_CHECKPOINTS = {
    "gpt2-small": HubCheckpoint(
        repo_id="openai-community/gpt2",
        filename="model.safetensors",
        revision="607a30d783dfa663caf39e06633721c8d4cfcd7e",
        sha256="248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
        size=548_105_171,
    ),
}


def _checkpoint(model_name: str) -> HubCheckpoint:
    try:
        return GPT2_CHECKPOINTS[model_name]
    except KeyError:
        raise WeightsError(
            f"Pas de poids pré-entraînés prévus pour {model_name!r} dans ce TP "
            f"(disponibles : {', '.join(GPT2_CHECKPOINTS)})."
        ) from None


# ----------------------------------------------------------------------------- download

def _verified(path: Path, ckpt: HubCheckpoint, advice: str = REDOWNLOAD) -> Path:
    """Check size and SHA-256 once per file version; a stamp remembers success."""
    stat = path.stat()
    stamp = cache_dir() / "verified" / f"{ckpt.sha256}.ok"
    token = f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == token:
        return path
    verify(path, RemoteFile(ckpt.url, ckpt.filename, ckpt.sha256, ckpt.size), advice)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(token)
    except OSError:
        pass  # read-only cache: verify again next time
    return path


def download_gpt2_weights(model_name: str = "gpt2-small", offline: bool | None = None,
                          endpoint: str | None = None) -> Path:
    """Path of the verified ``model.safetensors``, downloaded on first use.

    huggingface_hub writes through a temporary file renamed into place, locks against
    concurrent downloads and resumes a cut connection (HTTP Range); we check the
    SHA-256. A cached copy that fails the check is downloaded again once (it is only a
    copy of a public file in our cache); a file given by ``$TP3_GPT2_WEIGHTS`` is the
    user's, and is only reported. ``offline`` (default: ``$HF_HUB_OFFLINE``) only looks
    in the cache; ``endpoint`` (default: ``$HF_ENDPOINT``) names a Hub mirror.
    """
    ckpt = _checkpoint(model_name)
    manual = os.environ.get(ENV_WEIGHTS_FILE, "").strip()
    if manual:
        path = Path(manual).expanduser()
        if not path.is_file():
            what = "c'est un dossier" if path.is_dir() else "fichier introuvable"
            raise DownloadError(
                f"{ENV_WEIGHTS_FILE}={manual} : {what}. Attendu le chemin du fichier "
                f"{ckpt.filename} ({fr_number(ckpt.size)} octets) téléchargé depuis {ckpt.url}."
            )
        # A file named by the variable is the user's: never downloaded, never replaced.
        return _verified(path, ckpt, advice=(
            f"un fichier désigné par {ENV_WEIGHTS_FILE} n'est jamais téléchargé par le TP ; remplacez-le "
            f"par {ckpt.filename} téléchargé depuis {ckpt.url} "
            f"({fr_number(ckpt.size)} octets), ou supprimez la variable {ENV_WEIGHTS_FILE} pour que le TP "
            "télécharge les poids dans son cache."))

    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")
    path = _hub_download(ckpt, offline, endpoint)
    try:
        return _verified(path, ckpt)
    except ChecksumError as err:
        if offline:
            raise ChecksumError(
                f"{err} Relancez avec internet pour le retélécharger, ou supprimez le cache {hf_hub_dir()}."
            ) from err
        notice(f"Poids GPT-2 du cache corrompus ({path}) : nouveau téléchargement.")
    path = _hub_download(ckpt, offline, endpoint, force=True)
    try:
        return _verified(path, ckpt)
    except ChecksumError as err:
        raise ChecksumError(
            f"{err} Le fichier retéléchargé depuis {ckpt.url_at(endpoint)} ne correspond toujours pas "
            f"(miroir ou proxy qui modifie le contenu ?). {_manual_steps(ckpt, endpoint)}"
        ) from err


def _manual_steps(ckpt: HubCheckpoint, endpoint: str) -> str:
    return (
        f"Étapes manuelles : téléchargez {ckpt.url_at(endpoint)} ({fr_number(ckpt.size / 1e6, 0)} Mo) depuis une "
        f"machine connectée, puis définissez {ENV_WEIGHTS_FILE}=/chemin/vers/{ckpt.filename}, "
        f"ou lancez « python -m lab_utils prefetch » avec internet."
    )


def _hub_download(ckpt: HubCheckpoint, offline: bool, endpoint: str, force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from huggingface_hub.utils import logging as hf_logging

    (disable_progress_bars if not progress_enabled() else enable_progress_bars)()
    hub_logger = hf_logging.get_logger()  # its retries log English lines ("Retrying in 1s...")
    level = hub_logger.level
    hub_logger.setLevel(hf_logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # English warnings; failures raise, and we explain them
            return Path(hf_hub_download(
                ckpt.repo_id, ckpt.filename, revision=ckpt.revision, cache_dir=hf_hub_dir(),
                local_files_only=offline, endpoint=endpoint, force_download=force,
            ))
    except Exception as err:  # network errors, offline cache miss, HTTP errors, read-only cache
        where = "dans le cache (mode hors ligne)" if offline else f"sur {endpoint}"
        raise DownloadError(
            f"Poids GPT-2 introuvables {where} ({_root_cause(err)}). {_manual_steps(ckpt, endpoint)}"
        ) from err
    finally:
        hub_logger.setLevel(level)


def _root_cause(err: BaseException) -> str:
    """huggingface_hub wraps the HTTP error (a 404...) in a generic one: name the original."""
    while err.__cause__ is not None:
        err = err.__cause__
    status = getattr(getattr(err, "response", None), "status_code", None)
    return (f"HTTP {status}, " if status else "") + f"{type(err).__name__}: {err}"


# ----------------------------------------------------------------------------- mapping

_BLOCK_KEY = re.compile(r"^h\.(\d+)\.(.+)$")
_IGNORED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # causal-mask buffers, not weights


def expected_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape, in the published layout (Conv1D weights are [in, out])."""
    C, V, T = cfg.emb_dim, cfg.vocab_size, cfg.context_length
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(cfg.n_layers):
        shapes.update({
            f"h.{i}.ln_1.weight": (C,), f"h.{i}.ln_1.bias": (C,),
            f"h.{i}.attn.c_attn.weight": (C, 3 * C), f"h.{i}.attn.c_attn.bias": (3 * C,),
            f"h.{i}.attn.c_proj.weight": (C, C), f"h.{i}.attn.c_proj.bias": (C,),
            f"h.{i}.ln_2.weight": (C,), f"h.{i}.ln_2.bias": (C,),
            f"h.{i}.mlp.c_fc.weight": (C, 4 * C), f"h.{i}.mlp.c_fc.bias": (4 * C,),
            f"h.{i}.mlp.c_proj.weight": (4 * C, C), f"h.{i}.mlp.c_proj.bias": (C,),
        })
    return shapes


def _convert(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One checkpoint tensor -> the GPTModel parameter(s) it fills."""
    simple = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_emb.weight",
              "ln_f.weight": "final_norm.scale", "ln_f.bias": "final_norm.shift"}
    if key in simple:
        return {simple[key]: tensor.clone()}
    i, rest = _BLOCK_KEY.match(key).groups()
    b = f"trf_blocks.{i}"
    if rest.startswith("attn.c_attn."):
        # [C, 3C] (or [3C]) holds query, key and value side by side.
        q, k, v = tensor.chunk(3, dim=-1)
        kind = rest.rsplit(".", 1)[1]
        fix = (lambda t: t.T.contiguous()) if kind == "weight" else (lambda t: t.clone())
        return {f"{b}.att.W_query.{kind}": fix(q), f"{b}.att.W_key.{kind}": fix(k),
                f"{b}.att.W_value.{kind}": fix(v)}
    names = {"ln_1": "norm1", "ln_2": "norm2", "attn.c_proj": "att.out_proj",
             "mlp.c_fc": "ff.fc1", "mlp.c_proj": "ff.fc2"}
    module, kind = rest.rsplit(".", 1)
    if module.startswith("ln_"):
        return {f"{b}.{names[module]}.{ {'weight': 'scale', 'bias': 'shift'}[kind] }": tensor.clone()}
    # Conv1D [in, out] -> nn.Linear [out, in]
    return {f"{b}.{names[module]}.{kind}": tensor.T.contiguous() if kind == "weight" else tensor.clone()}


def _normalise_keys(keys) -> dict[str, str]:
    """Published key -> key as stored (with or without ``transformer.``), minus buffers."""
    out = {}
    for stored in keys:
        key = stored.removeprefix("transformer.")
        if not _IGNORED.match(key):
            out[key] = stored
    return out


def load_gpt2_weights(model: GPTModel, path: str | Path) -> GPTModel:
    """Fill ``model`` (which may live on ``meta``) from a GPT-2 safetensors file.

    Accepts keys with or without the ``transformer.`` prefix, ignores the causal-mask
    buffers, and copies ``wte`` into the (untied) language-model head unless the file
    carries its own ``lm_head.weight``. Nothing in ``model`` changes unless every
    tensor was found with the right shape.
    """
    path = Path(path)
    expected = expected_shapes(model.cfg)
    expected_head = (model.cfg.vocab_size, model.cfg.emb_dim)
    try:
        with safe_open(str(path), framework="pt") as f:  # the header only: check before reading
            keys = _normalise_keys(f.keys())
            shapes = {key: tuple(f.get_slice(stored).get_shape()) for key, stored in keys.items()}
        head_key = keys.pop("lm_head.weight", None)
        missing = sorted(set(expected) - set(keys))
        unexpected = sorted(set(keys) - set(expected))
        if missing or unexpected:
            raise WeightsError(
                f"{path.name} ne correspond pas à l'architecture {_describe(model.cfg)} : "
                f"tenseurs manquants {_short(missing)}, tenseurs inattendus {_short(unexpected)}."
            )
        for key, shape in [*((k, shapes[k]) for k in expected), ("lm_head.weight", shapes.get("lm_head.weight"))]:
            want = expected_head if key == "lm_head.weight" else expected[key]
            if shape is not None and shape != want:
                raise WeightsError(
                    f"{path.name} : le tenseur {key!r} a la forme {list(shape)}, "
                    f"attendu {list(want)} pour {_describe(model.cfg)}."
                )
        # Read one block at a time, reopening the file: each opening maps it into memory,
        # and closing it releases those pages, so the file never sits whole in RAM.
        groups = [[k for k in expected if not k.startswith("h.")]]
        groups += [[k for k in expected if k.startswith(f"h.{i}.")] for i in range(model.cfg.n_layers)]
        state = {}
        for group in groups:
            with safe_open(str(path), framework="pt") as f:
                for key in group:
                    state.update(_convert(key, f.get_tensor(keys[key]).float()))
        if head_key:
            with safe_open(str(path), framework="pt") as f:
                head = f.get_tensor(head_key).float()
        else:
            head = state["tok_emb.weight"]
    except SafetensorError as err:
        raise WeightsError(
            f"{path} n'est pas un fichier safetensors lisible ({err}) : il est tronqué ou "
            "corrompu. Supprimez-le et retéléchargez-le."
        ) from err
    except FileNotFoundError:
        raise WeightsError(f"Fichier de poids introuvable : {path}.") from None
    state["out_head.weight"] = head.clone()  # untied copy, as the lesson counts it
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _describe(cfg: GPTConfig) -> str:
    return f"GPT-2 ({cfg.n_layers} couches, d={cfg.emb_dim})"


def _short(names: list[str], n: int = 5) -> str:
    if not names:
        return "aucun"
    more = f" et {len(names) - n} autres" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_pretrained_gpt2(model_name: str = "gpt2-small", path: str | Path | None = None,
                         cfg: GPTConfig | None = None) -> GPTModel:
    """GPTModel with OpenAI's pretrained weights (downloaded if ``path`` is None)."""
    cfg = cfg or gpt_config(model_name)
    path = path or download_gpt2_weights(model_name)
    model = build_model(cfg, device="meta")
    return load_gpt2_weights(model, path).eval()
