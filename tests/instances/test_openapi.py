"""The instances API's OpenAPI document is complete: what a client generator and the docs page need."""

from __future__ import annotations

from b2b_integrations.api.app import create_app


def test_every_instances_api_operation_is_documented() -> None:
    spec = create_app().openapi()
    operations = [
        (method, path, op)
        for path, ops in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in ops.items()
    ]
    assert len(operations) >= 25
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("tags"), where
        codes = set(op["responses"])
        assert {"401", "403"} <= codes, where  # every route authenticates
        success = [c for c in codes if c.startswith("2")]
        assert success, where
        if "{customer}" in path:
            assert "404" in codes, where  # the answer for another customer's resources
        if method in ("put", "post") and op.get("requestBody"):
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema.get("examples") or any(
                "examples" in p for p in schema.get("properties", {}).values()
            ), where
        for code in success:
            content = op["responses"][code].get("content")
            if code != "204":
                assert content and content["application/json"]["schema"], where
