"""JSON Schema → the TypeScript-like tool definitions of the harmony format (``namespace functions { … }``).

The output matches the ``openai-harmony`` renderer byte for byte, including its quirks (nested object descriptions
appear twice, nested objects are indented by four spaces per level, ``anyOf`` renders as ``any``, defaults are
printed the way ``serde_json`` prints JSON values). Pure functions, no I/O.
"""

from __future__ import annotations

from decimal import Decimal
import json
from typing import Any, Sequence

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


def rust_lines(text: str) -> list[str]:
    """Split like Rust's ``str::lines``: on ``\\n`` (dropping one trailing ``\\r``), no final empty line."""
    if not text:
        return []
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def _float_text(value: float) -> str:
    """A finite float the way ``serde_json`` (ryu) prints it: ``1.5``, ``100.0``, ``0.00001``, ``1e16``."""
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign = "-" if value < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()[1:]
    digits = "".join(str(d) for d in digits_tuple)
    length = len(digits)
    kk = length + int(exponent)
    if 0 <= int(exponent) and kk <= 16:
        body = digits + "0" * int(exponent) + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * (-kk) + digits
    elif length == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def json_display(value: Any) -> str:
    """Compact JSON text of a value, as ``serde_json::Value``'s ``Display`` writes it (key order preserved)."""
    if value is None or isinstance(value, (bool, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value) if _I64_MIN <= value <= _U64_MAX else _float_text(float(value))
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{json_display(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_display(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _is_enum(schema: Any) -> bool:
    values = schema.get("enum") if isinstance(schema, dict) else None
    return isinstance(values, list) and len(values) > 0


def _default_comment(schema: dict[str, Any], default: Any) -> str:
    """``default: …`` text: plain strings quoted (unescaped), enum defaults bare, anything else as JSON."""
    if isinstance(default, str):
        return f"default: {default}" if _is_enum(schema) else f'default: "{default}"'
    return f"default: {json_display(default)}"


def _str(schema: dict[str, Any], key: str) -> str | None:
    value = schema.get(key)
    return value if isinstance(value, str) else None


def _with_nullable(variant: Any, type_text: str) -> str:
    if isinstance(variant, dict) and variant.get("nullable") is True and "null" not in type_text:
        return f"{type_text} | null"
    return type_text


def _one_of_top(variants: list[Any], indent: str) -> str:
    out: list[str] = []
    for variant in variants:
        out.append(f"\n{indent} | ")
        out.append(_with_nullable(variant, schema_to_typescript(variant, indent + "   ")))
        comments: list[str] = []
        if isinstance(variant, dict):
            desc = _str(variant, "description")
            if desc is not None:
                comments.append(desc)
            if "default" in variant:
                default = variant["default"]
                plain = isinstance(default, str) and not _is_enum(variant)
                comments.append(f'default: "{default}"' if plain else f"default: {json_display(default)}")
        if comments:
            out.append(" // " + " ".join(comments))
    return "".join(out)


def _one_of_property(key: str, optional: str, val: dict[str, Any], variants: list[Any], indent: str) -> str:
    out: list[str] = []
    prop_desc = _str(val, "description")
    first = variants[0] if variants else None
    skip_desc = prop_desc is not None and isinstance(first, dict) and _str(first, "description") == prop_desc
    desc_above = False
    if not skip_desc and prop_desc is not None:
        out.append(f"{indent}// {prop_desc}\n")
        desc_above = True
    if "default" in val:
        out.append(f"{indent}// {_default_comment(val, val['default'])}\n")
    out.append(f"{indent}{key}{optional}:\n")
    for i, variant in enumerate(variants):
        out.append(f"{indent} | ")
        out.append(_with_nullable(variant, schema_to_typescript(variant, indent + "   ")))
        comments: list[str] = []
        if isinstance(variant, dict):
            desc = _str(variant, "description")
            if not (i == 0 and desc_above) and desc is not None and desc != prop_desc:
                comments.append(desc)
            if "default" in variant:
                comments.append(_default_comment(variant, variant["default"]))
        if comments:
            out.append(" // " + " ".join(comments))
        out.append("\n")
    out.append(f"{indent},\n")
    return "".join(out)


def _property(key: str, val: Any, required: set[str], indent: str) -> str:
    optional = "" if key in required else "?"
    if not isinstance(val, dict):
        return f"{indent}{key}{optional}: any,\n"
    out: list[str] = []
    title = _str(val, "title")
    if title is not None:
        out.append(f"{indent}// {title}\n{indent}//\n")
    one_of = val.get("oneOf")
    if one_of is None:
        desc = _str(val, "description")
        if desc is not None:
            out.append(f"{indent}// {desc}\n")
    examples = val.get("examples")
    if isinstance(examples, list) and examples:
        out.append(f"{indent}// Examples:\n")
        out.extend(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
    if isinstance(one_of, list):
        return "".join(out) + _one_of_property(key, optional, val, one_of, indent)
    out.append(f"{indent}{key}{optional}: ")
    out.append(_with_nullable(val, schema_to_typescript(val, indent + "    ")))
    out.append(",")
    if one_of is None and "default" in val:
        out.append(f" // {_default_comment(val, val['default'])}")
    out.append("\n")
    return "".join(out)


def _object(schema: dict[str, Any], indent: str) -> str:
    out: list[str] = []
    desc = _str(schema, "description")
    if desc is not None:
        out.append(f"{indent}// {desc}\n")
    out.append("{\n")
    props = schema.get("properties")
    if isinstance(props, dict):
        req = schema.get("required")
        required = {r for r in req if isinstance(r, str)} if isinstance(req, list) else set()
        for key, val in props.items():
            out.append(_property(str(key), val, required, indent))
    out.append(f"{indent}}}")
    return "".join(out)


def _typed(schema: dict[str, Any], type_name: str, indent: str) -> str:
    if type_name == "object":
        return _object(schema, indent)
    if type_name == "string":
        values = schema.get("enum")
        if isinstance(values, list):
            quoted = [f'"{v}"' for v in values if isinstance(v, str)]
            if quoted:
                return " | ".join(quoted)
        return "string"
    if type_name in ("number", "integer"):
        return "number"
    if type_name == "boolean":
        return "boolean"
    if type_name == "array":
        if "items" in schema:
            return schema_to_typescript(schema["items"], indent) + "[]"
        return "Array<any>"
    return "any"


def schema_to_typescript(schema: Any, indent: str = "") -> str:
    """One JSON Schema as the harmony TypeScript-like type text."""
    if not isinstance(schema, dict):
        return "any"
    one_of = schema.get("oneOf")
    if isinstance(one_of, list):
        return _one_of_top(one_of, indent)
    type_value = schema.get("type")
    if isinstance(type_value, list):
        names = ["number" if t == "integer" else t for t in type_value if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if isinstance(type_value, str):
        return _typed(schema, type_value, indent)
    return "any"


def functions_namespace(tools: Sequence[tuple[str, str, dict[str, Any] | None]]) -> str:
    """The ``# Tools`` section declaring ``(name, description, parameters)`` function tools."""
    lines = ["## functions\n", "namespace functions {\n"]
    for name, description, parameters in tools:
        lines.extend(f"// {line}" for line in rust_lines(description))
        if parameters is None:
            lines.append(f"type {name} = () => any;\n")
        else:
            lines.append(f"type {name} = (_: {schema_to_typescript(parameters)}) => any;\n")
    lines.append("} // namespace functions")
    return "# Tools\n\n" + "\n".join(lines)


__all__ = ["functions_namespace", "json_display", "rust_lines", "schema_to_typescript"]
