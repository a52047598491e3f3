"""A tiny Sphinx extension that keeps the built site clean in a browser.

sphinx-thebe registers its inline configuration script once per page build, so it ends up twice
in every page (a console error: ``THEBE_JS_URL has already been declared``). Drop repeated scripts.
"""


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # the same file or inline body, whatever priority each copy was registered with (None and "" both mean inline)
        key = (getattr(script, "filename", str(script)) or "", getattr(script, "attributes", {}).get("body", ""))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
