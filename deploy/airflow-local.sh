#!/usr/bin/env bash
# `make airflow`: the embedded default's Airflow in the foreground, as `airflow standalone` runs
# it (API server, scheduler, DAG processor, triggerer), but listening on loopback only: the API
# server on $AIRFLOW__API__HOST (default 127.0.0.1) and no task log servers (standalone starts them
# on every interface, ports 8793/8794; on one host the API server reads the log files directly).
# Ctrl-C stops every component and their children (each runs in its own process group).
set -euo pipefail
: "${AIRFLOW__API__HOST:=127.0.0.1}" "${AIRFLOW__API__PORT:=8080}"
export AIRFLOW__API__HOST AIRFLOW__API__PORT
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:${AIRFLOW__API__PORT}/execution/}"
groups=()
stop() { for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done; wait || true; }
trap stop EXIT INT TERM
for component in "api-server" "scheduler --skip-serve-logs" "dag-processor" "triggerer --skip-serve-logs"; do
  # shellcheck disable=SC2086
  setsid airflow $component > >(sed -u "s/^/[${component%% *}] /") 2>&1 &
  groups+=("$!")
done
passwords="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated}"
for _ in $(seq 120); do [ -s "$passwords" ] && break; sleep 1; done
echo "Airflow UI: http://${AIRFLOW__API__HOST}:${AIRFLOW__API__PORT}  (users and passwords: $passwords)"
wait -n "${groups[@]}"
