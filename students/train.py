"""Distil a Smooth Reading corpus into a recurrent student with DeepSpeed: model, optimizer, step, loop, export.

`run_training(spec)` is what every worker runs (in-process, or one per GPU under Ray Train): it builds the student,
wraps it in a DeepSpeed engine, resumes from the run's latest checkpoint if there is one, trains to `max_steps`
writing metrics and checkpoints, and exports a Hugging Face folder at the end. Data preparation (tokenizer, tokenized
corpus) happens once, before the workers start (jobs/train.py). Apart, as torchtitan keeps them: the config
(students/train_config.py), the run folder (students/run_dir.py), checkpoints (students/checkpoint.py) and the
data (students/data.py).

The loss of an optimizer step is the mean over every loss token of every row of the step (all micro-batches, all
ranks), as if the step were one large batch: each micro-batch contributes its summed token losses divided by the
step's loss-token count, and DeepSpeed's averaging over ranks is undone by the same count.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_with_min_lr_schedule_with_warmup

from students.checkpoint import (ExportInfo, TrainState, consolidated_state_dict, export_hf, load_checkpoint,
                                 save_checkpoint)
from students.convert import convert_to_gla, convert_to_sliding_window
from students.data import PackedBatches, TokenizedCorpus, fitted_seq_len
from students.gla import GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM
from students.run_dir import RunSpec
from students.swa import sliding_window_config, use_sliding_window_kernel
from students.tokenizer import resize_for_stream_tokens
from students.train_config import OptimConfig, StudentConfig, TrainConfig, deepspeed_config

log = logging.getLogger(__name__)


def lr_schedule(optimizer, optim: OptimConfig, max_steps: int):
    """Linear warm-up from 0 to the peak over `warmup_steps`, then a cosine down to `lr * min_lr_ratio` at `max_steps`."""
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=max_steps, min_lr_rate=optim.min_lr_ratio,
    )


def build_optimizer(model, optim: OptimConfig):
    """AdamW with no weight decay on norms, biases and embeddings-free 1-D parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
    )


def build_student(student: StudentConfig, tokenizer):
    """A fresh student sized by the config, or one converted from a self-attention checkpoint.

    `tokenizer` must already hold the stream tokens (jobs/train.py prepares it); a converted student's embeddings are
    grown to its length. A sliding-window student is a stock Mistral / Qwen2; with CUDA its attention runs through
    our Triton kernel (the "smooth_reading_swa" AttentionInterface entry), on CPU through SDPA.
    """
    torch.manual_seed(student.seed)
    if student.init != "scratch":
        if student.kind == "swa":
            model = convert_to_sliding_window(student.init, student.window)
        else:
            model = convert_to_gla(student.init)
        resize_for_stream_tokens(model, tokenizer)
        model = model.float()
    else:
        shared = dict(
            vocab_size=len(tokenizer), hidden_size=student.hidden_size, intermediate_size=student.intermediate_size,
            num_hidden_layers=student.num_hidden_layers, num_attention_heads=student.num_attention_heads,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        if student.kind == "swa":
            config = sliding_window_config(student.window, num_key_value_heads=student.num_key_value_heads, **shared)
            model = AutoModelForCausalLM.from_config(config)
        else:
            model = GatedLinearAttentionForCausalLM(GatedLinearAttentionConfig(**shared))
    if student.kind == "swa" and torch.cuda.is_available():
        use_sliding_window_kernel(model)
    return model.train()


def packed_row_inputs(model, inputs: dict) -> dict:
    """A packed row as the model takes it: our GLA reads `cu_seqlens`; a stock model reads position_ids that restart
    at 0 (SDPA's mask is built from them) and flash-attention's `cu_seq_lens_*` (read by our kernel), with no cache."""
    if "cu_seqlens" in inspect.signature(model.forward).parameters:
        return inputs
    inputs = dict(inputs)
    cu_seqlens = inputs.pop("cu_seqlens").flatten().to(torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return {**inputs, "use_cache": False, "cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens,
            "max_length_q": longest, "max_length_k": longest}


STOPPED_BY_SIGNAL = 143  # 128 + SIGTERM: a checkpoint was written; rerun to resume


def setup_distributed() -> None:
    """Join the process group a launcher set up (Ray Train, torchrun), or start a world of one."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed  # deepspeed is imported only once DS_ACCELERATOR is set: it picks its accelerator on import

    if not torch.distributed.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # A world of one on this machine. The port is always fresh: one inherited from a parent process that
        # trained in-process is still bound there.
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_training(spec: RunSpec | dict) -> int:
    """Train (or resume) the run in `spec.run_dir` to `max_steps`; returns 0, or STOPPED_BY_SIGNAL after SIGTERM."""
    if isinstance(spec, dict):
        spec = RunSpec(**spec)
    setup_distributed()
    import deepspeed
    import deepspeed.comm as dist

    run_dir = spec.folder
    config = TrainConfig.from_values(spec.config)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    tokenizer = AutoTokenizer.from_pretrained(run_dir.tokenizer)
    model = build_student(config.student, tokenizer)
    if config.engine.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = build_optimizer(model, config.optim)
    schedule = lr_schedule(optimizer, config.optim, config.max_steps)
    ds_config = deepspeed_config(config, world_size)
    if rank == 0:
        run_dir.deepspeed_json.write_text(json.dumps(ds_config, indent=2) + "\n")
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule, config=ds_config)

    corpus = TokenizedCorpus(run_dir.tokenized)
    config.data.seq_len = config.data.seq_len or fitted_seq_len(corpus.lengths)
    batches = PackedBatches(
        corpus, config.data.seq_len, config.data.seed, config.engine.gradient_accumulation, rank, world_size,
    )
    state = load_checkpoint(engine, run_dir.checkpoints)
    resumed = state is not None
    if state is None:
        state = TrainState()
    metrics = MetricsLog(run_dir.metrics, keep_through_step=state.step, enabled=rank == 0)
    if rank == 0:
        log.info(
            "%s at step %d of %d (epoch %d, step %d of %d in the epoch); %d ranks, %d streams, %d left out as too long",
            "resuming" if resumed else "starting", state.step, config.max_steps, state.position.epoch,
            state.position.step, batches.steps_in_epoch(state.position.epoch), world_size, len(batches.corpus),
            batches.dropped_too_long,
        )

    stop = _SigtermFlag()
    progress = ProgressBar(rank, state.step, config.max_steps)
    try:
        while state.step < config.max_steps:
            start = time.perf_counter()
            lr = engine.get_lr()[0]  # the rate this step uses; the scheduler advances inside the step
            micro_batches = batches.micro_batches(state.position)
            loss, tokens = train_step(engine, micro_batches, device)
            stop_requested = stop.raised
            totals = torch.tensor([loss, float(tokens), float(stop_requested)], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            step_time = time.perf_counter() - start
            state.step += 1
            state.position = batches.next_position(state.position)
            state.tokens_seen += int(totals[1].item())
            record = {
                "step": state.step,
                "loss": totals[0].item() / world_size,
                "lr": lr,
                "grad_norm": _float_or_none(engine.get_global_grad_norm()),
                "tokens": int(totals[1].item()),
                "tokens_per_s": totals[1].item() / step_time,
                "step_time_s": step_time,
                "epoch": state.position.epoch,
                "tokens_seen": state.tokens_seen,
            }
            metrics.write(record)
            progress.update(record)
            stopping = totals[2].item() > 0
            if state.step % config.checkpoint.every == 0 or state.step == config.max_steps or stopping:
                save_checkpoint(engine, run_dir.checkpoints, state, config.checkpoint.keep_last)
            if stopping:
                if rank == 0:
                    log.warning("stopped by SIGTERM at step %d; checkpoint saved, rerun the same command to resume", state.step)
                return STOPPED_BY_SIGNAL
    finally:
        progress.close()
        metrics.close()
        stop.restore()

    export(engine, tokenizer, config, spec, state, rank)
    return 0


def train_step(engine, micro_batches, device) -> tuple[float, int]:
    """One optimizer step over this rank's micro-batches; returns (this rank's share of the step loss, its tokens)."""
    import deepspeed.comm as dist

    loss_tokens = torch.tensor(
        [float(sum(int((row.labels != -100).sum()) for row in micro_batches))], dtype=torch.float64, device=device
    )
    dist.all_reduce(loss_tokens)
    # DeepSpeed averages gradients over ranks; scaling by world_size / total makes the result sum / total.
    normaliser = max(loss_tokens.item(), 1.0) / dist.get_world_size()
    total_loss, tokens = 0.0, 0
    for row in micro_batches:
        inputs = packed_row_inputs(engine.module, row.model_inputs(device))
        labels = inputs.pop("labels")
        logits = engine(**inputs).logits
        summed = F.cross_entropy(
            logits[0, :-1].float(), labels[0, 1:], ignore_index=-100, reduction="sum"
        )
        loss = summed / normaliser
        engine.backward(loss, scale_wrt_gas=False)
        engine.step()
        total_loss += loss.item()
        tokens += row.num_tokens
    return total_loss, tokens


def export(engine, tokenizer, config: TrainConfig, spec: RunSpec, state, rank: int) -> None:
    state_dict = consolidated_state_dict(engine)  # every rank takes part in the gather
    if rank != 0:
        return
    run_dir = spec.folder
    losses = [(r["step"], r["loss"]) for r in read_metrics(run_dir.metrics)]
    info = ExportInfo(
        student=config.student.kind,
        base_model=spec.base_model,
        corpus=spec.corpus_dir,
        corpus_manifest_hash=spec.corpus_manifest_hash,
        steps=state.step,
        tokens_seen=state.tokens_seen,
        seq_len=config.data.seq_len,
        losses=losses,
        config=config.to_dict(),
    )
    out = export_hf(engine.module, state_dict, tokenizer, run_dir.export, info)
    log.info("exported the student to %s", out)


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """RUN_DIR/metrics.jsonl, one record per optimizer step (and TensorBoard when it is installed).

    On resume, records past the checkpoint's step (written by the run that was killed) are dropped, so the file
    always describes the one training trajectory that the checkpoints continue.
    """

    def __init__(self, path: Path, keep_through_step: int, enabled: bool):
        self.enabled = enabled
        self.file = None
        self.tensorboard = None
        if not enabled:
            return
        kept = [r for r in read_metrics(path) if r["step"] <= keep_through_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.file = open(path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(path.parent / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key in ("loss", "lr", "tokens_per_s", "grad_norm"):
                if record.get(key) is not None:
                    self.tensorboard.add_scalar(f"train/{key}", record[key], record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


class ProgressBar:
    def __init__(self, rank: int, initial: int, total: int):
        self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr, disable=rank != 0)

    def update(self, record: dict) -> None:
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}",
                             step_s=f"{record['step_time_s']:.2f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class _SigtermFlag:
    """Turns SIGTERM into a flag the loop checks after each step, so the run can checkpoint before it exits."""

    def __init__(self):
        self.raised = False
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (some launchers): SIGTERM keeps its default behaviour
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _float_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
