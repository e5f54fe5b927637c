"""The real engine: a local model folder loaded with torch + transformers, decoded token by token with a KV cache.

Loading is offline and conservative: ``HF_HUB_OFFLINE=1`` is set before transformers is imported, only the local
folder is read (``local_files_only``), only safetensors weights are accepted (pickle ``.bin``/``.pt`` files can run
code and are refused), and ``trust_remote_code`` is never enabled. The memory the model needs is checked first
(``serve/engines/transformers/memory.py``) so a too-small machine gets a clear error instead of the OOM killer.
What the load does — the MXFP4 path (native kernels, packed experts in ``mxfp4.py``, or dequantised), the dtype and
the context — is decided first by ``plan.py``; after a native load the engine checks that transformers did not
silently dequantise, and ``description`` / ``mxfp4`` say the path really taken.

Alone, generation runs on one worker thread, one sequence at a time, in small steps (``_prefill`` then
``_decode_step``) so that the server can stop it between two steps: closing the async iterator or cancelling the
consuming task sets a flag the worker checks before every step. When requests may run together the server wraps
this engine in the ``BatchingEngine`` (``batching.py``), which drives the loaded model itself.

torch, transformers and tokenizers are imported inside methods only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.serve.engines.interface import STOP_TOKEN_TEXTS, SamplingParams
from gptoss_cli.serve.engines.transformers.handoff import items_until
from gptoss_cli.serve.engines.transformers.memory import PREFILL_CHUNK, check_memory, read_config
from gptoss_cli.serve.engines.transformers.plan import LoadPlan, plan_load, resolve_dtype
from gptoss_cli.serve.options import DTYPES
from gptoss_cli.weights import is_pickle

log = logging.getLogger("gptoss.serve")

SMALL_MODEL_PARAMS = 50_000_000
_GIL_FREE_CHARS = 32 * 1024  # longer texts are tokenised without holding the GIL (other threads keep running)
DEVICES = ("auto", "cpu", "cuda")  # --device; "cuda:N" names one GPU
_DONE = object()


class HFTokenizer:
    """Tokenizer protocol over a ``tokenizer.json`` (the ``tokenizers`` library; no transformers needed).

    Special tokens are found by their text, so the real o200k_harmony tokenizer and the demo tokenizer both work.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._added = {tok.content: int(i) for i, tok in tokenizer.get_added_tokens_decoder().items()}

    @classmethod
    def from_dir(cls, model_dir: Path) -> "HFTokenizer":
        from tokenizers import Tokenizer

        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            raise CouldNotRun(f"{model_dir} has no tokenizer.json", hint="the folder must hold a Hugging Face model")
        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        if len(text) > _GIL_FREE_CHARS:  # ``encode`` holds the GIL throughout; ``encode_batch`` releases it
            return list(self._tok.encode_batch([text], add_special_tokens=False)[0].ids)
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=False))

    def token_id(self, text: str) -> int | None:
        return self._added.get(text)


@dataclass
class _Sequence:
    """Decoding state of one sequence: KV cache, last logits, its sampler (``serve/engines/transformers/sampling.py``), tokens produced."""

    cache: Any
    logits: Any  # 1-D float32 tensor over the vocabulary
    sampler: Any  # RowSampler
    length: int = 0  # tokens in the cache
    produced: list[int] = field(default_factory=list)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CouldNotRun(f"--device {device} was asked for, but torch sees no CUDA device",
                              hint="use --device cpu, or install a CUDA build of torch")
        return device
    if device == "cpu":
        return device
    raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda")


def check_weights(model_dir: Path) -> None:
    """Refuse folders without safetensors weights, naming pickle-only checkpoints explicitly."""
    if not model_dir.is_dir():
        raise CouldNotRun(f"model folder {model_dir} does not exist", hint="run `gptoss fetch` or pass MODEL_DIR")
    if any(model_dir.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in model_dir.iterdir() if is_pickle(p.name))
    if pickles:
        raise CouldNotRun(
            f"{model_dir} has only pickle weights ({', '.join(pickles[:3])}); gptoss loads safetensors only, "
            "because pickle files can run code when loaded",
            hint="download the safetensors version of the model",
        )
    raise CouldNotRun(f"{model_dir} has no *.safetensors weights", hint="run `gptoss fetch` or pass MODEL_DIR")


class TransformersEngine:
    """Engine protocol implementation over a local transformers model folder (see the module docstring)."""

    supports_batching = True  # engines/build.py wraps it in the BatchingEngine when requests may run together

    def __init__(
        self, model_dir: Path, *, device: str = "auto", dtype: str = "auto", max_model_len: int | None = None,
        mxfp4: str = "auto", decode_step: str = "fast",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.decode_step = decode_step  # fast | transformers (decode_step.py)
        self.requested_mxfp4 = mxfp4
        self.mxfp4: str | None = None  # after load: native | packed | dequantise (None: no MXFP4 experts)
        self.plan: LoadPlan | None = None
        self.requested_device = device
        self.requested_dtype = dtype
        self.requested_max_model_len = max_model_len
        self.tokenizer: HFTokenizer | None = None  # type: ignore[assignment]
        self.max_model_len: int = max_model_len or 0
        self.description = f"transformers engine for {self.model_dir} (not loaded)"
        self.default_stop_token_ids: tuple[int, ...] = ()
        self.device = "cpu"
        self.dtype = "float32"
        self._model: Any = None
        self._step: Any = None  # the DecodeStep of the loaded model (decode_step.py), None: model(...)
        self._torch: Any = None
        self._cache_kwarg = "cache"
        self._executor: ThreadPoolExecutor | None = None
        self._active: set[threading.Event] = set()  # cancel flags of running or queued generations

    @property
    def model(self) -> Any:
        """The loaded transformers model (None before ``load()`` / after ``close()``)."""
        return self._model

    # -- loading ---------------------------------------------------------------------------------------------------

    def load(self) -> None:
        from gptoss_cli.config import hf_hub_cache, local_kernels

        check_weights(self.model_dir)
        config = read_config(self.model_dir)
        self.device = resolve_device(self.requested_device)
        limit = int(config.get("max_position_embeddings") or 4096)
        wanted = self.requested_max_model_len
        if wanted is not None and wanted > limit:
            log.warning("--max-model-len %d is above the model's %d; using %d", wanted, limit, limit)
        plan = plan_load(self.model_dir, self.device, self.requested_dtype, max_model_len=wanted,
                         mxfp4=self.requested_mxfp4, hub_cache=hf_hub_cache(), local_kernels=local_kernels())
        self.dtype, self.max_model_len, self.plan = plan.dtype, plan.max_model_len, plan
        os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may be downloaded
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        self.tokenizer = HFTokenizer.from_dir(self.model_dir)
        model, how = self._load_model(plan)
        from gptoss_cli.serve.engines.transformers.mxfp4 import fold_lm_head

        self._model = fold_lm_head(model)
        from gptoss_cli.serve.engines.transformers.decode_step import decode_step_for, keep_transformers_forward

        if self.decode_step == "transformers":  # every decode step through model(...), the batch's too
            keep_transformers_forward(self._model)
        self._step = decode_step_for(self._model)
        self._tune_threads(model)
        import inspect

        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.default_stop_token_ids = self._stop_ids(model)
        arch = (config.get("architectures") or [type(model).__name__])[0]
        self.description = f"{arch} on {self.device} ({how}), context {self.max_model_len} ({plan.context_reason})"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptoss-generate")
        log.info("loaded %s from %s", self.description, self.model_dir)

    def _load_model(self, plan: LoadPlan) -> tuple[Any, str]:
        import torch

        self._torch = torch
        path = plan.mxfp4
        if path == "native":
            self._point_kernels_at_fetched()
            try:
                model = self._from_pretrained(None)
            except Exception as exc:  # noqa: BLE001 - any kernel problem: fall back, truthfully reported
                log.warning("native MXFP4 kernels failed (%s); falling back", exc)
                self._release_cuda()
                path = self._fallback()
            else:
                if is_native(model):
                    self.mxfp4 = "native"
                    return model, plan.how
                log.warning("transformers did not use its native MXFP4 kernels (it dequantised the experts)")
                self.mxfp4 = "dequantise"
                return model, f"{model.dtype}, MXFP4 dequantised by transformers".replace("torch.", "")
        self.mxfp4 = path
        if path == "packed":
            from gptoss_cli.serve.engines.transformers.mxfp4 import load_packed

            return load_packed(self.model_dir, self.device, self.dtype), f"{self.dtype}, MXFP4 packed"
        if path == "dequantise":
            from transformers import Mxfp4Config

            log.info("MXFP4 experts dequantised to %s at load (%s)", self.dtype, plan.estimate.detail)
            return self._from_pretrained(Mxfp4Config(dequantize=True)), f"{self.dtype}, MXFP4 dequantised"
        return self._from_pretrained(None), self.dtype

    def _point_kernels_at_fetched(self) -> None:
        """``LOCAL_KERNELS`` names the kernel ``gptoss fetch`` put next to the model, so ``kernels`` loads it
        from there instead of the Hub (before transformers is imported)."""
        from gptoss_cli.config import local_kernels
        from gptoss_cli.kernels import KERNEL_REPO, fetched_kernel

        folder = fetched_kernel(self.model_dir)
        if folder is not None:
            entries = [e for e in (local_kernels() or "").split(":") if e and not e.startswith(KERNEL_REPO + "=")]
            os.environ["LOCAL_KERNELS"] = ":".join([*entries, f"{KERNEL_REPO}={folder.resolve()}"])

    def _fallback(self) -> str:
        """After native kernels failed: dequantise when that fits, else packed experts."""
        try:
            check_memory(self.model_dir, self.device, self.dtype, max_model_len=self.max_model_len)
            return "dequantise"
        except CouldNotRun:
            return "packed"

    def _from_pretrained(self, quantization_config: Any) -> Any:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        kwargs: dict[str, Any] = {
            "dtype": getattr(torch, self.dtype),
            "local_files_only": True,
            "use_safetensors": True,
            "trust_remote_code": False,
            "attn_implementation": "eager",
        }
        if quantization_config is not None:
            kwargs["quantization_config"] = quantization_config
        if self.device.startswith("cuda"):
            kwargs["device_map"] = {"": self.device}
        try:
            model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            raise CouldNotRun(f"could not load the model in {self.model_dir}: {exc}") from None
        return model.to(self.device).eval() if not self.device.startswith("cuda") else model.eval()

    def _tune_threads(self, model: Any) -> None:
        """On the CPU a tiny model (the demo) decodes several times faster on one thread: its matrices are too
        small to split, so extra threads only add synchronisation. Larger models keep torch's default."""
        if self.device == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
            self._torch.set_num_threads(1)
            log.debug("tiny model on cpu: torch uses one thread")

    def _stop_ids(self, model: Any) -> tuple[int, ...]:
        ids = [self.tokenizer.token_id(t) for t in STOP_TOKEN_TEXTS] if self.tokenizer else []
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids += list(eos) if isinstance(eos, (list, tuple)) else [eos]
        return tuple(dict.fromkeys(int(i) for i in ids if i is not None))

    def close(self) -> None:
        for cancel in list(self._active):
            cancel.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._model = self._step = None
        self._release_cuda()

    def _release_cuda(self) -> None:
        import gc

        gc.collect()
        torch = self._torch
        if torch is not None and self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    # -- generation ------------------------------------------------------------------------------------------------

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
        """Yield generated token ids (the stop token included); see the Engine protocol."""
        if self._model is None or self._executor is None:
            raise RuntimeError("the engine is not loaded")
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens; the context length is {self.max_model_len}")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                cancel.set()

        self._active.add(cancel)
        loop.run_in_executor(self._executor, self._run, list(prompt_ids), params, cancel, emit)
        try:
            async for item in items_until(queue, _DONE):
                yield item
        finally:
            cancel.set()
            self._active.discard(cancel)

    def _run(
        self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event, emit: Callable[[Any], None]
    ) -> None:
        """The worker-thread loop: prefill, then sample / emit / decode one token at a time until a stop."""
        try:
            if cancel.is_set():
                return
            stops = set(params.stop_token_ids or self.default_stop_token_ids)
            budget = min(params.max_tokens, self.max_model_len - len(prompt_ids))
            with self._torch.inference_mode():
                seq = self._prefill(prompt_ids, params)
                while len(seq.produced) < budget and not cancel.is_set():
                    token = self._sample(seq)
                    emit(token)
                    if token in stops or len(seq.produced) >= budget or cancel.is_set():
                        return
                    self._decode_step(seq, token)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            emit(exc)
        finally:
            emit(_DONE)

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self._model.config)
        except TypeError:  # older transformers: no per-layer sliding caches
            return DynamicCache()

    def _forward(self, ids: list[int], cache: Any) -> Any:
        torch = self._torch
        tensor = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self._model(input_ids=tensor, use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache})
        return out.logits[0, -1].float()

    def _prefill(self, prompt_ids: list[int], params: SamplingParams) -> _Sequence:
        """Run the prompt through the model in chunks; return the state ready to sample the first token."""
        cache = self._new_cache()
        logits = None
        for start in range(0, len(prompt_ids), PREFILL_CHUNK):
            logits = self._forward(prompt_ids[start : start + PREFILL_CHUNK], cache)
        from gptoss_cli.serve.engines.transformers.sampling import RowSampler

        return _Sequence(cache, logits, RowSampler(params, self.device), length=len(prompt_ids))

    def _decode_step(self, seq: _Sequence, token: int) -> None:
        """Feed one sampled token; afterwards ``seq.logits`` predicts the next one."""
        step = self._step
        seq.logits = self._forward([token], seq.cache) if step is None else step.one(token, seq.length, seq.cache)
        seq.length += 1

    def _sample(self, seq: _Sequence) -> int:
        """Pick the next token from ``seq.logits`` (the one sampling implementation) and record it; logits holding
        a NaN or +inf (a float16 overflow) fail the request instead of sampling garbage."""
        from gptoss_cli.serve.engines.transformers.numerics import check_finite

        check_finite(seq.logits)
        token = seq.sampler.pick(seq.logits)
        seq.produced.append(token)
        return token


def is_native(model: Any) -> bool:
    """Whether transformers really loaded its native MXFP4 experts (it dequantises silently when it cannot)."""
    return any(type(m).__name__ == "Mxfp4GptOssExperts" for m in model.modules())


__all__ = ["DEVICES", "DTYPES", "HFTokenizer", "TransformersEngine", "check_weights", "is_native",
           "resolve_device", "resolve_dtype"]
