"""The layer rules a user never sees but every page relies on: the web app starts without the ML stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformer_lens", "sae_lens", "transformers")


def test_importing_the_web_app_loads_no_ml_stack() -> None:
    # A fresh interpreter: this test process has long imported torch through other tests.
    code = (
        "import json, sys\n"
        "import interpedia.web.app\n"
        "from interpedia.web.app import create_app\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded == [], f"importing interpedia.web.app loaded {loaded[:10]}"


def test_building_the_app_loads_no_ml_stack(tmp_path: object) -> None:
    code = (
        "import json, sys\n"
        "from interpedia.config import Settings\n"
        "from interpedia.web.app import create_app\n"
        f"create_app(Settings(database_url='sqlite:///{tmp_path}/x.db', home='{tmp_path}/home'))\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded == [], f"building the app loaded {loaded[:10]}"
