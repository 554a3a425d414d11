"""A stand-in HTTP transport for the 志愿汇 adapter: records the requests it is given (method,
URL, headers, body) and answers with recorded responses, or raises what it is given. The
adapter's real urllib code runs; the network never does."""
from __future__ import annotations

import io
import json
from typing import Any


class RecordedResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int = 200):
        super().__init__(body)
        self.status = status

    def __enter__(self) -> "RecordedResponse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StubTransport:
    """``urllib.request.urlopen``'s shape: ``transport(request, timeout=...)``."""

    def __init__(self, *answers: Any):
        self.answers = list(answers)
        self.requests: list[Any] = []
        self.timeouts: list[float | None] = []

    def __call__(self, request: Any, timeout: float | None = None) -> RecordedResponse:
        self.requests.append(request)
        self.timeouts.append(timeout)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, RecordedResponse):
            return answer
        return RecordedResponse(answer if isinstance(answer, bytes) else json.dumps(answer).encode())
