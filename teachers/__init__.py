"""Teachers: one interface (`Teacher`) with vLLM, OpenAI-server, transformers and rule backends.

    teacher = build_teacher({"backend": "vllm", "model": "path/to/hf-folder", "prompt_mode": "stream"})
    trajectories = await asyncio.gather(*(teacher.read(doc, plan, max_rounds=32) for doc, plan in work))

`read` raises `TeacherError` for a document the teacher cannot read (malformed output after its re-asks, a
prompt too long for the model, a rule document without evidence): record it as a reject and go on.
`TeacherUnavailable` means the backend itself is down: stop and resume later.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from teachers.base import Completion, LLMTeacher, LLMTeacherConfig, PromptTemplates, Teacher, TeacherError

BACKENDS: tuple[str, ...] = ("rules", "vllm", "openai", "transformers")

__all__ = ["BACKENDS", "Completion", "LLMTeacher", "LLMTeacherConfig", "PromptTemplates", "Teacher", "TeacherError",
           "build_teacher", "config_from_dict"]


def config_from_dict(cls: type, values: dict[str, Any], where: str = "teacher"):
    """Build a config dataclass from plain values, naming unknown keys and the keys that are allowed."""
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}. Fix: use only {sorted(allowed)}")
    required = sorted(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)
    missing = [name for name in required if name not in values]
    if missing:
        raise ValueError(f"{where}: setting(s) {missing} are required. Fix: add them to the teacher config")
    return cls(**values)


def build_teacher(config: dict[str, Any]) -> Teacher:
    """The teacher a job config names: {"backend": "rules" | "vllm" | "openai" | "transformers", ...settings}.

    Backends import their engine libraries only when chosen, so the rule teacher starts without torch or vLLM.
    """
    values = dict(config)
    backend = values.pop("backend", None)
    if backend == "rules":
        from teachers.rules import RuleTeacher

        if values:
            raise ValueError(f"teacher 'rules': takes no settings, got {sorted(values)}. Fix: remove them")
        return RuleTeacher()
    if backend == "vllm":
        from teachers.vllm_engine import VLLMTeacher, VLLMTeacherConfig

        return VLLMTeacher(config_from_dict(VLLMTeacherConfig, values, "teacher 'vllm'"))
    if backend == "openai":
        from teachers.openai_server import OpenAIServerConfig, OpenAIServerTeacher

        return OpenAIServerTeacher(config_from_dict(OpenAIServerConfig, values, "teacher 'openai'"))
    if backend == "transformers":
        from teachers.hf import TransformersTeacher, TransformersTeacherConfig

        return TransformersTeacher(config_from_dict(TransformersTeacherConfig, values, "teacher 'transformers'"))
    raise ValueError(f"teacher backend {backend!r} is unknown. Fix: set 'backend' to one of {list(BACKENDS)}")
