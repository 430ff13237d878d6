"""Helpers shared by the userstream DAGs: deployment configuration and pod specifications.

Listed in ``dags/.airflowignore`` so the DAG processor does not parse it as DAG files.
"""
