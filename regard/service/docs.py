"""The native API's reference page, rendered on the server from its OpenAPI description: plain
HTML and CSS, no scripts and nothing fetched from elsewhere, so it works on an air-gapped site."""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.op { border: 1px solid #ddd; border-radius: 6px; margin: 0.8rem 0; padding: 0.6rem 0.9rem; }
.method { display: inline-block; min-width: 4.2rem; font-weight: 700; font-family: monospace; }
.GET { color: #0a6 } .POST { color: #06c } .PUT { color: #a60 } .DELETE { color: #c22 }
code, .path { font-family: ui-monospace, monospace; } .path { font-weight: 600; }
table { border-collapse: collapse; margin: 0.4rem 0; } td, th { padding: 0.15rem 0.6rem; text-align: left; border-bottom: 1px solid #eee; }
.muted { color: #666; }
"""


def _schema_text(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = components.get(name, {})
    props = schema.get("properties")
    if not props:
        return html.escape(schema.get("type", "object"))
    required = set(schema.get("required", []))
    rows = []
    for name, prop in props.items():
        kind = prop.get("type") or " | ".join(p.get("type", "?") for p in prop.get("anyOf", [])) or "object"
        if prop.get("format") in {"binary", "byte"}:
            kind += f" ({prop['format']})"
        note = prop.get("description", "")
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code>{' *' if name in required else ''}</td>"
            f"<td>{html.escape(kind)}</td><td class=muted>{html.escape(note)}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def render(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    components = spec.get("components", {}).get("schemas", {})
    by_tag: dict[str, list[str]] = {}
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            parts = [
                f"<div class=op><span class='method {method.upper()}'>{method.upper()}</span> "
                f"<span class=path>{html.escape(path)}</span>"
            ]
            if op.get("summary"):
                parts.append(f" — {html.escape(op['summary'])}")
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<p class=muted>parameters</p><table>")
                for p in params:
                    kind = p.get("schema", {}).get("type", "")
                    parts.append(
                        f"<tr><td><code>{html.escape(p['name'])}</code>{' *' if p.get('required') else ''}</td>"
                        f"<td>{html.escape(p.get('in', ''))}</td><td>{html.escape(kind)}</td></tr>"
                    )
                parts.append("</table>")
            body = op.get("requestBody", {}).get("content", {})
            for content_type, content in body.items():
                parts.append(f"<p class=muted>body: {html.escape(content_type)}</p>")
                parts.append(_schema_text(content.get("schema", {}), components))
            parts.append("</div>")
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append("".join(parts))
    sections = "".join(f"<h2>{html.escape(tag)}</h2>{''.join(ops)}" for tag, ops in by_tag.items())
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(info.get('title', 'API'))} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(info.get('title', ''))} {html.escape(info.get('version', ''))}</h1>"
        f"<p>{html.escape(info.get('summary', ''))}</p><p>{html.escape(info.get('description', ''))}</p>"
        "<p>Fields marked * are required. The machine-readable description is at <a href=/openapi.json>/openapi.json</a>.</p>"
        f"{sections}<p class=muted>{len(json.dumps(spec)):,} bytes of OpenAPI rendered without scripts.</p></body></html>"
    )
