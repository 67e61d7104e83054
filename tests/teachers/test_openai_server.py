"""The HTTP teacher against a real local server (aiohttp on loopback) that speaks the chat-completions route.

The server replies with scripted text and can fail on purpose (5xx, slowness, 4xx), which is how retries,
timeouts and rejections are exercised for real.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from pipeline.stream import READ, STOP
from teachers import build_teacher
from teachers.base import TeacherError, TeacherUnavailable
from teachers.openai_server import OpenAIServerConfig, OpenAIServerTeacher
from tests.teachers.conftest import document_of_chunks

CHUNKS = ["Lyon is on the Rhone. ", "Paris is the capital of France. ", "Nice has a beach. "]
ROUND = "Target: name the capital of France\nClues: {clues}\nReason: chunk {n} read\n"


class ChatServer:
    """A chat-completions server on 127.0.0.1; `faults` are consumed one per request before normal replies."""

    def __init__(self, faults: list[tuple[str, float]] | None = None, drop_stop_strings: bool = False):
        self.faults = list(faults or [])
        self.drop_stop_strings = drop_stop_strings
        self.requests: list[dict] = []

    def reply(self, body: dict) -> tuple[str, str | None]:
        """Like a reader that finds Paris in chunk 2: READ, then STOP, then the answer."""
        last = body["messages"][-1]
        if last["role"] == "assistant":
            return " Paris", None
        if "Paris is the capital" in last["content"]:
            return ROUND.format(clues="Paris is the capital.", n=2) + STOP, STOP
        return ROUND.format(clues="None yet.", n=1) + READ, READ

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.faults:
            kind, value = self.faults.pop(0)
            if kind == "status":
                return web.json_response({"error": {"message": f"scripted {int(value)}"}}, status=int(value))
            if kind == "sleep":
                await asyncio.sleep(value)
        text, stop = self.reply(body)
        if self.drop_stop_strings and stop:
            text = text[: -len(stop)]
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "stop_reason": stop}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                      "prompt_tokens_details": {"cached_tokens": 64}},
        })

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}/v1"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def teacher_for(url: str, **settings) -> OpenAIServerTeacher:
    return build_teacher({"backend": "openai", "base_url": url, "model": "tiny", "backoff_s": 0.05, **settings})


def read_through(server: ChatServer, doc_id: str = "doc-http", **settings):
    doc, plan = document_of_chunks(doc_id, CHUNKS)

    async def go():
        async with server as url:
            teacher = teacher_for(url, **settings)
            start = time.monotonic()
            try:
                traj = await teacher.read(doc, plan, max_rounds=10)
            finally:
                await teacher.close()
            teacher.read_seconds = time.monotonic() - start  # before the server waits out its slow handlers
            return teacher, traj

    return asyncio.run(go())


def test_reads_a_document_over_http():
    server = ChatServer()
    teacher, traj = read_through(server, structured_output=True, sampling={"temperature": 0.0, "seed": 7})

    assert [r.action for r in traj.rounds] == ["READ", "STOP"] and traj.answer == "Paris" and traj.answer_passed
    assert traj.rounds[0].prompt_tokens == 100 and traj.rounds[1].prompt_tokens == 200  # round + answer
    assert traj.metadata["teacher_usage"]["cached_tokens"] == [64, 128]
    assert traj.teacher["name"] == "openai" and traj.teacher["model"] == "tiny"
    assert traj.teacher["sampling"] == {"temperature": 0.0, "seed": 7, "structured_output": True}

    first, answer = server.requests[0], server.requests[-1]
    assert first["stop"] == [READ, STOP] and first["temperature"] == 0.0 and first["seed"] == 7
    assert first["include_stop_str_in_output"] and not first["skip_special_tokens"]
    assert first["add_generation_prompt"] and not first["continue_final_message"]
    assert first["structured_outputs"]["regex"].startswith("Target: ")
    # The answer continues the STOP message: vLLM's continue_final_message, no new assistant turn.
    assert answer["continue_final_message"] and not answer["add_generation_prompt"]
    assert answer["messages"][-1]["content"].endswith(STOP) and answer["stop"] == ["<end>"]


def test_a_server_that_drops_stop_strings_still_parses():
    _, traj = read_through(ChatServer(drop_stop_strings=True), vllm_extensions=False)
    assert [r.action for r in traj.rounds] == ["READ", "STOP"] and traj.answer == "Paris"


def test_transient_failures_are_retried_with_backoff():
    server = ChatServer(faults=[("status", 503), ("status", 429)])
    teacher, traj = read_through(server, attempts=3)
    assert traj.answer == "Paris"
    assert teacher.retries == 2 and len(server.requests) == 3 + 2
    assert teacher.read_seconds >= 0.05 + 0.1  # waited 0.05 s, then twice that


def test_a_slow_reply_times_out_and_is_asked_again():
    server = ChatServer(faults=[("sleep", 1.0)])
    teacher, traj = read_through(server, timeout_s=0.3)
    assert traj.answer == "Paris" and teacher.retries == 1
    assert teacher.read_seconds < 1.0  # did not wait for the slow reply


def test_a_server_that_stays_down_stops_the_job_instead_of_rejecting_documents():
    server = ChatServer(faults=[("status", 503)] * 3)
    with pytest.raises(TeacherUnavailable, match="failed 3 time"):
        read_through(server, attempts=3)
    assert len(server.requests) == 3


def test_an_unreachable_server_is_unavailable():
    doc, plan = document_of_chunks("doc-nobody", CHUNKS)

    async def go():
        async with ChatServer() as url:
            pass  # the port is closed again: nothing listens there
        teacher = teacher_for(url, attempts=2, timeout_s=2.0)
        try:
            await teacher.read(doc, plan, max_rounds=10)
        finally:
            await teacher.close()

    with pytest.raises(TeacherUnavailable, match="APIConnectionError"):
        asyncio.run(go())


def test_a_request_the_server_refuses_rejects_only_its_document():
    server = ChatServer(faults=[("status", 400)])
    with pytest.raises(TeacherError, match=r"doc-refused'?, round 0: the openai backend rejected the request: HTTP 400"):
        read_through(server, doc_id="doc-refused")
    assert len(server.requests) == 1  # a bad request is not retried


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['base_ur'\]"):
        build_teacher({"backend": "openai", "base_ur": "http://x", "model": "m"})
    with pytest.raises(ValueError, match=r"sampling keys \['max_tokens'\]"):
        OpenAIServerTeacher(OpenAIServerConfig(base_url="http://x", model="m", sampling={"max_tokens": 5}))
    with pytest.raises(ValueError, match=r"setting\(s\) \['model'\] are required"):
        build_teacher({"backend": "openai", "base_url": "http://x"})
    assert json.dumps(teacher_for("http://x").identity())  # identity is plain JSON for the record
