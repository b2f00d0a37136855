"""The ``interpedia`` command line: one click group, its commands in one module per area.

Only the CLI (and the web app's wiring) reads the environment's settings (``get_settings``); every command
passes them down to the packages below.
"""

from __future__ import annotations

from interpedia.cli.analysis import import_eval_cmd, umap_cmd
from interpedia.cli.autointerp import embed, explain, score
from interpedia.cli.demo import demo_cmd
from interpedia.cli.documents import documents_group
from interpedia.cli.graph import graph_group
from interpedia.cli.hosts import hosts_group
from interpedia.cli.init import init_cmd
from interpedia.cli.lens import lens_group
from interpedia.cli.main import main

for _command in (
    explain,
    score,
    embed,
    demo_cmd,
    umap_cmd,
    import_eval_cmd,
    init_cmd,
    graph_group,
    lens_group,
    hosts_group,
    documents_group,
):
    main.add_command(_command)

__all__ = ["main"]
