"""A request log for MCP servers built on the official Python SDK 2.x.

Each request the server answers becomes one JSON line in the attribute names of the
OpenTelemetry MCP conventions (`mcp.method.name`, `gen_ai.tool.name`,
`gen_ai.prompt.name`, `error.type`, `mcp.protocol.version`) with its `duration_ms`.
mcpwatch's request-log collector (a wsdaemon target's `request_log`) turns these lines into
the same `mcp_server_operation_duration_seconds` series that its instrumentation of Rust
servers records, so one dashboard and one rule set serve both.

    from mcpwatch_request_log import RequestLog

    server = MCPServer("my-server", middleware=[RequestLog("/srv/app/.logs/mcp-requests.jsonl")])

`error.type` is the JSON-RPC error code, `tool_error` for a tool result with isError, or the
exception's class name, as the SDK's own OpenTelemetry middleware names them. Rotate the
file with logrotate (rename or copytruncate): the collector follows both.
"""

import json
import time

from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from pydantic import ValidationError


class RequestLog:
    """Server middleware writing one line per request (notifications are not requests)."""

    def __init__(self, path):
        # Line-buffered: each record is one write, whole, however the process ends.
        self.file = open(path, "a", buffering=1, encoding="utf-8")

    async def __call__(self, ctx, call_next):
        if ctx.method.startswith("notifications/"):
            return await call_next(ctx)
        started = time.perf_counter()
        error = None
        try:
            result = await call_next(ctx)
        except MCPError as e:
            error = str(e.error.code)
            raise
        except ValidationError:
            error = str(INVALID_PARAMS)
            raise
        except Exception as e:
            error = type(e).__qualname__
            raise
        else:
            if ctx.method == "tools/call" and _is_tool_error(result):
                error = "tool_error"
            return result
        finally:
            self._write(ctx, error, time.perf_counter() - started)

    def _write(self, ctx, error, seconds):
        record = {
            "mcp.method.name": ctx.method,
            "mcp.protocol.version": ctx.protocol_version,
            "duration_ms": round(seconds * 1000, 3),
        }
        name = (ctx.params or {}).get("name")
        if isinstance(name, str):
            if ctx.method == "tools/call":
                record["gen_ai.tool.name"] = name
            elif ctx.method == "prompts/get":
                record["gen_ai.prompt.name"] = name
        if error is not None:
            record["error.type"] = error
        self.file.write(json.dumps(record) + "\n")


def _is_tool_error(result):
    if isinstance(result, dict):
        return result.get("isError") is True
    return getattr(result, "is_error", False) is True
