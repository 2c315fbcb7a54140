"""Detection library: the Sentinel rule "Azure VM Run Command operation executed during suspicious
login window" as plain Python (no Airflow import). See README.md."""
