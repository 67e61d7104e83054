"""The training run's configuration: typed sections (pipeline.config) loaded from the run's YAML, and the DeepSpeed
JSON made from them.

    max_steps / num_workers
    student:    what is trained (kind, init: scratch or a checkpoint to convert, window, sizes, seed)
    data:       packed rows (seq_len, seed of the sample order)
    optim:      AdamW and its warm-up + cosine schedule
    engine:     DeepSpeed (ZeRO stage, precision, activation checkpointing, gradient accumulation)
    checkpoint: how often and how many to keep
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config import Config
from pipeline.precision import native_bf16

Precision = Literal["auto", "bf16", "fp32"]  # training precision (DeepSpeedConfig.precision)


class StudentConfig(Config):
    kind: Literal["swa", "gla"] = "swa"  # sliding-window attention | gated linear attention
    init: str = "scratch"  # "scratch", a Hugging Face Llama / Mistral / Qwen2 folder to convert, or a prepared name
    window: int = 256  # swa: tokens each query sees
    # The architecture below is used from scratch only; a converted checkpoint keeps its own.
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    vocab_size: int = 1024  # of the tokenizer trained on the corpus
    seed: int = 0  # weight initialisation


class DataConfig(Config):
    seq_len: int = 0  # tokens per packed row (the paper trains at 32k); 0: fit the corpus' longest stream
    seed: int = 0  # sample order: a pure function of (seed, epoch)


class OptimConfig(Config):
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    warmup_steps: int = 10  # the first optimizer step runs at lr 0 (transformers' warm-up), the peak is reached at this step
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    gradient_clipping: float = 1.0


class DeepSpeedConfig(Config):
    zero_stage: Literal[0, 1, 2, 3] = 1
    precision: Precision = "auto"  # auto: bf16 where the hardware computes it natively, else fp32
    activation_checkpointing: bool = False
    gradient_accumulation: int = 1  # micro-batches (packed rows) per rank per optimizer step


class CheckpointConfig(Config):
    every: int = 100  # optimizer steps between checkpoints (and one at the end and on SIGTERM)
    keep_last: int = 2


class TrainConfig(Config):
    max_steps: int = 100
    student: StudentConfig = Field(default_factory=StudentConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    engine: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    num_workers: int = 0  # 0: one per GPU of the cluster (one on a machine without GPUs)


def use_bf16(precision: str) -> bool:
    if precision == "auto":
        return native_bf16()
    return precision == "bf16"


def deepspeed_config(config: TrainConfig, world_size: int) -> dict:
    """The DeepSpeed JSON for this run. Optimizer and scheduler are passed to deepspeed.initialize as objects
    (torch AdamW, a warm-up + cosine LambdaLR), so the JSON holds no optimizer section; the run's config.yaml has
    their settings. Activation checkpointing is the model's own (gradient_checkpointing_enable), not DeepSpeed's."""
    engine = config.engine
    zero: dict = {"stage": engine.zero_stage}
    if engine.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": 1,  # one packed row
        "gradient_accumulation_steps": engine.gradient_accumulation,
        "train_batch_size": engine.gradient_accumulation * world_size,
        "gradient_clipping": config.optim.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": use_bf16(engine.precision)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # our own metrics log every step
        "wall_clock_breakdown": False,
    }
