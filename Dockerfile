# The image docker-compose.yaml runs: the pinned Airflow plus this project's requirements (the
# Celery provider, Celery, kombu and redis at the versions the distributed test ran, see README
# "Deployment"), and the project's code, so a worker on another host needs only this image, its
# environment and the shared storage (compose also mounts the folders, for development).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
# detection_tools/: the demo lake generator behind `python -m include.detection demo`
COPY --chown=airflow:root detection_tools/ /opt/airflow/detection_tools/
ENV PYTHONPATH=/opt/airflow
