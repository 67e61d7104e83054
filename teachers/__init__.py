"""Teachers: one interface (`Teacher`) with vLLM, OpenAI-server, transformers and rule backends.

    teacher = build_teacher({"backend": "vllm", "model": "path/to/hf-folder", "prompt_mode": "stream"})
    trajectories = await asyncio.gather(*(teacher.read(doc, plan, max_rounds=32) for doc, plan in work))

`read` raises `TeacherError` for a document the teacher cannot read (malformed output after its re-asks, a
prompt too long for the model, a rule document without evidence): record it as a reject and go on.
`TeacherUnavailable` means the backend itself is down: stop and resume later.
"""

from __future__ import annotations

from typing import Any

from teachers.base import Completion, LLMTeacher, LLMTeacherConfig, Teacher, TeacherError
from teachers.templates import PromptTemplates

BACKENDS: tuple[str, ...] = ("rules", "vllm", "openai", "transformers")

__all__ = ["BACKENDS", "Completion", "LLMTeacher", "LLMTeacherConfig", "PromptTemplates", "Teacher", "TeacherError",
           "build_teacher", "engine_slots"]


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

        return VLLMTeacher(VLLMTeacherConfig.from_values(values, "teacher 'vllm'"))
    if backend == "openai":
        from teachers.openai_server import OpenAIServerConfig, OpenAIServerTeacher

        return OpenAIServerTeacher(OpenAIServerConfig.from_values(values, "teacher 'openai'"))
    if backend == "transformers":
        from teachers.hf import TransformersTeacher, TransformersTeacherConfig

        return TransformersTeacher(TransformersTeacherConfig.from_values(values, "teacher 'transformers'"))
    raise ValueError(f"teacher backend {backend!r} is unknown. Fix: set 'backend' to one of {list(BACKENDS)}")


def engine_slots(config: dict[str, Any]) -> int | None:
    """How many requests the teacher's engine decodes together (vLLM's max_num_seqs); None where the job cannot know."""
    if config.get("backend") == "vllm":
        from teachers.vllm_engine import VLLMTeacherConfig

        return int(config.get("max_num_seqs", VLLMTeacherConfig.model_fields["max_num_seqs"].default))
    return None
