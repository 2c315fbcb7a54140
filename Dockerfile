# The image docker-compose.yaml runs: the pinned Airflow plus this project's requirements.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
ENV PYTHONPATH=/opt/airflow
