"""An action step sends the idempotency key ``<run_id>:<step_key>`` as ``Idempotency-Key``."""

from __future__ import annotations

from ductwork.client import Ductwork
from ductwork.config.loader import Config


async def test_an_action_step_sends_the_idempotency_key(server, tmp_path):
    config = Config.from_dict(
        {
            "product": "shop",
            "environments": ["dev"],
            "apps": {
                "crm": {
                    "dev": {"base_url": server.url},
                    "actions": {
                        "create": {"method": "POST", "path": "/echo", "body": {"email": "str"}}
                    },
                }
            },
            "features": {
                "signup": {
                    "input": {"email": "str"},
                    "sequences": [
                        {
                            "tag": "crm",
                            "steps": [
                                {
                                    "tag": "contact",
                                    "type": "action",
                                    "target": "crm:create",
                                    "input": {"email": "{{ input.email }}"},
                                    "output": "{{ result.body }}",
                                }
                            ],
                        }
                    ],
                    "output": "{{ steps.crm.contact.output }}",
                }
            },
        },
        root=tmp_path,
    )
    async with Ductwork(config, env="dev") as dw:
        seen = await dw.features.run("signup", {"email": "a@example.com"})
        run_id = (await dw.features.list("signup"))[0].job_id
    assert seen["body"] == {"email": "a@example.com"}
    assert seen["headers"]["idempotency-key"] == f"{run_id}:crm/contact"
