"""Code-first features for the tests (registered on import, as a product's module would be)."""

from __future__ import annotations

import asyncio
from typing import Any

from ductwork.features.code import FeatureContext, feature

CALLS: list[str] = []


def reset() -> None:
    CALLS.clear()


def charge(amount: int) -> dict[str, Any]:
    CALLS.append(f"charge:{amount}")
    return {"charged": amount}


async def refund(output: dict[str, Any]) -> None:
    CALLS.append(f"refund:{output['charged']}")


async def reserve(item: str) -> str:
    CALLS.append(f"reserve:{item}")
    return item


def release(output: str) -> None:
    CALLS.append(f"release:{output}")


async def boom() -> None:
    CALLS.append("boom")
    raise RuntimeError("card declined")


@feature("onboard")
async def onboard(ctx: FeatureContext, input: dict[str, Any]) -> dict[str, Any]:
    charged = await ctx.step("charge", charge, input["amount"], compensate=refund)
    left, right = await ctx.gather(
        ctx.step("reserve-a", reserve, "a", compensate=release),
        ctx.step("reserve-b", reserve, "b", compensate=release, critical=True),
    )
    await ctx.sleep("cool-off", 0)
    approval = await ctx.wait_for_signal("approved", timeout="1h") if input.get("wait") else None
    child = await ctx.feature("parallel", name="child")
    if input.get("fail"):
        await ctx.step("finalise", boom)
    return {"charged": charged, "items": [left, right], "approval": approval, "child": child}


@feature("twice")
async def twice(ctx: FeatureContext, input: Any) -> None:
    await ctx.step("same", charge, 1)
    await ctx.step("same", charge, 2)


@feature("critical", compensation="critical-only")
async def critical(ctx: FeatureContext, input: Any) -> None:
    await ctx.step("reserve-a", reserve, "a", compensate=release)
    await ctx.step("reserve-b", reserve, "b", compensate=release, critical=True)
    await ctx.step("finalise", boom)


@feature("checkpointed", compensation="to-checkpoint")
async def checkpointed(ctx: FeatureContext, input: Any) -> None:
    await ctx.step("reserve-a", reserve, "a", compensate=release, checkpoint=True)
    await ctx.step("reserve-b", reserve, "b", compensate=release)
    await ctx.step("finalise", boom)


@feature("keep", compensation="none")
async def keep(ctx: FeatureContext, input: Any) -> None:
    await ctx.step("reserve-a", reserve, "a", compensate=release)
    await ctx.step("finalise", boom)


@feature("early")
async def early(ctx: FeatureContext, input: Any) -> Any:
    """Waits for ``go`` while a concurrent step sends it once the wait is recorded."""

    async def send_once_waiting() -> str:
        while True:  # the wait's row is the condition: then the signal lands before the park
            shown = await ctx.dw.features.output(ctx.run_id)
            if any(s["key"] == "go" and s["status"] == "waiting" for s in shown.steps):
                break
            await asyncio.sleep(0.001)
        await ctx.dw.features.signal(ctx.run_id, "go", {"n": 1})
        return "sent"

    got, sent = await ctx.gather(ctx.wait_for_signal("go"), ctx.step("send", send_once_waiting))
    return {"got": got, "sent": sent}


@feature("failing-child")
async def failing_child(ctx: FeatureContext, input: Any) -> None:
    await ctx.step("boom", boom)


@feature("parent-of-failing")
async def parent_of_failing(ctx: FeatureContext, input: Any) -> Any:
    await ctx.feature("failing-child", name="soft", allow_fail=True)
    return await ctx.feature("failing-child", name="hard")


@feature("nest")
async def nest(ctx: FeatureContext, input: Any) -> Any:
    return await ctx.feature("parallel", name="kid")


@feature("waiter")
async def waiter(ctx: FeatureContext, input: Any) -> Any:
    return await ctx.wait_for_signal("go")


@feature("parent-of-waiter")
async def parent_of_waiter(ctx: FeatureContext, input: Any) -> Any:
    return await ctx.feature("waiter", name="kid", allow_fail=bool(input))
