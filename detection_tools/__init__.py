"""Tools around the detection library that the DAG and the detection CLI do not run: the demo
lake generator (`lakegen`) and the loader of a rule's sample cases (`samples`).

Not named `tools`: cron-descriptor (an Airflow dependency) installs a top-level `tools` package.
"""
