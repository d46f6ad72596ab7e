"""email.html after css-inline: no `<` or `>` of user data raw anywhere (issue 23, item 4)."""

from __future__ import annotations

import css_inline

from etl.report.safe_html import escape_attributes

PAGE = (
    "<!DOCTYPE html><html><head><style>a { color: red; } td > b { margin: 0 }</style></head>"
    '<body><!-- a comment --><table><tr><td><a title="&lt;script&gt;x&lt;/script&gt; &quot;q" '
    'href="https://h/?a=1&amp;b=2">&lt;b&gt; &amp; "q"</a><br><img src="cid:chart" alt=""></td>'
    "</tr></table></body></html>"
)


def test_item4_no_user_markup_is_raw_in_the_mailed_html() -> None:
    inlined = css_inline.inline(PAGE, load_remote_stylesheets=False)
    assert '<a title="<script>' in inlined  # what css-inline writes
    safe = escape_attributes(inlined)
    assert "<script" not in safe
    assert 'title="&lt;script&gt;x&lt;/script&gt; &quot;q"' in safe
    assert 'href="https://h/?a=1&amp;b=2"' in safe and 'style="color: red;"' in safe
    assert '&lt;b&gt; &amp; "q"</a>' in safe  # text as it was
    assert '<img src="cid:chart" alt="">' in safe


def test_style_and_comments_pass_through() -> None:
    page = (
        "<html><head><style>td > b { margin: 0 }</style></head><body><!-- x > y --></body></html>"
    )
    assert escape_attributes(page) == page
