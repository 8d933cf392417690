"""Input limits: deeply nested, alias-bombed or oversized manifests give one clear problem, never a
RecursionError; `load_json` (what the CNI plugin can reuse) enforces depth and size alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.model import ValidationError, load_resources
from tortie.model.input_limits import (
    MAX_DEPTH,
    InputTooDeep,
    InputTooLarge,
    load_json,
    nesting_depth,
)

POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.9.0.0/16}\n"


def _only_problem(text: str, source: str) -> str:
    with pytest.raises(ValidationError) as err:
        load_resources(text, source=source)
    assert len(err.value.problems) == 1
    return str(err.value.problems[0])


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("dashes.yaml", "- " * 3_000_000 + "x\n"),  # a 6 MB `- - - ...` manifest
        ("flow.yaml", "spec: " + "[" * 5_000_000),
        ("nested-maps.yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(150))),
        ("brackets.json", "[" * 10_000_000),  # a 10 MB `[[[[` document
        ("objects.json", '{"a":' * 300 + "1" + "}" * 300),
    ],
)
def test_deep_nesting_is_one_clear_problem(source: str, text: str) -> None:
    message = _only_problem(text, source)
    assert message.startswith(f"{source}: document 0:")
    assert f"nested more than {MAX_DEPTH} levels deep" in message


def test_later_documents_keep_their_numbers() -> None:
    message = _only_problem(POOL + "---\n" + "- " * 500 + "x\n", "two.yaml")
    assert message.startswith("two.yaml: document 1:") and "line 6" in message


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    message = _only_problem("\n".join(lines) + "\n", "laughs.yaml")
    assert "expands to more than 1,000,000 values" in message


def test_reasonable_depth_and_aliases_still_load() -> None:
    text = POOL.replace("spec: {cidr: 10.9.0.0/16}", "spec: &s {cidr: 10.9.0.0/16}")
    assert [r.metadata.name for r in load_resources(text)] == ["p"]
    deep_but_fine = {"a": [[[[{"b": 1}]]]]}
    assert nesting_depth(deep_but_fine) == 6 and load_json(json.dumps(deep_but_fine), "x") == deep_but_fine


def test_load_json_limits() -> None:
    with pytest.raises(InputTooLarge) as big:
        load_json(b"{}" + b" " * 100, "stdin", max_bytes=64)
    assert "stdin: input is 102 bytes, more than the limit of 64" in str(big.value)
    with pytest.raises(InputTooDeep) as deep:
        load_json("[" * 20 + "]" * 20, "stdin", max_depth=10)
    assert "stdin: nested more than 10 levels deep" in str(deep.value)
    with pytest.raises(InputTooDeep):
        load_json(b"[" * 10_000_000, "stdin")
    with pytest.raises(json.JSONDecodeError):
        load_json("{nope", "stdin")


def test_cli_validate_and_apply_report_deep_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "deep.yaml"
    manifest.write_text("- " * 3_000_000 + "x\n")
    assert main(["--datastore", f"sqlite://{tmp_path}/ds.db", "validate", "-f", str(manifest)]) == 1
    out, err = capsys.readouterr()
    assert "nested more than 100 levels deep" in out + err and "Traceback" not in out + err
    assert main(["--datastore", f"sqlite://{tmp_path}/ds.db", "apply", "-f", str(manifest)]) == 1
    out, err = capsys.readouterr()
    assert f"{manifest}: document 0: nested more than 100 levels deep" in err
