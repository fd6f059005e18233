"""An MCP-speaking agent, written with the official Python MCP SDK, that
drives aruntime's MCP tools. `crates/cli/tests/mcp.rs` runs it.

    agent.py http  URL TOKEN            streamable HTTP to URL (…/mcp)
    agent.py stdio BIN URL TOKEN        spawns `BIN mcp` over stdio
    agent.py abandon BIN URL TOKEN HOW  stdio; leases a task (checking that
                                        the sidecar keeps its 2 s lease alive
                                        past another worker's 4 s wait),
                                        checkpoints, then HOW = kill (SIGKILL
                                        the sidecar) or exit (the agent dies)

It checks what only the client can see (the tool list and its schemas, tool
errors) and prints one JSON line on stdout for the Rust test to check the
server's side. Any failed check exits non-zero with the reason on stderr.
"""

import asyncio
import contextlib
import json
import os
import signal
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

try:  # the HTTP client the SDK itself uses (httpx2 in mcp 2.x, httpx before)
    import httpx2 as httpx
except ImportError:
    import httpx

TOOLS = {
    "next_task",
    "get_context",
    "checkpoint",
    "complete_task",
    "fail_task",
    "block_task",
    "add_task",
    "list_tasks",
    "record_decision",
    "heartbeat",
}


def fail(msg):
    print(f"agent.py: {msg}", file=sys.stderr, flush=True)
    # Not sys.exit: inside the SDK's task groups that becomes an exception
    # group whose traceback buries the message.
    os._exit(1)


def text(result, i=0):
    return result.content[i].text


def is_error(result):
    # mcp 2.x names fields in snake_case, 1.x in camelCase.
    return getattr(result, "is_error", None) or getattr(result, "isError", False)


def input_schema(tool):
    return getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None) or {}


async def call(session, name, args):
    """A tool call that must succeed; returns its first block as JSON when
    it is JSON, else as text."""
    r = await session.call_tool(name, args)
    if is_error(r):
        fail(f"{name}({args}) failed: {text(r)}")
    try:
        return json.loads(text(r))
    except json.JSONDecodeError:
        return text(r)


async def call_err(session, name, args):
    """A tool call that must fail; returns its error text."""
    r = await session.call_tool(name, args)
    if not is_error(r):
        fail(f"{name}({args}) should have failed, got: {text(r)}")
    return text(r)


async def check_tools(session):
    listed = (await session.list_tools()).tools
    by_name = {t.name: t for t in listed}
    missing = TOOLS - by_name.keys()
    if missing:
        fail(f"tools missing: {sorted(missing)}; listed: {sorted(by_name)}")
    for name in TOOLS:
        schema = input_schema(by_name[name])
        if schema.get("type") != "object" or "properties" not in schema:
            fail(f"{name} has no object input schema: {schema}")
        if not by_name[name].description:
            fail(f"{name} has no description")
    checkpoint = input_schema(by_name["checkpoint"])
    if "summary" not in checkpoint.get("required", []):
        fail(f"checkpoint must require summary: {checkpoint}")
    return sorted(by_name)


async def work(session, stateless, title):
    """add_task, next_task, checkpoint, complete_task and the error paths."""
    tools = await check_tools(session)

    added = await call(session, "add_task", {"title": title, "acceptance": ["it works"]})
    task_id = added["task"]["id"]

    got = await session.call_tool("next_task", {"wait_ms": 10000, "max_bytes": 4000})
    if is_error(got):
        fail(f"next_task failed: {text(got)}")
    head = json.loads(text(got, 0))
    if head["task_id"] != task_id or head["attempt"] != 1:
        fail(f"next_task leased {head}, expected {task_id} attempt 1")
    if title not in text(got, 1):
        fail(f"the context does not mention the title: {text(got, 1)}")
    if stateless and not head.get("lease"):
        fail(f"next_task over HTTP must return the lease: {head}")
    if not stateless and "lease" in head:
        fail(f"next_task over stdio keeps the lease to itself: {head}")
    lease = {"task_id": task_id, "lease": head["lease"]} if stateless else {}

    if not stateless:
        again = json.loads(text(await session.call_tool("next_task", {"wait_ms": 0})))
        if again["task_id"] != task_id or "already holds" not in again["note"]:
            fail(f"a second next_task must return the held lease: {again}")

    # Errors carry the API's code: a lease that is not the task's.
    wrong = await call_err(
        session, "checkpoint", {"summary": "x", "task_id": task_id, "lease": "art_not_a_lease"}
    )
    if "lease_lost" not in wrong:
        fail(f"a wrong lease must give lease_lost: {wrong}")
    if stateless:
        missing = await call_err(session, "checkpoint", {"summary": "x"})
        if "invalid_input" not in missing or "lease" not in missing:
            fail(f"over HTTP, a missing lease must be named: {missing}")

    summary = f"{title}: half done"
    cp = await call(
        session, "checkpoint", {"summary": summary, "state": {"step": 1}, **lease}
    )
    hb = await call(session, "heartbeat", lease)
    if hb["task_id"] != task_id or not hb["expires_at"]:
        fail(f"heartbeat: {hb}")
    ctx = await call(session, "get_context", {**lease, "max_bytes": 8000})
    if summary not in ctx:
        fail(f"the context lacks the checkpoint: {ctx}")
    decision = await call(
        session,
        "record_decision",
        {"task_id": task_id, "title": "use the MCP tools", "rationale": "test"},
    )
    listed = await call(session, "list_tasks", {"status": "running"})
    if task_id not in [t["id"] for t in listed["tasks"]]:
        fail(f"list_tasks(running) lacks {task_id}: {listed}")

    done = await call(session, "complete_task", {"result": {"answer": 42}, **lease})
    if done["task"]["status"] != "done":
        fail(f"complete_task: {done}")
    if not stateless:
        gone = await call_err(session, "checkpoint", {"summary": "after the end"})
        if "no_lease" not in gone:
            fail(f"after complete_task the sidecar must hold no lease: {gone}")
    return {
        "tools": tools,
        "task_id": task_id,
        "summary": summary,
        "seq": cp["seq"],
        "decision": decision["id"],
    }


@contextlib.asynccontextmanager
async def http_session(url, token):
    headers = {"Authorization": f"Bearer {token}"}
    # A read timeout above next_task's longest wait.
    timeout = httpx.Timeout(30.0, read=120.0)
    async with httpx.AsyncClient(headers=headers, timeout=timeout) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def over_http(url, token):
    async with http_session(url, token) as session:
        return await work(session, True, "mcp over http")


async def http_next_task(url, token, wait_ms):
    """next_task as another worker, over HTTP."""
    async with http_session(url, token) as session:
        return await call(session, "next_task", {"wait_ms": wait_ms, "worker": "rival"})


def sidecar(bin_path, url, token):
    return StdioServerParameters(
        command=bin_path,
        args=["mcp", "--worker", "py-agent"],
        # The SDK passes the child only a few variables (PATH, HOME, ...).
        env={"ARUNTIME_URL": url, "ARUNTIME_TOKEN": token},
    )


async def over_stdio(bin_path, url, token):
    async with stdio_client(sidecar(bin_path, url, token)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session, False, "mcp over stdio")


def children():
    """Pids of this process's children (Linux): the sidecar."""
    pids = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids


async def abandon(bin_path, url, token, how):
    async with stdio_client(sidecar(bin_path, url, token)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            title = f"abandoned by {how}"
            added = await call(
                session, "add_task", {"title": title, "lease_ttl_s": 2, "max_attempts": 3}
            )
            task_id = added["task"]["id"]
            got = await call(session, "next_task", {"wait_ms": 10000})
            if got["task_id"] != task_id:
                fail(f"next_task leased {got}, expected {task_id}")
            # The lease lasts 2 s, yet another worker waiting twice that for
            # work gets nothing: the sidecar renews it in the background
            # (every third of the TTL, so a slow machine has slack).
            other = await http_next_task(url + "/mcp", token, 4000)
            if other["task_id"] is not None:
                fail(f"the held lease expired under the sidecar: {other} was re-leased")
            summary = f"{title}: step 1 of 2"
            await call(session, "checkpoint", {"summary": summary, "state": {"step": 1}})
            pids = children()
            if len(pids) != 1:
                fail(f"expected one child (the sidecar), found {pids}")
            report = {"task_id": task_id, "summary": summary, "pid": pids[0]}
            if how == "kill":
                os.kill(pids[0], signal.SIGKILL)
            print(json.dumps(report), flush=True)
            # The agent dies: no clean shutdown, no goodbye to the sidecar.
            os._exit(0)


def main():
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "http":
        report = asyncio.run(over_http(*rest))
    elif mode == "stdio":
        report = asyncio.run(over_stdio(*rest))
    elif mode == "abandon":
        asyncio.run(abandon(*rest))
        fail("abandon returned")
    else:
        fail(f"unknown mode {mode}")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
