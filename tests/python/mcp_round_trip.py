"""MCP round trip with the official Python `mcp` client (run by tests/mcp.rs).

Starts `mission-bus mcp` over stdio (its command line in MB_MCP_ARGS, a JSON
list), initializes, lists the tools and calls each: successes return the
stored event / packet / report as structured content, failures are tool
errors (is_error) carrying the CLI's message and exit code. Prints one JSON
line with what it saw; any failed expectation raises (exit 1).
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client

M = os.environ["MB_MISSION"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def main():
    args = json.loads(os.environ["MB_MCP_ARGS"])
    params = StdioServerParameters(command=args[0], args=args[1:], env=dict(os.environ))
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            seen["server"] = init.server_info.name
            tools = (await session.list_tools()).tools
            names = sorted(t.name for t in tools)
            seen["tools"] = names
            for t in tools:
                check(t.input_schema.get("type") == "object", f"{t.name}: schema type")
                check("mission" in t.input_schema["required"], f"{t.name}: mission required")
                check(t.description, f"{t.name}: no description")

            async def ok(name, arguments):
                r = await session.call_tool(name, arguments)
                check(not r.is_error, f"{name} {arguments}: {r.content}")
                check(r.structured_content is not None, f"{name}: no structured content")
                check(json.loads(r.content[0].text) == r.structured_content, f"{name}: text != structured")
                return r.structured_content

            async def fails(name, arguments, code, needle):
                r = await session.call_tool(name, arguments)
                check(r.is_error, f"{name} {arguments} should fail: {r.structured_content}")
                text = r.content[0].text
                check(text.startswith("error: "), f"{name}: {text}")
                check(needle in text, f"{name}: '{needle}' not in {text}")
                check(r.structured_content["exit_code"] == code, f"{name}: {r.structured_content}")
                return text

            if os.environ.get("MB_PARTICIPANT"):
                # With ada's own token: ada's calls work, anyone else's are refused.
                await participant_calls(ok, fails)
                seen["errors"] = 3
                print(json.dumps(seen))
                return

            msg = await ok("publish", {"mission": M, "as": "ada", "topic": "status", "payload": {"step": 1}})
            check(msg["event_type"] == "message" and msg["payload"] == {"step": 1}, f"publish: {msg}")
            cp = await ok("checkpoint", {"mission": M, "as": "ada", "summary": "lexer done",
                                         "state": {"next": "parser"}, "artifacts": ["src/lexer.rs"]})
            check(cp["event_type"] == "checkpoint", f"checkpoint: {cp}")
            ho = await ok("handoff", {"mission": M, "as": "ada", "to": "bob",
                                      "checkpoint_id": cp["checkpoint_id"], "note": "over to you"})
            check(ho["event_type"] == "handoff", f"handoff: {ho}")
            packet = await ok("resume", {"mission": M, "for": "bob"})
            check(packet["handoff_id"] == ho["handoff_id"], f"resume: {packet}")
            check(packet["checkpoint"]["state"] == {"next": "parser"}, f"resume: {packet}")
            by_id = await ok("resume", {"mission": M, "handoff_id": ho["handoff_id"]})
            check(by_id == packet, "resume by id differs")
            page = await ok("read", {"mission": M, "as": "rita", "from": 1, "limit": 2})
            check([e["sequence"] for e in page["events"]] == [1, 2] and page["next"] == 3, f"read: {page}")
            rest = await ok("read", {"mission": M, "as": "rita", "from": page["next"]})
            check(rest["events"][-1]["sequence"] == ho["sequence"], f"read rest: {rest}")
            report = await ok("verify", {"mission": M})
            check(report["intact"] is True and report["head_sequence"] == ho["sequence"], f"verify: {report}")

            # The handoff lifecycle: bob accepts, keeps the lease, completes.
            listed = await ok("handoffs", {"mission": M, "for": "bob"})
            check([(h["handoff_id"], h["status"]) for h in listed["handoffs"]] == [(ho["handoff_id"], "offered")],
                  f"handoffs: {listed}")
            acc = await ok("accept", {"mission": M, "as": "bob", "handoff_id": ho["handoff_id"], "lease_ms": 30000})
            check(acc["event_type"] == "handoff_accepted", f"accept: {acc}")
            hb = await ok("heartbeat", {"mission": M, "as": "bob", "handoff_id": ho["handoff_id"]})
            check(hb["event_type"] == "handoff_heartbeat", f"heartbeat: {hb}")
            listed = await ok("handoffs", {"mission": M})
            check(listed["handoffs"][0]["status"] == "accepted", f"handoffs: {listed}")
            latest = await ok("checkpoints", {"mission": M, "latest": True})
            check(latest["checkpoints"] == [cp], f"checkpoints latest: {latest}")
            mine = await ok("checkpoints", {"mission": M, "by": "ada", "limit": 10})
            check(mine["checkpoints"] == [cp], f"checkpoints by: {mine}")
            one = await ok("checkpoints", {"mission": M, "checkpoint_id": cp["checkpoint_id"]})
            check(one["checkpoints"] == [cp], f"checkpoints id: {one}")
            done = await ok("complete", {"mission": M, "as": "bob", "handoff_id": ho["handoff_id"], "note": "merged"})
            check(done["event_type"] == "handoff_completed", f"complete: {done}")
            # Declined, and released after accepting: the work returns to ada.
            ho2 = await ok("handoff", {"mission": M, "as": "ada", "to": "bob", "checkpoint_id": cp["checkpoint_id"]})
            dec = await ok("decline", {"mission": M, "as": "bob", "handoff_id": ho2["handoff_id"], "note": "busy"})
            check(dec["event_type"] == "handoff_declined", f"decline: {dec}")
            ho3 = await ok("handoff", {"mission": M, "as": "ada", "to": "bob", "checkpoint_id": cp["checkpoint_id"]})
            await ok("accept", {"mission": M, "as": "bob", "handoff_id": ho3["handoff_id"]})
            rel = await ok("release", {"mission": M, "as": "bob", "handoff_id": ho3["handoff_id"]})
            check(rel["event_type"] == "handoff_released", f"release: {rel}")
            listed = await ok("handoffs", {"mission": M, "for": "bob"})
            statuses = sorted(h["status"] for h in listed["handoffs"])
            check(statuses == ["completed", "declined", "released"], f"handoffs: {listed}")
            seen["head"] = rel["sequence"]

            # Filtered reads and a consumer position.
            last = await ok("read", {"mission": M, "as": "rita", "order": "desc", "limit": 1,
                                     "types": ["handoff_accepted", "handoff_released"]})
            check([e["sequence"] for e in last["events"]] == [rel["sequence"]], f"read desc: {last}")
            by_bob = await ok("read", {"mission": M, "as": "rita", "sender": "bob",
                                       "types": ["handoff_accepted"]})
            check(len(by_bob["events"]) == 2, f"read filtered: {by_bob}")
            pos = await ok("ack", {"mission": M, "as": "rita", "consumer": "c", "sequence": 5})
            check(pos["position"] == 5, f"ack: {pos}")
            after = await ok("read", {"mission": M, "as": "rita", "consumer": "c", "limit": 1})
            check([e["sequence"] for e in after["events"]] == [6] and after["next"] == 7, f"read consumer: {after}")

            # Clear tool errors, not protocol failures.
            await fails("publish", {"mission": M, "as": "rita", "topic": "t", "payload": 1}, 3, "permission denied")
            await fails("publish", {"mission": "m-none", "as": "ada", "topic": "t"}, 4, "m-none")
            await fails("publish", {"mission": M, "as": "ada", "topic": "t", "expected_sequence": 1}, 5, "sequence")
            await fails("handoff", {"mission": M, "as": "ada", "to": "bob", "checkpoint_id": "nope"}, 2, "checkpoint_id")
            await fails("publish", {"mission": M, "as": "ada"}, 2, "topic")
            await fails("read", {"mission": M, "as": "rita", "limit": 0}, 2, "limit")
            await fails("resume", {"mission": M}, 2, "for")
            await fails("verify", {"mission": M, "colour": "red"}, 2, "colour")
            await fails("nope", {"mission": M}, 2, "nope")
            await fails("accept", {"mission": M, "as": "bob"}, 2, "handoff_id")
            await fails("accept", {"mission": M, "as": "bob", "handoff_id": ho["handoff_id"], "note": "x"}, 2, "note")
            await fails("complete", {"mission": M, "as": "bob", "handoff_id": ho["handoff_id"]}, 5, "completed")
            await fails("accept", {"mission": M, "as": "rita", "handoff_id": ho2["handoff_id"]}, 3, "rita")
            await fails("heartbeat", {"mission": M, "as": "bob", "handoff_id": "01a2350d-0000-7000-8000-000000000000"},
                        4, "not found")
            await fails("checkpoints", {"mission": M, "limit": 0}, 2, "limit")
            await fails("read", {"mission": M, "as": "rita", "types": ["nope"]}, 2, "event type")
            await fails("ack", {"mission": M, "as": "rita", "consumer": "c"}, 2, "sequence")
            await fails("read", {"mission": M, "as": "rita", "order": "sideways"}, 2, "order")
            seen["errors"] = 18
    print(json.dumps(seen))


async def participant_calls(ok, fails):
    """The calls of a participant token (ada's, a writer's) on a fresh team."""
    msg = await ok("publish", {"mission": M, "as": "ada", "topic": "status", "payload": 1})
    check(msg["sender"] == "ada", f"publish: {msg}")
    cp = await ok("checkpoint", {"mission": M, "as": "ada", "summary": "s", "state": {}})
    ho = await ok("handoff", {"mission": M, "as": "ada", "to": "bob", "checkpoint_id": cp["checkpoint_id"]})
    page = await ok("read", {"mission": M, "as": "ada"})
    check(page["events"][-1] == ho, f"read: {page}")
    mine = await ok("read", {"mission": M, "as": "ada", "types": ["handoff"]})
    check([e["handoff_id"] for e in mine["events"]] == [ho["handoff_id"]], f"read filtered: {mine}")
    packet = await ok("resume", {"mission": M, "for": "bob"})
    check(packet["handoff_id"] == ho["handoff_id"], f"resume: {packet}")
    mine = await ok("checkpoints", {"mission": M, "latest": True, "by": "ada"})
    check(mine["checkpoints"] == [cp], f"checkpoints: {mine}")
    await fails("publish", {"mission": M, "as": "bob", "topic": "t"}, 3, "ada")
    await fails("accept", {"mission": M, "as": "bob", "handoff_id": ho["handoff_id"]}, 3, "ada")
    await fails("verify", {"mission": M}, 3, "permission")


asyncio.run(main())
