"""Load the project's DAGs the way Airflow's DAG processor does, without a cluster or a database.

Airflow reads its configuration once, when it is first imported, so the environment is set before
the first ``import airflow``: a throw-away AIRFLOW_HOME, no example DAGs, SQLite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
DAGS_DIR = REPO / "dags"


def load_dagbag(airflow_home: Path) -> Any:
    os.environ.setdefault("AIRFLOW_HOME", str(airflow_home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{airflow_home}/airflow.db")
    # Airflow puts the DAG bundle's folder on sys.path when it parses it; do the same.
    if str(DAGS_DIR) not in sys.path:
        sys.path.insert(0, str(DAGS_DIR))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))
