"""``ductwork quotas run|breaker`` and ``ductwork fallbacks run|breaker``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ductwork.cli.state import State, common, input_option, json_arg, pass_state, with_client

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.processor.quotas import Quotas


def _group(section: str, summary: str) -> click.Group:
    @click.group(name=section, help=summary)
    def group() -> None:
        pass

    def namespace(dw: Ductwork) -> Quotas:
        found: Quotas = getattr(dw, section)
        return found

    @group.command("run")
    @click.argument("tag")
    @input_option
    @click.option("--idempotency-key", default=None, help="Passed on to every provider.")
    @common
    @pass_state
    def run(state: State, tag: str, input_: str | None, idempotency_key: str | None) -> None:
        """Call TAG: its output and which provider answered (JSON)."""
        data = json_arg(input_, "--input") or {}

        async def go(dw: Ductwork) -> Any:
            result = await namespace(dw).run(tag, data, idempotency_key=idempotency_key)
            return result.to_dict()

        state.emit(with_client(state, go))

    @group.command("breaker")
    @click.argument("tag")
    @common
    @pass_state
    def breaker(state: State, tag: str) -> None:
        """Each provider of TAG: its target and circuit (closed, open, half_open)."""

        async def go(dw: Ductwork) -> list[dict[str, str]]:
            ns = namespace(dw)
            return [
                {
                    "provider": p.name,
                    "target": p.target,
                    "circuit": await ns.breaker_state(tag, p.name),
                }
                for p in ns.plan(tag).providers
            ]

        rows = with_client(state, go)

        def human() -> None:
            for row in rows:
                click.echo(f"{row['provider']:20} {row['target']:30} {row['circuit']}")

        state.emit(rows, human)

    return group


quotas = _group("quotas", "Quotas: weighted, health-aware calls across providers.")
fallbacks = _group("fallbacks", "Fallbacks: providers in order, the first success answers.")
COMMANDS = (quotas, fallbacks)
