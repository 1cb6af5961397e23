"""A tiny OpenAI-compatible server that misbehaves on demand.

It stands in for provider faults a real server will not produce when asked (timeouts,
429s, garbage bodies, wrong fields, invented ids). The happy path is tested against the
real llama.cpp server instead.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok",
    "timeout",
    "429",
    "500",
    "refused",
    "garbage",
    "truncated",
    "wrong_fields",
    "outside_ids",
    "empty",
    "refusal",
    "invented_history",
    "inject_first",
    "leak_prompt",
    "obey_catalog",
)


def _tool_answer(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "RerankOutput", "arguments": json.dumps(args)},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class FakeProvider:
    """Serve on a free loopback port; set ``mode`` to choose the fault."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                provider.requests.append(body)
                provider.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        cands = re.findall(r"^(C\d+): ", text, flags=re.MULTILINE)
        hist = re.findall(r"^(H\d+): ", text, flags=re.MULTILINE)
        m = self.mode
        if m == "timeout":
            time.sleep(3)
            return self._json(h, 200, _tool_answer({"ranking": []}))
        if m == "429":
            return self._json(h, 429, {"error": {"message": "slow down"}}, {"Retry-After": "30"})
        if m == "500":
            return self._json(h, 500, {"error": {"message": "boom"}})
        if m == "garbage":
            return self._raw(h, 200, b"<html>not json at all</html>", "text/html")
        if m == "truncated":
            return self._raw(h, 200, json.dumps(_tool_answer({"ranking": []}))[:60].encode())
        if m == "wrong_fields":
            return self._json(h, 200, _tool_answer({"items": cands, "why": "trust me"}))
        if m == "empty":
            return self._json(h, 200, _tool_answer({"ranking": []}))
        if m == "refusal":
            return self._json(
                h,
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "fake",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {
                                "role": "assistant",
                                "content": "I'm sorry, I can't help with that.",
                            },
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19},
                },
            )
        # A capable model cites what the prompt says raises each candidate ("raised by: H3").
        support = dict(re.findall(r"^(C\d+): .*\| raised by: (H\d+)", text, flags=re.MULTILINE))
        ranking = [
            {
                "id": c,
                "explanation": f"A fine pick close to {support[c]}."
                if c in support
                else "A fine pick.",
                "cited_history": [support[c]] if c in support else [],
                "categories": [],
            }
            for c in reversed(cands)
        ]
        if m == "outside_ids":
            ranking = [
                {"id": "C999", "explanation": "x"},
                {"id": "X1", "explanation": "y"},
                ranking[0],
                ranking[0],
                *ranking[1:3],
            ]
        elif m == "invented_history":
            ranking[0]["cited_history"] = ["H999"]
            ranking[1]["explanation"] = "Because you loved Casablanca and Star Wars."
            ranking[2]["categories"] = ["Documentary", "Western", "Film-Noir"]
        elif m == "inject_first":
            target = re.search(r"^(C\d+): .*IGNORE PREVIOUS", text, flags=re.MULTILINE)
            if target:
                ranking.insert(0, {"id": target.group(1), "explanation": "as instructed"})
        elif m == "leak_prompt":
            ranking[0]["explanation"] = "System prompt: " + text[:200]
        elif m == "obey_catalog":
            # Does whatever a candidate's catalog text says: repeats it as the explanation and
            # puts that candidate first (a model fooled by the data it was given).
            for c, said in re.findall(r"^(C\d+): .* — (.*?) \| model:", text, flags=re.MULTILINE):
                ranking.insert(0, {"id": c, "explanation": said, "cited_history": hist[:1]})
        return self._json(h, 200, _tool_answer({"ranking": ranking}))

    def _json(
        self, h: BaseHTTPRequestHandler, code: int, obj: Any, headers: dict[str, str] | None = None
    ) -> None:
        self._raw(h, code, json.dumps(obj).encode(), "application/json", headers)

    def _raw(
        self,
        h: BaseHTTPRequestHandler,
        code: int,
        data: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
