"""Loaded by the schemathesis CLI in tests/e2e/test_openapi_contract.py (SCHEMATHESIS_HOOKS).

CPython 3.11 before 3.11.8 can raise ``SystemError: AST constructor recursion depth
mismatch`` from ``ast.parse`` when it runs deep in the stack (CPython issue 106905). Hypothesis
parses a lambda's source only to describe a filtered strategy in its repr; schemathesis asks
for that repr while generating data, so the interpreter bug surfaced as a random "Runtime
Error" of the run. A description is not needed for anything we check: when the parse hits
that bug, the lambda is described as unknown (what Hypothesis itself answers for a lambda
whose source it cannot read) and generation goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis.internal import lambda_sources

_describe: Callable[[Any], str] = lambda_sources._lambda_description


def _lambda_description(f: Any) -> str:
    try:
        return _describe(f)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _lambda_description  # type: ignore[assignment]
