"""Faults injected into the generate job's teacher actors from outside the product.

An engine cannot be made to crash on cue for real, so the tests make its actor exit. Ray runs `install` in every
worker process of a job whose runtime env names it as `worker_process_setup_hook`; it wraps `TeacherActor.read` in
that process only. The job gets that runtime env the way `ray job submit --runtime-env-json` gives it one:

    subprocess.run(generate_command, env=job_env(crash_after_documents=5))   # a job in its own process
    ray.init(runtime_env=runtime_env(delay_per_document_s=1.0))             # a job inside the test's process

Faults:
- crash_after_documents=N: an actor's first life exits (os._exit) when it starts document N + 1;
- crash_on_document=ID: every life of an actor exits when it starts that document;
- delay_per_document_s=S: every document waits S seconds first, so a test can interrupt a run part-way.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULTS_VARIABLE = "SMOOTH_READING_TEST_FAULTS"
KNOWN_FAULTS = ("crash_after_documents", "crash_on_document", "delay_per_document_s")


def runtime_env(**faults) -> dict:
    unknown = sorted(set(faults) - set(KNOWN_FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}: use {list(KNOWN_FAULTS)}")
    return {"worker_process_setup_hook": "tests.faults.install",
            "env_vars": {FAULTS_VARIABLE: json.dumps(faults), "PYTHONPATH": str(REPO)}}


def job_env(base: dict[str, str] | None = None, **faults) -> dict[str, str]:
    """Environment for a job process whose Ray workers get `faults` (the variable `ray job submit` sets)."""
    return {**(os.environ if base is None else base),
            "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": runtime_env(**faults)})}


def install() -> None:
    faults = json.loads(os.environ.get(FAULTS_VARIABLE) or "{}")
    if not faults:
        return
    import ray

    from jobs.teacher_pool import TeacherActor

    read = TeacherActor.read
    crash_after = faults.get("crash_after_documents", 0)
    poison = faults.get("crash_on_document")
    delay = faults.get("delay_per_document_s", 0.0)

    async def read_with_faults(self, doc, chunk_plan, max_rounds):
        self.documents_started = getattr(self, "documents_started", 0) + 1
        first_life = not ray.get_runtime_context().was_current_actor_reconstructed
        if doc.id == poison or (first_life and crash_after and self.documents_started > crash_after):
            os._exit(1)
        if delay:
            await asyncio.sleep(delay)
        return await read(self, doc, chunk_plan, max_rounds)

    TeacherActor.read = read_with_faults
