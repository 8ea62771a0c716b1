"""OpenAPI import: real specs in tests/apps/specs/, imported actions run against a local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from ductwork.apps.openapi import import_openapi
from ductwork.cli.app import cli
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import HTTPStatusError, ValidationError

SPECS = Path(__file__).parent / "specs"
CONFIG = """\
# the shop's product config
product: shop
environments: [dev, prd]
caches:
  hot:
    dev: {provider: memory}   # kept as written
"""


def invoke(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_petstore_import_writes_the_config_and_runs(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ductwork.yaml").write_text(CONFIG)
    out = invoke(
        "apps",
        "import",
        str(SPECS / "petstore.yaml"),
        "--tag",
        "pets",
        "--base-url",
        f"{server.url}/petstore/v1",
        "--write",
    )
    assert "imported 3 actions as app 'pets'" in out
    text = (tmp_path / "ductwork.yaml").read_text()
    assert text.startswith(CONFIG) and "# kept as written" in text
    config = Config.load(tmp_path / "ductwork.yaml")
    pets = config.product.apps["pets"]
    assert sorted(pets.actions) == ["createPets", "listPets", "showPetById"]
    assert sorted(pets.envs) == ["dev", "prd"]
    assert "$ref" not in text

    listing = json.loads(invoke("--json", "apps", "ls"))
    assert listing == [
        {
            "app": "pets",
            "envs": ["dev", "prd"],
            "actions": 3,
            "description": "Swagger Petstore 1.0.0",
        }
    ]
    shown = invoke("apps", "show", "pets", "--env", "dev")
    assert "showPetById" in shown and "GET    /pets/{petId}" in shown
    ran = json.loads(
        invoke("actions", "run", "pets", "listPets", "--input", '{"limit": 2}', "--json")
    )
    assert ran["status"] == 200 and [p["name"] for p in ran["body"]] == ["Rex", "Tom"]
    assert ran["headers"]["x-next"] == "/pets?page=2"
    bad = CliRunner().invoke(
        cli, ["actions", "run", "pets", "listPets", "--input", '{"limit": "two"}']
    )
    assert bad.exit_code == 1 and "query.limit: expected integer" in bad.output
    invoke("apps", "import", str(SPECS / "petstore.yaml"), "--tag", "pets", "--write", code=1)


async def test_petstore_actions_against_the_local_server(server, make_client):
    imported = import_openapi(
        SPECS / "petstore.yaml",
        tag="pets",
        environments=["dev"],
        base_url=f"{server.url}/petstore/v1",
    )
    dw = make_client({"pets": imported.definition})
    pet = await dw.actions.run("pets", "showPetById", {"petId": "3"})
    assert pet.body == [{"id": 3, "name": "Nemo", "tag": "fish"}]
    created = await dw.actions.run("pets", "createPets")
    assert created.status == 201 and created.body is None
    with pytest.raises(HTTPStatusError) as info:
        await dw.actions.run("pets", "showPetById", {"petId": "99"})
    assert info.value.status == 404 and "no such pet" in info.value.body


def test_import_prints_yaml_without_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = invoke("apps", "import", str(SPECS / "petstore.yaml"), "--tag", "pets")
    data = yaml.safe_load(out)
    assert data["apps"]["pets"]["dev"] == {
        "base_url": "http://petstore.swagger.io/v1",
        "auth": {"kind": "none"},
    }
    invoke("apps", "import", str(SPECS / "petstore.yaml"), "--tag", "pets", "-o", "pets.yaml")
    assert yaml.safe_load((tmp_path / "pets.yaml").read_text()) == data


def test_refuses_documents_that_are_not_openapi_3(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"swagger": "2.0", "paths": {}}))
    with pytest.raises(ValidationError, match=r"not an OpenAPI 3.0/3.1 document \(openapi: 2.0"):
        import_openapi(tmp_path / "old.json", tag="x", environments=["dev"])


def parcel(server, monkeypatch) -> dict:
    imported = import_openapi(
        SPECS / "parcel.json",
        tag="parcel",
        environments=["dev", "prd"],
        base_url=f"{server.url}/parcel/v2",
    )
    definition = imported.definition
    assert definition["prd"]["auth"]["token_url"] == "https://auth.parcel.example/oauth/token"
    definition["dev"]["auth"]["token_url"] = f"{server.url}/oauth/token"
    monkeypatch.setenv("PARCEL_CLIENT_ID", "shop-client")
    monkeypatch.setenv("PARCEL_CLIENT_SECRET", "s3cr3t-client-pw")
    return imported


def test_parcel_spec_imports_every_operation_with_refs_resolved(server, monkeypatch):
    imported = parcel(server, monkeypatch)
    actions = imported.definition["actions"]
    assert len(actions) == 18
    assert imported.notes == [
        "getAccount: cookie parameter 'session' skipped",
        "uploadLogo: request body image/png skipped",
    ]
    assert "$ref" not in json.dumps(imported.definition)
    create = actions["createShipment"]
    assert create["headers"]["Idempotency-Key"]["minLength"] == 8
    assert create["body"]["service"]["enum"] == ["standard", "express", "overnight"]
    assert create["body"]["insurance"]["required"] is False
    tracking = actions["listTrackingEvents"]["response"]["items"]["properties"]["location"]
    assert tracking["properties"]["parent"] == {}  # the recursion is cut: any value
    assert actions["updateShipment"]["request"] == "json"
    assert actions["schedulePickup"]["request"] == "form"
    assert actions["health"]["auth"] is False
    assert actions["getShipment"]["params"]["shipmentId"]["pattern"] == "^shp_[A-Za-z0-9]{4,}$"
    Config.from_dict(
        {"product": "shop", "environments": ["dev", "prd"], "apps": {"parcel": imported.definition}}
    )


async def test_parcel_actions_run_with_oauth2_against_the_local_server(
    server, monkeypatch, make_client
):
    dw: Ductwork = make_client({"parcel": parcel(server, monkeypatch).definition})
    address = {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "country": "DE"}
    created = await dw.actions.run(
        "parcel",
        "createShipment",
        {
            "Idempotency-Key": "order-0042",
            "from": address,
            "to": {**address, "name": "Grace", "line2": None},
            "parcels": [
                {
                    "weight_g": 1200,
                    "dimensions": {"length_cm": 30, "width_cm": 20, "height_cm": 10.5},
                }
            ],
            "service": "express",
            "metadata": {"order": "42"},
        },
    )
    assert created.status == 201 and created.body["id"] == "shp_0001"
    assert created.body["to"]["line2"] is None and created.body["service"] == "express"
    got = await dw.actions.run("parcel", "getShipment", {"shipmentId": "shp_0001"})
    assert got.body == {"id": "shp_0001", "status": "in_transit"}
    doc = await dw.actions.run(
        "parcel",
        "uploadCustomsDocument",
        {"shipmentId": "shp_0001", "kind": "invoice", "file": b"%PDF-1.7 invoice"},
    )
    assert doc.body == {"id": "doc_1", "kind": "invoice", "size": 16}
    cancelled = await dw.actions.run(
        "parcel", "cancelShipment", {"shipmentId": "shp_0001", "Idempotency-Key": "cancel-42"}
    )
    assert cancelled.status == 204 and server.state.hits["cancel-shp_0001"] == 1
    health = await dw.actions.run("parcel", "health")
    assert health.body == {"status": "ok", "auth": None}
    assert server.state.tokens == ["oauth-tok-1"]

    before = server.state.requests
    with pytest.raises(ValidationError) as info:
        await dw.actions.run(
            "parcel",
            "createShipment",
            {
                "from": {**address, "country": "Germany"},
                "to": {"name": "x"},
                "parcels": [
                    {"weight_g": 0, "dimensions": {"length_cm": 0, "width_cm": 1, "height_cm": 1}}
                ],
                "service": "teleport",
            },
        )
    message = str(info.value)
    for expected in (
        "headers.Idempotency-Key: required field is missing",
        "body.from.country: does not match pattern",
        "body.to.line1: required field is missing",
        "body.parcels[0].weight_g: less than the minimum 1",
        "body.parcels[0].dimensions.length_cm: must be greater than 0",
        "body.service: must be one of standard, express, overnight",
    ):
        assert expected in message
    with pytest.raises(ValidationError, match=r"params.shipmentId: does not match pattern"):
        await dw.actions.run("parcel", "getShipment", {"shipmentId": "42"})
    assert server.state.requests == before
