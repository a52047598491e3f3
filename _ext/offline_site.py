"""A tiny Sphinx extension that keeps the built site clean in a browser.

* sphinx-thebe registers its inline configuration script twice, so every page would declare
  ``THEBE_JS_URL`` twice (a console error): repeated scripts are dropped.
* Progress bars (tqdm) redraw their line with carriage returns; a notebook shows only the last
  state, but the web page showed every redraw on a line of its own: keep the last one.
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


def _join_stream_chunks(outputs):
    """Concatenate consecutive chunks of one stream exactly as a terminal receives them.

    The kernel sends every redraw of a progress bar ("\\r 40%|####  |") as its own output;
    myst-nb joins chunks with a newline, which turns each redraw into a line. Joining them without
    one lets myst-nb's own carriage-return handling keep only the final state.
    """
    joined = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = previous["text"] + output["text"]
        else:
            joined.append(output)
    return joined


def _patch_myst_nb_streams():
    from myst_nb.core import render

    original = render.coalesce_streams
    if getattr(original, "_joins_chunks", False):
        return

    def coalesce_streams(outputs):
        return original(_join_stream_chunks(outputs))

    coalesce_streams._joins_chunks = True
    render.coalesce_streams = coalesce_streams


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    _patch_myst_nb_streams()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
