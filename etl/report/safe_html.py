"""The mailed HTML with no `<` or `>` of user data left raw in an attribute.

css-inline re-serialises email.html the way browsers did before 2025: inside attribute
values it escapes only `&` and `"`, so a run named `<script>` comes out raw in a `title`.
Browsers read that as text, but mail clients and sanitizers are not all browsers. This
writes every tag again with its attribute values fully escaped; text, comments and the
contents of `<style>` pass through as they are.
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser


def escape_attributes(html: str) -> str:
    writer = _Rewriter()
    writer.feed(html)
    writer.close()
    return "".join(writer.out)


class _Rewriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(_tag(tag, attrs, ">"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.append(_tag(tag, attrs, " />"))

    def handle_endtag(self, tag: str) -> None:
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.out.append(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


def _tag(tag: str, attrs: list[tuple[str, str | None]], end: str) -> str:
    written = [tag] + [
        name if value is None else f'{name}="{escape(value, quote=True)}"' for name, value in attrs
    ]
    return "<" + " ".join(written) + end
